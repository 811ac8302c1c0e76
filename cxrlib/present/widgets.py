"""A browser of misclassified test images: ipywidgets in Jupyter; in the rendered book, a static
HTML/JS twin (no kernel, no network) and a gallery figure."""
from __future__ import annotations

import base64
import functools
import html
import io
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.core.config import CLASSES
from cxrlib.present.selection import ALL_MODELS, ANY, Selection


def draw_page(selection: Selection, chosen: pd.DataFrame, images: dict, heatmaps=None, title: str = "",
              model: str = ALL_MODELS):
    """One row per image: the image (with the model's Grad-CAM when heatmaps(model, id) is given) and
    every model's probabilities."""
    import matplotlib.pyplot as plt

    from cxrlib.present.gradcam import cam_colourbar, overlay, to_display
    from cxrlib.present.plots import legend_outside, wrapped

    bar = 0.8 if heatmaps else 0.0  # inches kept below the panels for the Grad-CAM colour bar
    fig, axes = plt.subplots(len(chosen), 2, figsize=(7.5, 2.6 * len(chosen) + 0.4 + bar), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2.2]})
    for (image_ax, bar_ax), (_, row) in zip(axes, chosen.iterrows()):
        image_id = row["Image Index"]
        claim = selection.claim(model, image_id, row["pred"]).replace(f" by {model}", "")  # the title names the model
        caption = f"{image_id}\ntrue {CLASSES[row['label']]}\n{claim}"
        heatmap = heatmaps(model, image_id) if heatmaps else None
        if heatmap is not None:  # overlay says so where the map has no spatial information
            mean = f" ({ALL_MODELS}' mean)" if model == ALL_MODELS else ""  # all models: their mean map of the class
            caption += f"\nGrad-CAM of {CLASSES[row['pred']]}{mean}"
            overlay(image_ax, images[image_id], fit(heatmap, np.shape(images[image_id])[:2]), panel_caption(caption),
                    fontsize=8)
        else:
            image_ax.imshow(to_display(images[image_id]), cmap="gray")
            image_ax.set_title(panel_caption(caption), fontsize=8)
            image_ax.axis("off")
        selection.image_probabilities(image_id).T.plot.barh(ax=bar_ax, legend=image_ax is axes[0, 0], xlim=(0, 1))
        bar_ax.set(xlabel="probability", ylabel="", title="every model's probabilities")
        if image_ax is axes[0, 0]:
            legend_outside(bar_ax, fontsize=7)
    fig.suptitle(wrapped(title))
    fig.tight_layout(rect=(0, bar / fig.get_figheight(), 1, 1))
    if heatmaps:
        cam_colourbar(fig, bottom_inches=0.25)
    return fig


def static_gallery(predictions: dict, images: dict, model: str = ALL_MODELS, true_class: str = ANY,
                   predicted: str = ANY, count: int = 4, heatmaps=None):
    """What the browser's first page shows, as a figure for the rendered book (which has no kernel)."""
    selection = Selection(predictions)
    chosen = selection.pick(model, true_class, predicted)
    title = (f"Misclassified by {model}: true {true_class}, predicted {predicted} "
             f"({len(chosen)} images; first {min(count, len(chosen))})")
    if chosen.empty:  # a sentence, not a blank figure
        from cxrlib.present.plots import say_empty

        return say_empty(f"No test image is misclassified by {model} with true class {true_class} and predicted "
                         f"class {predicted}.")
    return draw_page(selection, chosen.head(count), images, heatmaps, title, model)


def page_text(first: int, count: int, total: int) -> str:
    """'image 4 of 7', 'images 1-3 of 7', or that nothing matches."""
    if not total:
        return "no misclassified image matches this choice"
    if count == 1:
        return f"image {first + 1} of {total}"
    return f"images {first + 1}-{first + count} of {total}"


