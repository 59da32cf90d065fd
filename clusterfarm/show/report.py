"""``clusterfarm report``: one self-contained HTML file that shows what a run did.

Everything is read from the state database (cells, attempts, invocations, provenance) and put
into one file with its CSS, JavaScript and SVG inline and a Content-Security-Policy that
forbids any network access, so it opens from ``file://`` after an ``scp``. The year × member
grid and the per-worker timeline are drawn on canvases by ``report_assets/report.js`` from
compact per-cell arrays (a 100,000-cell run stays a few MB); the timeline turns into a
busy-fraction strip per worker when a run has more than :data:`TIMELINE_BARS` attempts. The
distributions are SVG histograms made here; tables are capped, with a count of what is left out.
"""

from __future__ import annotations

import html
import json
import sqlite3
import time
from collections import Counter, defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

from clusterfarm.manager import provenance
from clusterfarm.record import trace
from clusterfarm.record.status import RunStatus, read_status
from clusterfarm.wire.protocol import YEAR

COLORS = {
    "-": "#c9ccd1",
    "W": "#f2c12e",
    "+": "#2e9e48",
    "F": "#d62728",
    "T": "#9b30d0",
}
STATUS_NAMES = {"-": "outstanding", "W": "working", "+": "complete", "F": "failure", "T": "timeout"}
ATTEMPT_COLORS = {
    "complete": "#2e9e48",
    "failure": "#d62728",
    "timeout": "#9b30d0",
    "requeued": "#f09a3e",
}
TIMELINE_BARS = 20_000  # more attempts than this: a busy-fraction strip per worker instead
TIMELINE_BINS = 400
MAX_DETAILED_CELLS = 5_000  # cells whose attempts are listed one by one (retried or failed)
MAX_FAILURES = 500
SLOWEST = 20
HISTOGRAM_BINS = 30


def write_report(db: sqlite3.Connection, run_dir: Path, out: Path) -> int:
    """Write the report of the run in ``db`` to ``out``; return its size in bytes."""
    data = build(db, run_dir).encode()
    out.write_bytes(data)
    return len(data)


def build(db: sqlite3.Connection, run_dir: Path) -> str:
    """The report's HTML."""
    report = read_status(db)
    attempts = trace.read_attempts(db)
    prov = provenance.read(db, run_dir)
    cells = _cells(db, report)
    (year_tasks,) = db.execute("SELECT year_tasks FROM invocations ORDER BY id DESC").fetchone()
    per_year = set(year_tasks.split(","))
    workers = sorted({a["worker"] for a in attempts if a["worker"]} | cells.workers)
    data = {
        "colors": COLORS,
        "names": STATUS_NAMES,
        "attemptColors": ATTEMPT_COLORS,
        "grids": cells.grids(report, {w: i for i, w in enumerate(workers)}, attempts, per_year),
        "workers": workers,
        "timeline": _timeline(attempts, workers),
        "details": _details(attempts, report),
    }
    counts = Counter("".join(report.progress.values()))
    title = f"clusterfarm run {prov.get('run_id') or ''}".strip()
    body = "\n".join(
        [
            f"<h1>{_e(title)}</h1>",
            _summary(report, counts, prov, run_dir),
            _section("Cells", _legend() + '<div id="grids"></div>', "grid"),
            _section("Timeline per worker", '<div id="timeline"></div>', "timeline"),
            _section("Durations and peak memory", _distributions(attempts), "distributions"),
            _section("Slowest cells", _slowest(attempts), "slowest"),
            _section("Failures", _failures(report, attempts), "failures"),
            _section("Workers and hosts", _workers(attempts, prov), "workers"),
            _section("Provenance", _provenance(prov), "provenance"),
        ]
    )
    return _page(title, body, data)


# -- the per-cell arrays the grid is drawn from ------------------------------------------------


