"""The page's JSON payload: text columns with gaps stay valid JSON (no NaN)."""

from __future__ import annotations

import json

import pandas as pd

from gilmatrix.reports.charts import ChartSet
from gilmatrix.reports.payload import chart_payload, script_json


def test_text_column_with_missing_values_encodes_to_null() -> None:
    frame = pd.DataFrame({"class": ["waiting", None, "serialized"], "x": [1.0, float("nan"), 3.0]})
    charts = ChartSet((), datasets={"cells": frame})
    payload = chart_payload(charts)
    rows = payload["datasets"]["cells"]["rows"]
    assert [row[0] for row in rows] == [0, None, 1]
    assert rows[1][1] is None
    json.loads(script_json(payload))  # allow_nan=False inside: raises on any NaN