def gradcam_note(model: str, predicted: str) -> str:
    """What the Grad-CAM overlay explains, in words."""
    return (f"Grad-CAM: every model's map of {predicted}, averaged" if model == ALL_MODELS
            else f"Grad-CAM of {model}'s prediction ({predicted})")


def probability_table(selection: Selection, image_id: str, true_label: int) -> str:
    """Every model's probabilities for one image, as an HTML table with a bar in each cell."""
    cell = '<{0} style="padding:0.15em 0.8em 0.15em 0;text-align:left">{1}</{0}>'
    head = "".join(cell.format("th", html.escape(c) + (" (true)" if k == true_label else ""))
                   for k, c in enumerate(CLASSES))
    rows = []
    for model, probs in selection.image_probabilities(image_id).iterrows():
        bars = "".join(cell.format("td", f'<span class="cxr-bar" style="display:inline-block;height:0.7em;'
                                         f'width:{p * 4:.2f}em;background:#4c72b0;margin-right:0.3em"></span>{p:.3f}')
                       for p in probs)
        rows.append(f"<tr>{cell.format('td', html.escape(model))}{bars}</tr>")
    return (f'<table class="cxr-probs" style="font-size:0.85em;border-collapse:collapse">'
            f"<tr>{cell.format('th', 'model')}{head}</tr>{''.join(rows)}</table>")


def dropdown_width(description: str, options) -> str:
    """A width that shows the description and the longest option whole."""
    return f"{len(description) + max(len(str(o)) for o in options) + 9}ch"