class _Cells:
    """The cells table of the latest invocation's tasks, by (task, year, member)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int, int], tuple[Any, ...]] = {}
        self.workers: set[str] = set()

    def grids(
        self,
        report: RunStatus,
        worker_index: dict[str, int],
        attempts: list[dict[str, Any]],
        per_year: set[str],
    ) -> list[dict[str, Any]]:
        peak: dict[tuple[str, int, int], int] = {}
        for a in attempts:  # in order: the last attempt of a cell wins
            if a["peak_rss"] is not None:
                peak[(a["task"], a["year"], a["member"])] = a["peak_rss"]
        grids = []
        for task in report.tasks:
            members = [YEAR] if task in per_year else report.members
            status, tries, elapsed, rss, worker = [], [], [], [], []
            for year in report.years:
                status.append(report.progress[(task, year)])
                for member in members:
                    key = (task, year, member)
                    row = self.rows.get(key, (0, None, None))
                    tries.append(min(row[0] or 0, 9))
                    elapsed.append(-1 if row[2] is None else round(row[2] * 10))
                    rss.append(round(peak[key] / 2**20) if key in peak else -1)
                    worker.append(worker_index.get(row[1], -1) if row[1] else -1)
            grids.append(
                {
                    "task": task,
                    "years": report.years,
                    "members": members,
                    "status": "".join(status),
                    "attempts": "".join(map(str, tries)),
                    "elapsed": elapsed,
                    "rss": rss,
                    "worker": worker,
                }
            )
        return grids


def _cells(db: sqlite3.Connection, report: RunStatus) -> _Cells:
    cells = _Cells()
    names = ",".join("?" * len(report.tasks))
    for task, year, member, tries, worker, elapsed in db.execute(
        f"SELECT task, year, member, attempts, worker, elapsed FROM cells WHERE task IN ({names})",
        report.tasks,
    ):
        cells.rows[(task, year, member)] = (tries, worker, elapsed)
        if worker:
            cells.workers.add(worker)
    return cells


def _details(attempts: list[dict[str, Any]], report: RunStatus) -> dict[str, list[list[Any]]]:
    """Every attempt of the cells that were retried or failed (what a click shows)."""
    by_cell: dict[str, list[list[Any]]] = defaultdict(list)
    for a in attempts:
        by_cell[f"{a['task']}|{a['year']}|{a['member']}"].append(
            [
                a["attempt"],
                a["status"],
                a["worker"],
                trace.iso_time(a["started"]),
                None if a["elapsed"] is None else round(a["elapsed"], 3),
                a["error"],
            ]
        )
    failed = {f"{f['task']}|{f['year']}|{f['member']}" for f in report.failures}
    keep = [key for key, rows in by_cell.items() if len(rows) > 1 or key in failed]
    return {key: by_cell[key] for key in keep[:MAX_DETAILED_CELLS]}


# -- the timeline --------------------------------------------------------------------------------


def _timeline(attempts: list[dict[str, Any]], workers: list[str]) -> dict[str, Any]:
    """The latest invocation's attempts per worker: bars, or busy fractions per time bin."""
    if not attempts:
        return {"mode": "empty"}
    latest = max(a["invocation"] or 0 for a in attempts)
    shown = [a for a in attempts if (a["invocation"] or 0) == latest and a["started"]]
    if not shown:
        return {"mode": "empty"}
    t0 = min(a["queued"] or a["started"] for a in shown)
    t1 = max(a["ended"] or a["started"] for a in shown)
    span = max(t1 - t0, 1e-3)
    index = {w: i for i, w in enumerate(workers)}
    status_codes = list(ATTEMPT_COLORS)
    if len(shown) <= TIMELINE_BARS:
        lanes: dict[int, list[list[Any]]] = defaultdict(list)
        for a in shown:
            code = status_codes.index(a["status"]) if a["status"] in status_codes else 1
            lanes[index.get(a["worker"], -1)].append(
                [round(a["started"] - t0, 3), round((a["ended"] or a["started"]) - t0, 3), code]
            )
        return {"mode": "bars", "span": span, "invocation": latest, "lanes": dict(lanes)}
    width = span / TIMELINE_BINS
    busy: dict[int, list[float]] = defaultdict(lambda: [0.0] * TIMELINE_BINS)
    for a in shown:
        lane = busy[index.get(a["worker"], -1)]
        start, end = a["started"] - t0, (a["ended"] or a["started"]) - t0
        first, last = int(start / width), min(int(end / width), TIMELINE_BINS - 1)
        for b in range(first, last + 1):
            lane[b] += max(0.0, min(end, (b + 1) * width) - max(start, b * width))
    bins = {w: [round(min(1.0, v / width), 2) for v in lane] for w, lane in busy.items()}
    return {"mode": "bins", "span": span, "invocation": latest, "bins": bins}


# -- the HTML sections ---------------------------------------------------------------------------


def _summary(report: RunStatus, counts: Counter[str], prov: dict[str, Any], run_dir: Path) -> str:
    parts = [f"<b>{report.total}</b> cells"] + [
        f'<span class="chip" style="background:{COLORS[s]}"></span>{counts[s]} {STATUS_NAMES[s]}'
        for s in COLORS
    ]
    inv = prov["invocations"][-1] if prov["invocations"] else {}
    return (
        f'<p class="summary">{" · ".join(parts)}</p>'
        f'<p class="meta">run dir <code>{_e(str(Path(run_dir).absolute()))}</code> · last run '
        f"{_e(inv.get('started'))} ({_e(inv.get('state'))}, {report.elapsed:.1f} s, ran "
        f"{report.ran}, skipped {report.skipped}) · report written "
        f"{_e(trace.iso_time(time.time()))}</p>"
    )


