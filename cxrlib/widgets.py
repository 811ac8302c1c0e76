"""A browser of misclassified test images: ipywidgets in Jupyter; in the rendered book, a static
HTML/JS twin (no kernel, no network) and a gallery figure."""
from __future__ import annotations

import base64
import io
import json
import uuid

import numpy as np
import pandas as pd

from cxrlib import runs
from cxrlib.config import CLASSES

ALL_MODELS = "all models"
ANY = "any"


class Selection:
    """Which images a (model, true class, predicted class) choice picks, and their probabilities."""

    def __init__(self, predictions: dict):
        frames = {name: frame.set_index("Image Index") for name, frame in predictions.items()}
        common = sorted(set.intersection(*(set(f.index) for f in frames.values())))
        self.frames = {name: frame.loc[common] for name, frame in frames.items()}
        self.ids = common

    @property
    def models(self) -> list:
        """Model names, in the order given."""
        return list(self.frames)

    def probabilities(self, model: str) -> np.ndarray:
        """A model's probabilities ('all models': their average) for every image."""
        if model == ALL_MODELS:
            return np.mean([runs.probabilities(f) for f in self.frames.values()], axis=0)
        return runs.probabilities(self.frames[model])

    def predicted(self, model: str) -> np.ndarray:
        """A model's predicted class per image; for 'all models', the class most models predicted
        (ties: the first model's), so an image every model got wrong never reads 'predicted <true class>'."""
        preds = np.array([f["pred"].to_numpy() for f in self.frames.values()])
        if model != ALL_MODELS:
            return self.frames[model]["pred"].to_numpy()
        votes = np.array([(preds == k).sum(axis=0) for k in range(len(CLASSES))])
        best = votes.max(axis=0)
        return np.array([next(p for p in preds[:, i] if votes[p, i] == best[i]) for i in range(preds.shape[1])])

    def pick(self, model: str, true_class: str = ANY, predicted: str = ANY) -> pd.DataFrame:
        """Misclassified images of one model (or of every model) filtered by true and predicted class."""
        labels = next(iter(self.frames.values()))["label"].to_numpy()
        if model == ALL_MODELS:
            wrong = np.all([f["pred"].to_numpy() != labels for f in self.frames.values()], axis=0)
        else:
            wrong = self.frames[model]["pred"].to_numpy() != labels
        pred = self.predicted(model)
        keep = wrong.copy()
        if true_class != ANY:
            keep &= labels == CLASSES.index(true_class)
        if predicted != ANY:
            keep &= pred == CLASSES.index(predicted)
        return pd.DataFrame({"Image Index": np.asarray(self.ids)[keep], "label": labels[keep], "pred": pred[keep]})


def draw_page(selection: Selection, chosen: pd.DataFrame, images: dict, heatmaps=None, title: str = "",
              model: str = ALL_MODELS):
    """One row per image: the image (with the model's Grad-CAM when heatmaps(model, id) is given) and
    every model's probabilities."""
    import matplotlib.pyplot as plt

    from cxrlib.explain import overlay, to_display
    from cxrlib.plots import legend_outside, wrapped

    rows = max(len(chosen), 1)
    fig, axes = plt.subplots(rows, 2, figsize=(7.5, 2.6 * rows + 0.4), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2.2]})
    if chosen.empty:
        for ax in axes.flat:
            ax.axis("off")
        axes[0, 0].text(0.5, 0.5, "no image matches this choice", ha="center", va="center")
    for (image_ax, bar_ax), (_, row) in zip(axes, chosen.iterrows()):
        image_id = row["Image Index"]
        caption = f"{image_id}\ntrue {CLASSES[row['label']]}, predicted {CLASSES[row['pred']]}"
        heatmap = heatmaps(model, image_id) if heatmaps else None
        if heatmap is not None:
            overlay(image_ax, images[image_id], heatmap, caption)
        else:
            image_ax.imshow(to_display(images[image_id]), cmap="gray")
            image_ax.set_title(caption, fontsize=8)
            image_ax.axis("off")
        probs = pd.DataFrame({m: selection.frames[m].loc[image_id, [f"p_{c}" for c in CLASSES]].to_numpy()
                              for m in selection.models}, index=list(CLASSES))
        probs.plot.barh(ax=bar_ax, legend=image_ax is axes[0, 0], xlim=(0, 1))
        bar_ax.set(xlabel="probability", ylabel="class", title="every model's probabilities")
        if image_ax is axes[0, 0]:
            legend_outside(bar_ax, fontsize=7)
    fig.suptitle(wrapped(title))
    fig.tight_layout()
    return fig


def static_gallery(predictions: dict, images: dict, model: str = ALL_MODELS, true_class: str = ANY,
                   predicted: str = ANY, count: int = 4, heatmaps=None):
    """What the browser's first page shows, as a figure for the rendered book (which has no kernel)."""
    selection = Selection(predictions)
    chosen = selection.pick(model, true_class, predicted)
    title = (f"Misclassified by {model}: true {true_class}, predicted {predicted} "
             f"({len(chosen)} images; first {min(count, len(chosen))})")
    if chosen.empty:  # a sentence, not a blank figure
        from cxrlib.plots import say_empty

        say_empty(f"No test image is misclassified by {model} with true class {true_class} and predicted class "
                  f"{predicted}.")
        return None
    return draw_page(selection, chosen.head(count), images, heatmaps, title, model)