class MisclassifiedBrowser:
    """Choose a model (or all models), a true and a predicted class; page through the misclassified images.

    heatmaps(model name or 'all models', image id) -> heatmap (any size; None: not available) enables the
    Grad-CAM overlay. `cxrlib.machinery.browse.browser(profile=...)` reads all three from a run folder.
    """

    IMAGE_PX = 256

    def __init__(self, predictions: dict, images: dict, heatmaps=None, per_page: int = 3, title: str = ""):
        import ipywidgets as w

        self.selection, self.images, self.heatmaps, self.per_page = Selection(predictions), images, heatmaps, per_page
        self.page, self.pictures = 0, {}
        self.model = self.dropdown("model", [ALL_MODELS, *self.selection.models])
        self.true_class = self.dropdown("true", [ANY, *CLASSES])
        self.predicted = self.dropdown("predicted", [ANY, *CLASSES])
        self.gradcam = w.Checkbox(value=False, description="Grad-CAM overlay", indent=False,
                                  disabled=heatmaps is None, layout=w.Layout(width="auto"))
        self.previous, self.next = w.Button(description="previous"), w.Button(description="next")
        self.status, self.message = w.Label(layout=w.Layout(margin="0 0 0 1.5em")), w.HTML()
        self.rows = [self.row() for _ in range(per_page)]
        for name in ("gradcam", "previous", "next", "status", "message"):  # the dropdowns are named as they are made
            getattr(self, name).add_class(f"cxr-{name}")
        self.gradcam.observe(lambda _: self.show(), names="value")  # the same page, with or without the overlay
        self.previous.on_click(lambda _: self.turn(-1))
        self.next.on_click(lambda _: self.turn(+1))
        heading = [w.HTML(f"<b>{html.escape(title)}</b>")] if title else []
        wrap = w.Layout(flex_flow="row wrap")  # on a phone, controls go to the next line instead of off the screen
        self.widget = w.VBox([*heading, w.HBox([self.model, self.true_class, self.predicted], layout=wrap),
                              w.HBox([self.previous, self.next, self.gradcam, self.status], layout=wrap), self.message,
                              *(box for box, _, _ in self.rows)])
        self.widget.add_class("cxr-widget-browser")
        self.show(reset=True)

    def dropdown(self, description: str, options: list):
        """A dropdown wide enough for its longest option; a new choice starts again at the first page."""
        import ipywidgets as w

        menu = w.Dropdown(options=options, description=description, style={"description_width": "initial"},
                          layout=w.Layout(width=dropdown_width(description, options)))
        menu.add_class(f"cxr-{description}")
        menu.observe(lambda _: self.show(reset=True), names="value")
        return menu

    def row(self) -> tuple:
        """One image slot: (box, image, caption and probabilities)."""
        import ipywidgets as w

        # the image keeps its square (a flex row would stretch it to the caption's height); the caption goes below
        # it where the page is narrow, and its table scrolls sideways where even that is too narrow
        image = w.Image(format="jpeg", width=self.IMAGE_PX, height=self.IMAGE_PX,
                        layout=w.Layout(align_self="flex-start", max_width="100%", height="auto", object_fit="contain"))
        text = w.HTML(layout=w.Layout(margin="0 0 0 1em", flex="1 1 20em", min_width="0", overflow_x="auto"))
        box = w.HBox([image, text], layout=w.Layout(display="none", margin="0.4em 0", flex_flow="row wrap"))
        for widget, name in ((box, "row"), (image, "image"), (text, "caption")):
            widget.add_class(f"cxr-{name}")
        return box, image, text

    def chosen(self) -> pd.DataFrame:
        """The images the current controls select."""
        return self.selection.pick(self.model.value, self.true_class.value, self.predicted.value)

    def current(self) -> pd.DataFrame:
        """The images on the current page."""
        start = self.page * self.per_page
        return self.picked.iloc[start:start + self.per_page]

    def pages(self) -> int:
        """How many pages the selection fills (at least one)."""
        return max(1, -(-len(self.picked) // self.per_page))

    def turn(self, step: int):
        """Go to the previous or next page, staying within the selection."""
        self.page = min(max(self.page + step, 0), self.pages() - 1)
        self.show()

    def show(self, reset: bool = False):
        """Say at once that a page is loading (old images hidden), then fill the page and the status line."""
        if reset:
            self.page, self.picked = 0, self.chosen()
        page, total = self.current(), len(self.picked)
        text = page_text(self.page * self.per_page, len(page), total)
        self.previous.disabled, self.next.disabled = self.page == 0, self.page >= self.pages() - 1
        for box, _, _ in self.rows:
            box.layout.display = "none"
        if not total:  # a sentence instead of images
            self.status.value = text
            self.message.value = html.escape(f"No test image misclassified by {self.model.value} has true class "
                                             f"{self.true_class.value} and predicted class {self.predicted.value}.")
            return
        self.message.value, self.status.value = f"<i>loading {text} ...</i>", f"loading {text} ..."
        for (box, image, caption), (_, row) in zip(self.rows, page.iterrows()):
            image.value, caption.value = self.picture(row), self.caption(row)
            box.layout.display = "flex"
        self.message.value, self.status.value = "", text

    def overlay_heatmap(self, image_id: str):
        """The Grad-CAM to draw over an image, or None (overlay off, none available, or no spatial information)."""
        from cxrlib.science.gradcam import has_spatial_information

        if not (self.gradcam.value and self.heatmaps):
            return None
        heatmap = self.heatmaps(self.model.value, image_id)
        return heatmap if heatmap is not None and has_spatial_information(heatmap) else None

    def picture(self, row) -> bytes:
        """The image as JPEG bytes, with the model's Grad-CAM when the overlay is on (made once, remembered)."""
        from cxrlib.present.gradcam import to_display

        image_id = row["Image Index"]
        key = (image_id, self.model.value if self.gradcam.value else None)
        if key not in self.pictures:
            heatmap = self.overlay_heatmap(image_id)
            image = self.images[image_id]
            pixels = to_display(image) if heatmap is None else gradcam_pixels(image, heatmap)
            self.pictures[key] = jpeg_bytes(pixels, self.IMAGE_PX, quality=85)
        return self.pictures[key]

    def caption(self, row) -> str:
        """The image id, true and predicted class, what the overlay shows, and every model's probabilities."""
        image_id, model, predicted = row["Image Index"], self.model.value, CLASSES[row["pred"]]
        lines = [f"<b>{html.escape(image_id)}</b>",
                 f"true {CLASSES[row['label']]}, {html.escape(self.selection.claim(model, image_id, row['pred']))}"]
        if self.gradcam.value:
            lines.append(html.escape(gradcam_note(model, predicted)) if self.overlay_heatmap(image_id) is not None
                         else "no Grad-CAM with spatial information for this image")
        return ("<div>" + "<br>".join(lines) + "</div>"
                + probability_table(self.selection, image_id, int(row["label"])))

    def _ipython_display_(self):
        """Show the controls when the browser is the value of a cell."""
        from IPython.display import display

        display(self.widget)


# ---------------------------------------------------------------- the static twin for the rendered book

def jpeg_bytes(pixels: np.ndarray, size, quality: int = 65) -> bytes:
    """An image as JPEG bytes at size x size (None: its own size; gray or RGB floats in [0, 1], or uint8)."""
    from PIL import Image

    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(array)
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def data_uri(pixels: np.ndarray, size=None, quality: int = 65) -> str:
    """An image as a small embedded JPEG (gray or RGB floats in [0, 1], or uint8; size None: its own size)."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(pixels, size, quality)).decode()


def panel_caption(text: str, width: int = 26) -> str:
    """A caption wrapped to the image panel's width, so it never runs into the bar chart beside it."""
    import textwrap

    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def fit(heatmap, shape) -> np.ndarray:
    """A heatmap resized bilinearly to an image's (rows, columns)."""
    from PIL import Image

    heat = np.asarray(heatmap, np.float32)
    if heat.shape == tuple(shape):
        return heat
    return np.asarray(Image.fromarray(heat).resize((int(shape[1]), int(shape[0])), Image.BILINEAR))


def gradcam_pixels(image, heatmap) -> np.ndarray:
    """The image in gray with the heatmap in colour on top (as cam_figures.overlay draws it), as RGB pixels."""
    import matplotlib

    from cxrlib.present.gradcam import CAM_ALPHA, CAM_CMAP, to_display

    gray = to_display(image)
    heat = fit(heatmap, gray.shape)
    colour = matplotlib.colormaps[CAM_CMAP](np.clip(heat, 0, 1))[..., :3]
    return (1 - CAM_ALPHA) * np.repeat(gray[..., None], 3, axis=-1) + CAM_ALPHA * colour


def browser_data(predictions: dict, images: dict, heatmaps=None, thumb=None, per_choice: int = 6,
                 gradcam_limit: int = 40) -> dict:
    """What the static browser embeds: for each model (and 'all models') and each (true, predicted) pair,
    up to per_choice misclassified images, each with how many models predict its shown class (captions
    claim no more than that), every model's probabilities, and how many images each pair holds in all (the
    page says where it shows fewer); Grad-CAM overlays for at most gradcam_limit (model, image) pairs.
    Images are embedded at their own size (thumb: a size to resize them to instead)."""
    from cxrlib.present.gradcam import NO_SPATIAL_INFORMATION
    from cxrlib.science.gradcam import has_spatial_information

    selection = Selection(predictions)
    choices, totals, shown, cams, notes, wrong = {}, {}, {}, {}, {}, set()
    for model in (ALL_MODELS, *selection.models):
        picked = selection.pick(model)
        wrong.update(picked["Image Index"])
        groups = list(picked.groupby(["label", "pred"], sort=True)) if len(picked) else []
        chosen = pd.concat([g.head(per_choice) for _, g in groups]) if groups else picked
        totals[model] = [[int(label), int(pred), len(g)] for (label, pred), g in groups]
        choices[model] = [[row["Image Index"], int(row["label"]), int(row["pred"]),
                           selection.agreement(row["Image Index"], row["pred"])] for _, row in chosen.iterrows()]
        for image_id, pred in zip(chosen["Image Index"], chosen["pred"]):
            shown.setdefault(image_id, data_uri(images[image_id], thumb))
            heatmap = heatmaps(model, image_id) if heatmaps is not None and len(notes) < gradcam_limit else None
            if heatmap is not None:  # named by its class; a map without spatial information is not drawn
                key, note = f"{model}|{image_id}", gradcam_note(model, CLASSES[int(pred)])
                if has_spatial_information(heatmap):
                    notes[key], cams[key] = note, data_uri(gradcam_pixels(images[image_id], heatmap), thumb)
                else:
                    notes[key] = f"{note}: {NO_SPATIAL_INFORMATION}"
    # every model's probabilities for every image a model misclassifies (numbers only, so the whole test set's
    # mistakes fit): what the browser's table shows, and what any caption about them can be checked against
    probs = {image_id: {m: [round(float(p), 3) for p in row]
                        for m, row in selection.image_probabilities(image_id).iterrows()}
             for image_id in sorted(wrong | set(shown))}
    return {"classes": list(CLASSES), "models": [ALL_MODELS, *selection.models], "choices": choices,
            "totals": totals, "per_choice": per_choice, "gradcam_limit": gradcam_limit, "thumbs": shown, "cams": cams,
            "notes": notes, "probs": probs}


@functools.lru_cache(maxsize=1)
def browser_js() -> str:
    """The static twin's script, read once when a page first embeds it: plain JS over the JSON the page embeds
    ("%(id)s" is the element's id)."""
    return Path(__file__).with_name("browser.js").read_text()


INTERACTIVE_NOTE = ("Fully interactive in this page, without a kernel: choose a model (or all models), the true and "
                    "the predicted class, page through the images, and switch the Grad-CAM overlay.")


def static_browser(predictions: dict, images: dict, heatmaps=None, **options) -> str:
    """The misclassified-image browser as one self-contained HTML block (embedded images at their own size, no
    kernel, no network): choose a model, a true and a predicted class, page through the images."""
    data = browser_data(predictions, images, heatmaps, **options)
    element = f"cxr-browser-{uuid.uuid4().hex[:8]}"
    payload = json.dumps(data).replace("</", "<\\/")
    return (f'<div class="cxr-browser" id="{element}" style="border:1px solid #ccc;padding:0.6em;max-width:100%;'
            'box-sizing:border-box">'
            f'<p style="margin:0 0 0.4em 0;font-size:0.9em"><em>{html.escape(INTERACTIVE_NOTE)}</em></p>'
            '<div style="display:flex;flex-wrap:wrap;gap:0.3em 1em">'
            '<label>model <select data-role="model" style="max-width:100%"></select></label> '
            '<label>true <select data-role="true"></select></label> '
            '<label>predicted <select data-role="predicted"></select></label> '
            '<label><input type="checkbox" data-role="overlay" checked> Grad-CAM overlay</label></div>'
            '<div style="margin-top:0.3em"><button type="button" data-role="previous">previous</button> '
            '<button type="button" data-role="next">next</button> <span data-role="status"></span></div>'
            '<div style="display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start;margin-top:0.5em">'
            '<figure style="margin:0;max-width:100%"><img data-role="image" alt="" '
            'style="max-width:100%;height:auto;image-rendering:auto">'
            '<figcaption data-role="caption"></figcaption><div data-role="gradcam" style="font-size:0.85em"></div></figure>'
            '<div style="max-width:100%;overflow-x:auto">'
            '<table data-role="probs" class="cxr-table cxr-probs"></table></div></div>'
            f'<script type="application/json">{payload}</script>'
            f"<script>{browser_js() % {'id': element}}</script></div>")


def show_static_browser(predictions: dict, images: dict, heatmaps=None, **options) -> None:
    """Display the static twin in a notebook (it renders in the book without a kernel)."""
    from IPython.display import HTML, display

    display(HTML(static_browser(predictions, images, heatmaps, **options)))