def _legend() -> str:
    items = "".join(
        f'<span class="chip" style="background:{c}"></span>{STATUS_NAMES[s]} ({_e(s)}) '
        for s, c in COLORS.items()
    )
    return f'<p class="legend">{items}· hover a cell for its figures, click for its attempts</p>'


def _distributions(attempts: list[dict[str, Any]]) -> str:
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in attempts:
        if a["status"] == "complete":
            by_task[a["task"]].append(a)
    if not by_task:
        return "<p>No complete attempts yet.</p>"
    rows = []
    for task, done in by_task.items():
        elapsed = [a["elapsed"] for a in done if a["elapsed"] is not None]
        rss = [a["peak_rss"] / 2**20 for a in done if a["peak_rss"] is not None]
        rows.append(
            f"<div class='dist'><h3>{_e(task)} <small>({len(done)} complete attempts)</small></h3>"
            f"{_histogram(elapsed, 's', 'duration')}{_histogram(rss, 'MiB', 'peak RSS')}</div>"
        )
    return "".join(rows)


def _histogram(values: list[float], unit: str, label: str) -> str:
    """An inline SVG histogram of ``values`` with its median and maximum."""
    if not values:
        return f"<p>{label}: not measured</p>"
    values = sorted(values)
    low, high = values[0], values[-1]
    width = (high - low) / HISTOGRAM_BINS or 1.0
    counts = [0] * HISTOGRAM_BINS
    for v in values:
        counts[min(int((v - low) / width), HISTOGRAM_BINS - 1)] += 1
    top = max(counts)
    w, h, bar = 330, 90, 330 / HISTOGRAM_BINS
    bars = "".join(
        f'<rect x="{i * bar:.1f}" y="{h - n / top * h:.1f}" width="{bar - 1:.1f}" '
        f'height="{n / top * h:.1f}"><title>{low + i * width:.3g}–{low + (i + 1) * width:.3g} '
        f"{unit}: {n}</title></rect>"
        for i, n in enumerate(counts)
        if n
    )
    median = values[len(values) // 2]
    return (
        f'<figure><svg class="hist" viewBox="0 0 {w} {h + 14}" width="{w}" height="{h + 14}">'
        f'{bars}<text x="0" y="{h + 12}">{low:.3g}</text>'
        f'<text x="{w}" y="{h + 12}" text-anchor="end">{high:.3g} {unit}</text></svg>'
        f"<figcaption>{label}: median {median:.3g} {unit}, max {high:.3g} {unit}</figcaption>"
        f"</figure>"
    )


def _slowest(attempts: list[dict[str, Any]]) -> str:
    done = [a for a in attempts if a["status"] == "complete" and a["elapsed"] is not None]
    done.sort(key=lambda a: a["elapsed"], reverse=True)
    rows = [
        [
            a["task"],
            a["year"],
            _member(a["member"]),
            a["worker"],
            a["host"],
            f"{a['elapsed']:.3g}",
            _num(a["cpu"], "{:.3g}"),
            _mib(a["peak_rss"]),
            _mib(a["rchar"]),
            _mib(a["wchar"]),
        ]
        for a in done[:SLOWEST]
    ]
    head = ["task", "year", "member", "worker", "host", "elapsed s", "cpu s", "peak RSS MiB"]
    # rchar/wchar: what the task read and wrote (read_bytes only counts what missed the cache)
    return _table(head + ["read MiB", "written MiB"], rows) if rows else "<p>None yet.</p>"


def _failures(report: RunStatus, attempts: list[dict[str, Any]]) -> str:
    kinds = Counter(a["error_kind"] or "?" for a in attempts if a["status"] != "complete")
    by_kind = ", ".join(f"{n} {_e(k)}" for k, n in kinds.most_common()) or "none"
    rows = [
        [f["task"], f["year"], _member(f["member"]), f["status"], f["attempts"], f["error_kind"]]
        + [f["error"]]
        for f in report.failures[:MAX_FAILURES]
    ]
    more = len(report.failures) - len(rows)
    table = (
        '<div class="scroll">'
        + _table(["task", "year", "member", "status", "attempts", "kind", "error"], rows)
        + "</div>"
        if rows
        else "<p>No cell ended F or T.</p>"
    )
    note = f"<p>… and {more} more (see <code>clusterfarm status</code>)</p>" if more > 0 else ""
    return f"<p>Attempts that did not complete, by kind: {by_kind}</p>{table}{note}"


def _workers(attempts: list[dict[str, Any]], prov: dict[str, Any]) -> str:
    stats: dict[str, dict[str, Any]] = {}
    for a in attempts:
        s = stats.setdefault(
            a["worker"] or "?", {"host": a["host"], "n": 0, "ok": 0, "busy": 0.0, "cpu": 0.0}
        )
        s["n"] += 1
        s["ok"] += a["status"] == "complete"
        s["busy"] += a["elapsed"] or 0.0
        s["cpu"] += a["cpu"] or 0.0
    rows = [
        [name, s["host"], s["n"], s["ok"], s["n"] - s["ok"], f"{s['busy']:.1f}", f"{s['cpu']:.1f}"]
        for name, s in sorted(stats.items())
    ]
    head = ["worker", "host", "attempts", "complete", "other", "busy s", "cpu s"]
    workers = _table(head, rows) if rows else "<p>No attempts recorded.</p>"
    hosts = [
        [host, ", ".join(entry.get("workers", [])), _versions(entry.get("versions"))]
        for host, entry in sorted(prov.get("hosts", {}).items())
    ]
    return workers + (_table(["host", "workers", "versions"], hosts) if hosts else "")


def _provenance(prov: dict[str, Any]) -> str:
    manager = prov.get("manager") or {}
    tasks = [
        [name, t.get("version"), t.get("params_hash"), json.dumps(t.get("params"), sort_keys=True)]
        for name, t in (prov.get("tasks") or {}).items()
    ]
    invocations = [
        [i["id"], i["started"], i["finished"], i["state"], i["exit_code"], i["ran"], i["skipped"]]
        + [" ".join(i["argv"] or [])]
        for i in prov["invocations"]
    ]
    inputs = prov.get("inputs") or {}
    files = [[f["path"], f["size"], f["mtime"]] for f in (inputs.get("files") or [])[:20]]
    total = inputs.get("files_total", 0)
    return (
        f"<p>run id <code>{_e(prov.get('run_id'))}</code> · manager on "
        f"{_e(manager.get('host'))}: {_e(_versions(manager.get('versions')))}</p>"
        + _table(["task", "version", "params hash", "params"], tasks)
        + _table(
            ["#", "started", "finished", "state", "exit", "ran", "skipped", "command"], invocations
        )
        + f"<p>{total} input file(s) under <code>{_e(inputs.get('data_dir'))}</code></p>"
        + (_table(["path", "bytes", "modified"], files) if files else "")
        + "<details><summary>effective settings and the whole provenance.json</summary>"
        + f"<pre>{_e(json.dumps(prov, indent=1, default=str))}</pre></details>"
    )


# -- small helpers -------------------------------------------------------------------------------


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _section(title: str, content: str, ident: str) -> str:
    return f'<section id="{ident}"><h2>{_e(title)}</h2>{content}</section>'


def _versions(versions: dict[str, Any] | None) -> str:
    if not versions:
        return "not reported"
    return ", ".join(f"{k} {v}" for k, v in versions.items() if v and k != "platform")


def _member(member: int) -> str:
    return "(year)" if member == YEAR else str(member)


def _mib(value: float | None) -> str:
    return "" if value is None else f"{value / 2**20:.1f}"


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else fmt.format(value)


def _e(value: Any) -> str:
    return "" if value is None else html.escape(str(value))


def _asset(name: str) -> str:
    return (resources.files("clusterfarm.show") / "report_assets" / name).read_text(
        encoding="utf-8"
    )


# Data inside a <script> element: "</script>" would end it early, and "<!--" followed by
# "<script" would keep it from ending at all (the HTML parser's "double escaped" state), so
# no <, > or & is left as it is; U+2028 and U+2029 end a line in older JavaScript. JSON.parse
# reads the escapes back.
_SCRIPT_SAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _page(title: str, body: str, data: dict[str, Any]) -> str:
    payload = json.dumps(data, separators=(",", ":")).translate(_SCRIPT_SAFE)
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "img-src data:; connect-src 'none'"
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{policy}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='icon' href='data:,'>"
        f"<title>{_e(title)}</title><style>{_asset('report.css')}</style></head>\n<body>\n"
        f"{body}\n<div id='tip' hidden></div><div id='panel' hidden></div>\n"
        f"<script type='application/json' id='cf-data'>{payload}</script>\n"
        f"<script>{_asset('report.js')}</script>\n</body></html>\n"
    )
