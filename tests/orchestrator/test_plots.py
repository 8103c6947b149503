"""The front page (pareto/front.html) rendered in a real browser: headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.tracking import SearchRecord
from orchestrator.widths import GROUPS_ARTIFACT

GROUPS = {"stem": 16, "stage1": 16, "stage2": 32, "stage3": 64}


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium here (make test installs Debian's chromium where it runs as root)")
    return path


def _render(html: Path) -> str:
    """The page's DOM after its scripts ran (plotly draws the SVG in the browser)."""
    done = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=15000",
            "--dump-dom",
            html.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return re.sub(r"<script.*?</script>", "", done.stdout, flags=re.S)  # the drawn SVG, not plotly.js


def _final(acc: float, macs: int, kept: dict) -> dict:
    return {
        "val_accuracy": acc,
        "val_loss": 1 - acc,
        "macs": macs,
        "macs_ratio": macs / 1e8,
        "params": 1000,
        "epoch": 2,
        "spec_json": json.dumps({"arch": "resnet20", "channels": kept}),
    }


def test_the_front_page_draws_every_point_and_the_widths_of_each_front_point(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    record = SearchRecord.open(uri, "exp", str(tmp_path / "runs"), resume=False)
    record.log_baseline({"val_accuracy": 0.99, "macs": 1e8})
    record.client.log_text(record.parent_run_id, json.dumps(GROUPS), GROUPS_ARTIFACT)
    trials = {
        "a": (0.90, 2 * 10**7, {"stem": 8, "stage1": 8, "stage2": 12, "stage3": 20}),
        "b": (0.95, 5 * 10**7, {"stem": 12, "stage1": 12, "stage2": 24, "stage3": 40}),
        "c": (0.93, 6 * 10**7, {"stem": 16, "stage1": 12, "stage2": 28, "stage3": 50}),  # dominated by b
        "d": (0.97, 8 * 10**7, {"stem": 16, "stage1": 16, "stage2": 28, "stage3": 56}),
    }
    for tid, (acc, macs, kept) in trials.items():
        record.log_final(tid, {"stage0": 0.5}, _final(acc, macs, kept))
    record.finish()
    html = Path(MlflowClient(uri).download_artifacts(record.parent_run_id, "pareto/front.html", str(tmp_path)))
    dom = _render(html)
    # scatter markers: 4 trials and the baseline's row, plus the baseline's star
    assert len(re.findall(r'<path class="point[ "]', dom)) == len(trials) + 2
    assert dom.count('class="trace bars"') == 3  # baseline, uniform cut and the pointed point's widths
    assert "heatmaplayer" in dom and "<image" in dom  # the front points' profiles
    page = html.read_text()
    data = json.loads(re.search(r"var W = (\{.*?\});\n", page).group(1))
    assert set(data["points"]) == {"a", "b", "d"} and data["groups"] == list(GROUPS)  # the front's points
    assert data["points"]["b"] == trials["b"][2]


def test_clicking_a_front_point_shows_its_widths(tmp_path):
    """The page's script, run by the browser: a click on trial b's point puts b's kept counts
    in the width bars (a test script appended to the page clicks and reads them back)."""
    from orchestrator.plots import write_html

    rows = [
        {"trial": t, "run_id": t, "val_accuracy": a, "macs": m, "macs_ratio": m / 1e8, "params": 1, "rank": 0,
         "pareto": True}
        for t, a, m in (("a", 0.90, 2e7), ("b", 0.95, 5e7))
    ]  # fmt: skip
    kept = {
        "a": {"stem": 8, "stage1": 8, "stage2": 12, "stage3": 20},
        "b": {"stem": 12, "stage1": 12, "stage2": 24, "stage3": 40},
    }
    page = write_html(rows, tmp_path / "f.html", "t", None, "macs", {"baseline": GROUPS, "points": kept})
    probe = """<script>setTimeout(function () {
      var gd = document.getElementsByClassName('plotly-graph-div')[0];
      gd.emit('plotly_click', {points: [{customdata: 'b'}]});
      var bars = gd.data.filter(function (t) { return t.type === 'bar'; });
      document.body.setAttribute('data-shown', JSON.stringify(bars.map(function (t) { return [t.name, t.y]; })));
    }, 500);</script></body>"""
    page.write_text(page.read_text().replace("</body>", probe))
    done = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000", "--dump-dom",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    shown = json.loads(re.search(r"data-shown=\"(.*?)\"", done.stdout).group(1).replace("&quot;", '"'))
    assert shown[0] == ["baseline", list(GROUPS.values())]
    assert shown[2] == ["trial b", list(kept["b"].values())]  # was trial a's before the click
    assert shown[1][1] == [round(w * 0.5**0.5) for w in GROUPS.values()]  # the uniform cut at b's 0.5x MACs
