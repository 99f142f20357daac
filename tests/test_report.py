import json
import math

import numpy as np

from eval.report import fmt_ap, format_table, plot_ap_bars, plot_pr_curves, write_csv, write_json


def test_json_turns_nan_and_numpy_into_plain_values(tmp_path):
    path = write_json(tmp_path / "m" / "metrics.json", {"mAP": np.float64(0.5), "ap": {1: math.nan, 2: np.int64(3)}})
    assert json.loads(path.read_text()) == {"mAP": 0.5, "ap": {"1": None, "2": 3}}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_csv_and_table(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["id", "ap"], [[12, 0.5], [14, None]])
    assert path.read_text() == "id,ap\n12,0.5\n14,\n"
    table = format_table(["class", "AP"], [["stand", fmt_ap(0.8123)], ["walk", fmt_ap(None)]])
    assert table.splitlines() == ["class     AP", "-----  -----", "stand  81.23", "walk       -"]
    assert fmt_ap(math.nan) == "-"


def test_plots_are_png_files(tmp_path):
    bars = plot_ap_bars(["a", "b", "c"], [0.5, None, 0.9], tmp_path / "bars.png", "AP")
    curves = plot_pr_curves({"a": (np.array([1.0, 0.5]), np.array([0.5, 0.5]))}, tmp_path / "pr.png", "PR")
    for path in (bars, curves):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
