"""A browser of misclassified test images: ipywidgets in Jupyter, a static gallery in the rendered book."""
from __future__ import annotations

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

    def pick(self, model: str, true_class: str = ANY, predicted: str = ANY) -> pd.DataFrame:
        """Misclassified images of one model (or of every model) filtered by true and predicted class."""
        labels = next(iter(self.frames.values()))["label"].to_numpy()
        if model == ALL_MODELS:
            wrong = np.all([f["pred"].to_numpy() != labels for f in self.frames.values()], axis=0)
        else:
            wrong = self.frames[model]["pred"].to_numpy() != labels
        pred = self.probabilities(model).argmax(axis=1)
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

    rows = max(len(chosen), 1)
    fig, axes = plt.subplots(rows, 2, figsize=(10, 2.9 * rows), squeeze=False,
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
            bar_ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def static_gallery(predictions: dict, images: dict, model: str = ALL_MODELS, true_class: str = ANY,
                   predicted: str = ANY, count: int = 4, heatmaps=None):
    """What the browser's first page shows, as a figure for the rendered book (which has no kernel)."""
    selection = Selection(predictions)
    chosen = selection.pick(model, true_class, predicted)
    title = (f"Misclassified by {model}: true {true_class}, predicted {predicted} "
             f"({len(chosen)} images; first {min(count, len(chosen))})")
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
