"""One sparkline formula: the server (dashboard/presenters.py) and the browser
(frontend/src/sparkline.js) draw the same counts as the same line, zero at the bottom."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from dashboard.presenters import sparkline_points

ROOT = Path(__file__).resolve().parent.parent
SERIES = [
    [0, 3, 10, 4, 0],
    [90, 95, 100, 92],  # a busy topic: the line must stay near the top, not swing edge to edge
    [7, 7, 7],
    [0, 0, 0, 0],
    [5],
    [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    [],
]


def points(text):
    return [tuple(float(n) for n in pair.split(",")) for pair in text.split()]


def test_unit_the_server_draws_counts_from_a_zero_baseline():
    """Zero lies on the bottom line (y = 23 of 24), the highest count on the top one (y = 1):
    90 → 100 is a small step near the top, not a swing from bottom to top."""
    assert points(sparkline_points([0, 10], 120, 24)) == [(0.0, 23.0), (120.0, 1.0)]
    assert [y for _, y in points(sparkline_points([90, 100], 120, 24))] == [3.2, 1.0]
    assert points(sparkline_points([5], 120, 24)) == [(0.0, 1.0), (120.0, 1.0)]
    assert sparkline_points([], 120, 24) == ""


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed; the browser formula is not run")
def test_the_browser_and_the_server_draw_the_same_counts_as_the_same_line():
    script = (
        f"import {{ sparklinePoints }} from {json.dumps((ROOT / 'frontend/src/sparkline.js').as_uri())};\n"
        f"const series = {json.dumps(SERIES)};\n"
        "console.log(JSON.stringify(series.map((values) => sparklinePoints(values, 120, 24))));\n"
    )
    result = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    browser = json.loads(result.stdout)
    for values, drawn in zip(SERIES, browser):
        server = points(sparkline_points(values, 120, 24))
        assert len(points(drawn)) == len(server), values
        for (bx, by), (sx, sy) in zip(points(drawn), server):
            # Both round to a tenth; only the rounding of an exact half may differ.
            assert abs(bx - sx) <= 0.1 + 1e-9 and abs(by - sy) <= 0.1 + 1e-9, (values, drawn, server)
