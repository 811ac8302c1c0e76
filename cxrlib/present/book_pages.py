"""The pages around the chapters, in words: the index's profile table, the build page and a stale page's banner.
Pure functions of plain values; machinery gathers the values from the run folder."""
from __future__ import annotations

import html

import pandas as pd

from cxrlib.core.config import CXR
from cxrlib.present.labels import limiting_factors, profile_in_words
from cxrlib.present.tables import markdown_table

# What each profile is for, in words for the index page's profile table.
PURPOSE = {"smoke": "continuous integration: checks that everything runs, in minutes",
           "cpu": "a laptop with 2 cores: the real sample, within a budget of 30 minutes",
           "full": "a GPU and the real 45 GB dataset: the report's settings, in hours"}

# Why each profile trains what it trains, in words for the build page, filled in from the run's own settings.
WHY = {
    "smoke": ("every code path in seconds: {image_size} px images, epochs capped at {epochs}, a handful of images "
              "per class, run eagerly, since tracing a graph costs more than so few steps",),
    "cpu": ("{image_size} px for the from-scratch nets and {backbone_size} px for the backbones: every sample image "
            "is first brought down to the sample's smallest native size (64 px), so larger inputs add pixels but no "
            "information",
            "up to {epochs} epochs (patience {patience}), a Hyperband budget of {hyperband_max_epochs} epochs, fine "
            "tuning {fine_tune_epochs} epochs from each backbone's shallowest unfreeze point only: so that the whole "
            "book fits its budget of 30 minutes on 2 cores (this build's times are below)",
            "at most {max_per_patient} images of one patient, so that no patient supplies more than "
            "{max_patient_share:.0%} of a class's validation or test images",
            "class-weighted loss, since on a few hundred images unweighted nets name No Finding for nearly "
            "everything, then each classifier's biases shifted on validation until its mean probabilities are equal "
            "across classes, the balanced prior the weights trained for (shifted to validation's class shares "
            "instead, every cpu image model answered No Finding for every test image)"),
    "full": ("the report's sizes, epochs, split sizes, fine-tuning depths and plain argmax, on the real dataset",),
}


def images_text(settings: dict) -> str:
    """How many images a profile uses, in words."""
    if settings["max_per_class"]:
        return "{train}/{val}/{test} per class (train/val/test)".format_map(settings["max_per_class"])
    if settings["caps"]:
        return f"the report's set sizes ({' / '.join(f'{sum(c.values()):,}' for c in settings['caps'].values())})"
    return "every image of the data"


def profile_table(profiles: dict) -> str:
    """The index's table of profiles (name -> settings), in Markdown."""
    return markdown_table(pd.DataFrame([
        {"profile": f"`{name}`", "meant for": PURPOSE[name],
         "input sizes": f"{s['image_size']} px (resized to {s['resize_to']}), backbones {s['backbone_size']} px",
         "images": images_text(s),
         "epochs": f"up to {s['epochs']} (patience {s['patience']}); fine tuning {s['fine_tune_epochs']}",
         "loss": "class-weighted" if s["class_weight"] == "balanced" else "plain"} for name, s in profiles.items()]))


def empty_build_page() -> str:
    """The build page before any chapter has run."""
    return f"# This build\n\nNo chapter has been executed yet: run `{CXR} run` first.\n"


def build_page(profile: str, first: dict, defaults: dict, facts: dict, headline: pd.DataFrame,
               timings: pd.DataFrame) -> str:
    """The build page's Markdown: profile, data, date, commit, versions, chapter times and headline results.
    first: a chapter's chapter.json; defaults: the profile's settings; facts: built, commits, libraries, folder."""
    settings = first.get("settings", {})
    lines = ["# This build", "", f"**{profile_in_words(profile, settings)}.**", "",
              f"- **Profile:** `{profile}`",
              f"- **Data:** {first.get('data', 'unknown (no run folder found at ' + str(facts['folder']) + ')')}",
              f"- **Built:** {facts['built']}",
              f"- **Commit:** {', '.join(f'`{c}`' for c in facts['commits']) or 'unknown'}",
              f"- **Libraries:** {facts['libraries']}",
              f"- **Limited by:** {'; '.join(limiting_factors(settings, first.get('source'))) or 'nothing recorded'}",
              "- **Why these settings:**",
              *(f"  - {reason.format_map({**defaults, **settings})}" for reason in WHY.get(profile, ())),
              "", "## Our best results beside the report's", "",
              "Each family's best model, chosen on validation macro F1 by the conclusions chapter, with its test "
              "metrics and 95% patient intervals, and the report's row for the same model.", "",
              markdown_table(headline) if not headline.empty else f"No headline yet: run `{CXR} run conclusions`.",
              "", "## How long each chapter took", "",
              markdown_table(timings) if not timings.empty else "The runner recorded no chapter times for this build.",
              ""]
    return "\n".join(lines)


def stale_banner(stale: list, command: str, css_class: str) -> str:
    """The banner of a page whose results changed since it ran: what it read, and the command that rebuilds it."""
    return (f'<div class="{css_class}" style="border:3px solid #c60;background:#fff4e0;padding:0.6em 1em">'
            "&#9888; <strong>This page no longer matches the results in place:</strong> "
            f"{html.escape('; '.join(stale))}."
            f" <code>{html.escape(command)}</code> brings back the results it read (kept, not trained again) and"
            " rebuilds it.</div>")