class MisclassifiedBrowser:
    """Choose a model (or all models), a true and a predicted class; page through the misclassified images.

    heatmaps(model name or 'all models', image id) -> heatmap at the images' size enables the overlay.
    """

    def __init__(self, predictions: dict, images: dict, heatmaps=None, per_page: int = 3):
        import ipywidgets as w

        self.selection, self.images, self.heatmaps, self.per_page = Selection(predictions), images, heatmaps, per_page
        self.page = 0
        self.model = w.Dropdown(options=[ALL_MODELS, *self.selection.models], description="model")
        self.true_class = w.Dropdown(options=[ANY, *CLASSES], description="true")
        self.predicted = w.Dropdown(options=[ANY, *CLASSES], description="predicted")
        self.gradcam = w.Checkbox(value=False, description="Grad-CAM overlay", disabled=heatmaps is None)
        self.previous, self.next = w.Button(description="previous"), w.Button(description="next")
        self.status, self.output = w.Label(), w.Output()
        for control in (self.model, self.true_class, self.predicted, self.gradcam):
            control.observe(lambda _: self.show(reset=True), names="value")
        self.previous.on_click(lambda _: self.turn(-1))
        self.next.on_click(lambda _: self.turn(+1))
        self.widget = w.VBox([w.HBox([self.model, self.true_class, self.predicted]),
                              w.HBox([self.previous, self.next, self.gradcam, self.status]), self.output])
        self.show(reset=True)

    def chosen(self) -> pd.DataFrame:
        """The images the current controls select."""
        return self.selection.pick(self.model.value, self.true_class.value, self.predicted.value)

    def current(self) -> pd.DataFrame:
        """The images on the current page."""
        start = self.page * self.per_page
        return self.chosen().iloc[start:start + self.per_page]

    def turn(self, step: int):
        """Go to the previous or next page, staying within the selection."""
        pages = max(1, -(-len(self.chosen()) // self.per_page))
        self.page = min(max(self.page + step, 0), pages - 1)
        self.show()

    def show(self, reset: bool = False):
        """Redraw the page and the status line."""
        import matplotlib.pyplot as plt
        from IPython.display import display

        if reset:
            self.page = 0
        total, page = len(self.chosen()), self.current()
        first = self.page * self.per_page
        self.status.value = (f"images {first + 1}-{first + len(page)} of {total}" if total else "no image matches")
        self.output.clear_output(wait=True)
        with self.output:
            heatmaps = self.heatmaps if self.gradcam.value else None
            self.figure = draw_page(self.selection, page, self.images, heatmaps,
                                    f"Misclassified by {self.model.value}", self.model.value)
            display(self.figure)
            plt.close(self.figure)

    def _ipython_display_(self):
        """Show the controls when the browser is the value of a cell."""
        from IPython.display import display

        display(self.widget)


# ---------------------------------------------------------------- the static twin for the rendered book

def data_uri(pixels: np.ndarray, size: int, quality: int = 65) -> str:
    """An image as a small embedded JPEG (gray or RGB floats in [0, 1], or uint8)."""
    from PIL import Image

    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(array).resize((size, size), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def gradcam_pixels(image, heatmap) -> np.ndarray:
    """The image in gray with the heatmap in colour on top (as explain.overlay draws it), as RGB pixels."""
    import matplotlib

    from cxrlib.explain import to_display

    gray = to_display(image)
    heat = np.asarray(heatmap, float)
    if heat.shape != gray.shape:
        from PIL import Image

        heat = np.asarray(Image.fromarray(heat.astype(np.float32)).resize(gray.shape[::-1], Image.BILINEAR))
    colour = matplotlib.colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    return 0.6 * np.repeat(gray[..., None], 3, axis=-1) + 0.4 * colour


def browser_data(predictions: dict, images: dict, heatmaps=None, thumb: int = 112, per_choice: int = 6,
                 gradcam_limit: int = 40) -> dict:
    """What the static browser embeds: for each model (and 'all models') and each (true, predicted) pair,
    up to per_choice misclassified images with every model's probabilities; Grad-CAM overlays for at
    most gradcam_limit (model, image) pairs."""
    selection = Selection(predictions)
    choices, shown, cams = {}, {}, {}
    for model in (ALL_MODELS, *selection.models):
        picked = selection.pick(model)
        chosen = pd.concat([g.head(per_choice) for _, g in picked.groupby(["label", "pred"], sort=True)]) \
            if len(picked) else picked
        choices[model] = [[row["Image Index"], int(row["label"]), int(row["pred"])] for _, row in chosen.iterrows()]
        for image_id in chosen["Image Index"]:
            shown.setdefault(image_id, data_uri(images[image_id], thumb))
            if heatmaps is not None and len(cams) < gradcam_limit:
                heatmap = heatmaps(model, image_id)
                if heatmap is not None:
                    cams[f"{model}|{image_id}"] = data_uri(gradcam_pixels(images[image_id], heatmap), thumb)
    probs = {image_id: {m: [round(float(p), 3) for p in selection.frames[m].loc[image_id, [f"p_{c}" for c in CLASSES]]]
                        for m in selection.models} for image_id in shown}
    return {"classes": list(CLASSES), "models": [ALL_MODELS, *selection.models], "choices": choices,
            "thumbs": shown, "cams": cams, "probs": probs}


_BROWSER_JS = """
(function () {
  var root = document.getElementById("%(id)s");
  var data = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  var q = function (name) { return root.querySelector("[data-role='" + name + "']"); };
  var state = {page: 0};
  function fill(select, options) {
    options.forEach(function (o) { var e = document.createElement("option"); e.value = o; e.textContent = o; select.appendChild(e); });
  }
  fill(q("model"), data.models);
  fill(q("true"), ["any"].concat(data.classes));
  fill(q("predicted"), ["any"].concat(data.classes));
  function chosen() {
    var t = q("true").value, p = q("predicted").value;
    return data.choices[q("model").value].filter(function (c) {
      return (t === "any" || data.classes[c[1]] === t) && (p === "any" || data.classes[c[2]] === p);
    });
  }
  function show() {
    var list = chosen(), model = q("model").value;
    state.page = Math.max(0, Math.min(state.page, list.length - 1));
    var img = q("image"), caption = q("caption"), table = q("probs"), cam = q("gradcam");
    table.innerHTML = "";
    if (!list.length) {
      img.style.display = "none"; cam.textContent = "";
      caption.textContent = "No image misclassified by " + model + " matches this choice.";
      q("status").textContent = "0 images";
      return;
    }
    var c = list[state.page], id = c[0], key = model + "|" + id, useCam = q("overlay").checked && data.cams[key];
    img.style.display = ""; img.src = useCam ? data.cams[key] : data.thumbs[id]; img.alt = id;
    caption.textContent = id + ": true " + data.classes[c[1]] + ", predicted " + data.classes[c[2]] + " by " + model;
    cam.textContent = data.cams[key] ? (useCam ? "Grad-CAM overlay shown" : "Grad-CAM available") : "Grad-CAM not computed for this image";
    q("status").textContent = "image " + (state.page + 1) + " of " + list.length;
    var head = document.createElement("tr"); head.innerHTML = "<th>model</th>";
    data.classes.forEach(function (k) { var th = document.createElement("th"); th.textContent = k; head.appendChild(th); });
    table.appendChild(head);
    Object.keys(data.probs[id]).forEach(function (m) {
      var tr = document.createElement("tr"), td = document.createElement("td"); td.textContent = m; tr.appendChild(td);
      data.probs[id][m].forEach(function (v) { var cell = document.createElement("td"); cell.textContent = v.toFixed(3); tr.appendChild(cell); });
      table.appendChild(tr);
    });
  }
  ["model", "true", "predicted", "overlay"].forEach(function (n) { q(n).addEventListener("change", function () { state.page = 0; show(); }); });
  q("previous").addEventListener("click", function () { state.page -= 1; show(); });
  q("next").addEventListener("click", function () { state.page += 1; show(); });
  show();
})();
"""


def static_browser(predictions: dict, images: dict, heatmaps=None, **options) -> str:
    """The misclassified-image browser as one self-contained HTML block (embedded thumbnails, no kernel,
    no network): choose a model, a true and a predicted class, page through the images."""
    data = browser_data(predictions, images, heatmaps, **options)
    element = f"cxr-browser-{uuid.uuid4().hex[:8]}"
    payload = json.dumps(data).replace("</", "<\\/")
    return (f'<div class="cxr-browser" id="{element}" style="border:1px solid #ccc;padding:0.6em;max-width:100%">'
            '<div><label>model <select data-role="model"></select></label> '
            '<label>true <select data-role="true"></select></label> '
            '<label>predicted <select data-role="predicted"></select></label> '
            '<label><input type="checkbox" data-role="overlay" checked> Grad-CAM overlay</label></div>'
            '<div><button type="button" data-role="previous">previous</button> '
            '<button type="button" data-role="next">next</button> <span data-role="status"></span></div>'
            '<div style="display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start;margin-top:0.5em">'
            '<figure style="margin:0"><img data-role="image" width="224" height="224" style="image-rendering:auto">'
            '<figcaption data-role="caption"></figcaption><div data-role="gradcam" style="font-size:0.85em"></div></figure>'
            '<table data-role="probs" class="cxr-table" style="font-size:0.85em"></table></div>'
            f'<script type="application/json">{payload}</script>'
            f"<script>{_BROWSER_JS % {'id': element}}</script></div>")


def show_static_browser(predictions: dict, images: dict, heatmaps=None, **options) -> None:
    """Display the static twin in a notebook (it renders in the book without a kernel)."""
    from IPython.display import HTML, display

    display(HTML(static_browser(predictions, images, heatmaps, **options)))
