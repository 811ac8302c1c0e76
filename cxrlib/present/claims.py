"""A claim follows its interval: the words the book may use about a number, from its interval alone.

"Above", "below", "better" or "helps" appear only where the 95% interval of the difference (science.stats,
paired on the same patient resamples) excludes zero; otherwise the sentence says that the results are
indistinguishable on this many images from this many patients. A tie is a tie.
"""
from __future__ import annotations

import math

from cxrlib.science.stats import Interval

CHANCE_AUC = 0.5
NOT_CHANCE = "not distinguishable from chance"


def number(value: float, decimals: int = 3) -> str:
    """A number as the pages print it ('–' where there is none)."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{decimals}f}"


def interval_text(found: Interval, decimals: int = 3, signed: bool = False) -> str:
    """'0.519 (0.361 to 0.602)': the estimate and its 95% interval ('+0.100 (−0.020 to +0.210)' when signed)."""
    shown = (lambda v: "–" if math.isnan(v) else f"{v:+.{decimals}f}".replace("-", "−")) if signed else (
        lambda v: number(v, decimals))
    if math.isnan(found.low):
        return shown(found.estimate)
    return f"{shown(found.estimate)} ({shown(found.low)} to {shown(found.high)})"


def units(images: int, patients: int, split: str = "test") -> str:
    """'82 test images from 62 patients': what every interval rests on."""
    return f"{images:,} {split} images from {patients:,} patient{'s' if patients != 1 else ''}"


def difference_word(found: Interval, where: str, above: str = "above", below: str = "below") -> str:
    """`above` or `below` where the difference's interval excludes zero, else 'indistinguishable on <where>'."""
    return {1: above, -1: below}.get(found.sign, f"indistinguishable on {where}")


def answer(found: Interval, where: str, yes: str = "yes", no: str = "no") -> str:
    """A report question's answer from the interval of the difference (a minus b): yes where it lies above 0,
    no where below, else "cannot tell on <where>"; the difference and its interval follow in brackets."""
    word = {1: yes, -1: no}.get(found.sign, f"cannot tell on {where}")
    return f"{word} (difference {interval_text(found, signed=True)})"


def chance_reading(auc: Interval) -> str:
    """NOT_CHANCE where the macro ROC AUC interval holds 0.5 (or the AUC is undefined), else ''."""
    return NOT_CHANCE if math.isnan(auc.estimate) or auc.holds(CHANCE_AUC) else ""
