// The static twin of the misclassified-image browser: plain JS over the JSON the page embeds (widgets.static_browser).
(function () {
  var root = document.getElementById("%(id)s");
  var data = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  var q = function (name) { return root.querySelector("[data-role='" + name + "']"); };
  var state = {page: 0, key: ""};
  function fill(select, options) {
    options.forEach(function (o) { var e = document.createElement("option"); e.value = o; e.textContent = o; select.appendChild(e); });
  }
  fill(q("model"), data.models);
  fill(q("true"), ["any"].concat(data.classes));
  fill(q("predicted"), ["any"].concat(data.classes));
  function matches(label, pred) {
    var t = q("true").value, p = q("predicted").value;
    return (t === "any" || data.classes[label] === t) && (p === "any" || data.classes[pred] === p);
  }
  function chosen() {
    return data.choices[q("model").value].filter(function (c) { return matches(c[1], c[2]); });
  }
  function total() {  // every misclassified image of this choice, shown or not
    return data.totals[q("model").value].reduce(function (n, t) { return n + (matches(t[0], t[1]) ? t[2] : 0); }, 0);
  }
  function claim(model, predicted, agreeing) {  // no more than the data say: how many models predict it
    if (model !== "all models") return "predicted " + predicted + " by " + model;
    var models = data.models.length - 1;
    return "predicted " + predicted + " by " + (agreeing === models ? "all " + models + " models" : agreeing + " of " + models + " models");
  }
  function show() {
    var list = chosen(), model = q("model").value, all = total();
    var choice = [model, q("true").value, q("predicted").value].join("|");
    if (choice !== state.key) { state.key = choice; state.page = 0; }  // a new choice starts at its first image
    state.page = Math.max(0, Math.min(state.page, list.length - 1));
    var img = q("image"), caption = q("caption"), table = q("probs"), cam = q("gradcam");
    table.innerHTML = "";
    q("previous").disabled = state.page <= 0;
    q("next").disabled = state.page >= list.length - 1;
    if (!list.length) {
      img.style.display = "none"; img.removeAttribute("src"); cam.textContent = "";
      caption.textContent = "No image misclassified by " + model + " matches this choice.";
      q("status").textContent = "0 images";
      return;
    }
    var c = list[state.page], id = c[0], key = model + "|" + id, useCam = q("overlay").checked && data.cams[key];
    var said = claim(model, data.classes[c[2]], c[3]);
    img.style.display = ""; img.src = useCam ? data.cams[key] : data.thumbs[id];
    img.alt = "Chest X-ray " + id + ", true class " + data.classes[c[1]] + ", " + said + (useCam ? ", with the Grad-CAM overlay" : "");
    caption.textContent = id + ": true " + data.classes[c[1]] + ", " + said;
    var note = data.notes[key] ? data.notes[key] + (data.cams[key] && !useCam ? " (overlay off)" : "") : "";
    cam.textContent = note || "no Grad-CAM kept for this model and image (the book keeps " + data.gradcam_limit + " overlays)";
    q("status").textContent = "image " + (state.page + 1) + " of " + list.length + (all > list.length
      ? " shown (" + all + " misclassified: the book keeps the first " + data.per_choice + " of each true and predicted class)" : "");
    var head = document.createElement("tr"); head.innerHTML = "<th>model</th>";
    data.classes.forEach(function (k, i) { var th = document.createElement("th"); th.textContent = k + (i === c[1] ? " (true)" : ""); head.appendChild(th); });
    table.appendChild(head);
    Object.keys(data.probs[id]).forEach(function (m) {
      var tr = document.createElement("tr"), td = document.createElement("td"); td.textContent = m; tr.appendChild(td);
      data.probs[id][m].forEach(function (v) { var cell = document.createElement("td"); cell.textContent = v.toFixed(3); tr.appendChild(cell); });
      table.appendChild(tr);
    });
  }
  ["model", "true", "predicted"].forEach(function (n) { q(n).addEventListener("change", show); });
  q("overlay").addEventListener("change", show);  // the same image, with or without the overlay
  q("previous").addEventListener("click", function () { state.page -= 1; show(); });
  q("next").addEventListener("click", function () { state.page += 1; show(); });
  show();
})();
