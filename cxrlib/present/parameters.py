"""Our networks' parameter counts beside the report's model summaries (report.PARAMETERS): one call a table.

Each builds the networks it counts (TensorFlow is imported on the first call only, by the chapters that train)."""
from __future__ import annotations

import pandas as pd

from cxrlib.present.report import parameters_table


def fused_parameters() -> pd.DataFrame:
    """The fused network's total, trainable and frozen parameters at the report's sizes (250 px resized to 227)."""
    from cxrlib.science.models import count_params, fused_net

    return parameters_table("fused network", {"ours (250 -> 227)": count_params(fused_net(250, 227))})


def scratch_parameters(image_size: int, resize_to: int) -> pd.DataFrame:
    """The two CNNs from scratch: their totals at the report's 227 px and at this run's sizes."""
    from cxrlib.science.models import count_params, first_cnn, second_cnn

    def totals(size: int, to: int) -> dict:
        """Each model's total parameters when size px images are resized to `to` px."""
        return {"first model": count_params(first_cnn(size, to))["total"],
                "second model": count_params(second_cnn(size, to))["total"]}

    return parameters_table("from scratch", {"ours at 227 px": totals(227, 227),
                                             f"ours at {resize_to} px (this run)": totals(image_size, resize_to)})


def resizer_parameters(size: int = 227) -> pd.DataFrame:
    """The learnable resizer's parameters at the report's output size."""
    from cxrlib.science.models import count_params, learnable_resizer

    ours = count_params(learnable_resizer(size))["total"]
    return parameters_table("learnable resizer", {"ours": {"parameters": ours}})
