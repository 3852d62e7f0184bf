"""Stage 3 of the report, payloads: what the page's script receives, as JSON safe inside a
<script> element (the charts' datasets, encoded compactly, and their Vega-Lite specs). Pure:
no I/O (render.py writes it into the page)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from gilmatrix.reports.charts import ChartSet


def chart_payload(charts: ChartSet) -> dict[str, Any]:
    """What the page's script needs: each dataset once, and each chart's spec with the names
    of the datasets it uses. Datasets are columns + rows (keys are not repeated per row) and
    text columns are dictionary-encoded (a row holds an index into "categories"): together
    that halves the page for 10,000 cells. report.js decodes them."""
    datasets = {}
    for name, frame in charts.datasets.items():
        frame = frame.replace([math.inf, -math.inf], math.nan)  # JSON has no infinity
        clean = frame.astype(object).where(frame.notna(), None)
        categories = {}
        for column in frame.columns:
            if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
                codes, uniques = pd.factorize(clean[column], use_na_sentinel=True)
                categories[column] = [None if v is None else str(v) for v in uniques]
                # An object Series: a plain list of ints and None would become float NaN.
                clean[column] = pd.Series(
                    [None if c < 0 else int(c) for c in codes], index=clean.index, dtype=object
                )
        datasets[name] = {
            "columns": list(frame.columns),
            "categories": categories,
            "rows": [list(row) for row in clean.itertuples(index=False)],
        }
    return {
        "datasets": datasets,
        "charts": [{"id": c.id, "spec": c.spec, "datasets": list(c.datasets)} for c in charts.charts],
    }


def script_json(payload: Mapping[str, Any]) -> str:
    """JSON safe inside <script>: '<', '>' and '&' escaped so no label can close the tag."""
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=_json_default)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
