"""``clusterfarm report``: one self-contained HTML file, opened in a real headless Chromium."""

import json
import re
import sqlite3

import pytest

from clusterfarm.show.report import COLORS
from tests.harness.browser import Browser, chromium_missing
from tests.harness.cli import PLUGIN_SETTINGS, run_cli, write_settings

# the colour under the centre of every cell of every grid canvas, counted per grid
SAMPLE_GRID = """
[...document.querySelectorAll("canvas.grid")].map((c) => {
  const d = Object.fromEntries(Object.entries(c.dataset).map(([k, v]) => [k, isNaN(v) ? v : +v]));
  const img = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const counts = {};
  for (let r = 0; r < d.rows; r++) for (let k = 0; k < d.cols; k++) {
    const x = d.x0 + k * d.cw + Math.floor((d.cw - 1) / 2);
    const y = d.y0 + r * d.ch + Math.floor((d.ch - 1) / 2);
    const i = (y * c.width + x) * 4;
    const hex = "#" + [0, 1, 2].map((j) => img[i + j].toString(16).padStart(2, "0")).join("");
    counts[hex] = (counts[hex] || 0) + 1;
  }
  return {task: d.task, cells: d.rows * d.cols, counts};
})
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A run of 3 years x 5 members where member 0 always fails (3 F, 12 complete)."""
    project = tmp_path_factory.mktemp("report")
    write_settings(project / "clusterfarm.toml", PLUGIN_SETTINGS)
    result = run_cli(
        "run", "--local", "2", "--json", "--task", "fail_member", "--years", "2000-2002",
        "--members", "0-4", "--retries", "1", cwd=project,
    )  # fmt: skip
    assert result.code == 1, result.err
    return project


@pytest.fixture
def browser():
    if reason := chromium_missing():
        pytest.skip(reason)
    chromium = Browser()
    yield chromium
    chromium.close()


@pytest.mark.slow
def test_report_is_one_file_that_names_nothing_outside_itself(finished_run, tmp_path):
    out = tmp_path / "report.html"
    result = run_cli("report", "--out", str(out), cwd=finished_run)
    assert result.code == 0, result.err
    assert "wrote" in result.out and "MB" in result.out
    text = out.read_text()
    assert not re.search(r"""\b(src|href)\s*=\s*["']?+(?!data:|#)""", text)
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    for section in ("grid", "timeline", "distributions", "slowest", "failures", "workers"):
        assert f'id="{section}"' in text
    assert "member 0 always fails" in text  # the failures table
    assert "provenance" in text and "python" in text


@pytest.mark.hosts
def test_report_opens_in_headless_chromium_without_errors_or_requests(
    finished_run, tmp_path, browser
):
    out = tmp_path / "report.html"
    assert run_cli("report", "--out", str(out), cwd=finished_run).code == 0
    url = out.as_uri()
    seconds = browser.open(url)
    assert browser.console_errors() == []
    assert browser.requests() == [url]  # the page itself, nothing else
    [grid] = browser.evaluate(SAMPLE_GRID)
    assert grid["task"] == "fail_member" and grid["cells"] == 15
    assert grid["counts"] == {COLORS["F"]: 3, COLORS["+"]: 12}
    assert browser.evaluate("document.querySelectorAll('canvas.timeline').length") == 1
    assert browser.evaluate("document.querySelector('canvas.timeline').dataset.lanes") == "2"
    # hovering a failed cell shows its error
    browser.call("Input.dispatchMouseEvent", type="mouseMoved", **_centre(browser, 0, 0))
    assert "member 0 always fails" in browser.evaluate("document.getElementById('tip').textContent")
    browser.call("Input.dispatchMouseEvent", type="mousePressed", button="left", clickCount=1,
                 **_centre(browser, 0, 0))  # fmt: skip
    browser.call("Input.dispatchMouseEvent", type="mouseReleased", button="left", clickCount=1,
                 **_centre(browser, 0, 0))  # fmt: skip
    panel = browser.evaluate("document.getElementById('panel').innerText")
    assert panel.count("member 0 always fails") == 2  # both attempts listed
    shot = tmp_path / "report.png"
    browser.screenshot(shot)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:4] == b"\x89PNG"
    assert seconds < 30


# an error that, put in a <script> as it is, keeps the script from ever running
HOSTILE = "<!--<script>x</script> & \u2028 boom"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """A run whose one failure says HOSTILE, and its report."""
    project = tmp_path_factory.mktemp("hostile")
    write_settings(
        project / "clusterfarm.toml",
        PLUGIN_SETTINGS + f"[tasks.fail_saying]\nmessage = {json.dumps(HOSTILE)}\n",
    )
    ran = run_cli(
        "run", "--local", "1", "--json", "--task", "fail_saying", "--years", "2000",
        "--members", "0-2", "--retries", "0", cwd=project,
    )  # fmt: skip
    assert ran.code == 1, ran.err
    out = project / "report.html"
    assert run_cli("report", "--out", str(out), cwd=project).code == 0
    return out


def test_the_report_data_holds_an_error_text_that_no_script_can_be_ended_or_hidden_by(
    hostile_run,
):
    text = hostile_run.read_text()
    [payload] = re.findall(r"<script type='application/json' id='cf-data'>(.*?)</script>", text)
    assert not set(payload) & {"<", ">", "&", "\u2028", "\u2029"}
    one_line = " ".join(HOSTILE.split())  # as errors are kept
    assert one_line in json.dumps(json.loads(payload), ensure_ascii=False)


@pytest.mark.hosts
def test_a_report_whose_error_text_holds_html_still_draws_every_canvas(hostile_run, browser):
    browser.open(hostile_run.as_uri())
    assert browser.console_errors() == []
    [grid] = browser.evaluate(SAMPLE_GRID)
    assert grid["counts"] == {COLORS["F"]: 1, COLORS["+"]: 2}
    assert browser.evaluate("document.querySelectorAll('canvas.timeline').length") == 1


def _centre(browser, row, col):
    box = browser.evaluate(
        "(() => { const c = document.querySelector('canvas.grid'); const r = "
        "c.getBoundingClientRect(); return {x: r.left, y: r.top, ...c.dataset}; })()"
    )
    x = box["x"] + float(box["x0"]) + (col + 0.5) * float(box["cw"])
    y = box["y"] + float(box["y0"]) + (row + 0.5) * float(box["ch"])
    return {"x": x, "y": y}


def test_report_and_provenance_name_the_run_id_and_the_command_lines(finished_run, tmp_path):
    run_dir = finished_run / "clusterfarm-run"
    provenance = json.loads((run_dir / "provenance.json").read_text())
    (run_id,) = (
        sqlite3.connect(run_dir / "state.sqlite")
        .execute("SELECT value FROM meta WHERE key='run_id'")
        .fetchone()
    )
    assert provenance["run_id"] == run_id
    [invocation] = provenance["invocations"]
    assert invocation["argv"][1:4] == ["run", "--local", "2"]
    assert invocation["state"] == "finished" and invocation["exit_code"] == 1
    assert provenance["tasks"]["fail_member"]["version"] == "1"
    assert len(provenance["tasks"]["fail_member"]["params_hash"]) == 16
    assert provenance["settings"]["run"]["retries"] == 1
    [host] = provenance["hosts"].values()
    assert len(host["workers"]) == 2 and host["versions"]["Pyro5"]
    assert host["versions"]["python"] == provenance["manager"]["versions"]["python"]
    out = tmp_path / "r.html"
    run_cli("report", "--run-dir", str(run_dir), "--out", str(out), cwd=tmp_path)
    assert run_id in out.read_text()
