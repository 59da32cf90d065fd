"""The ``year_summary`` task: ensemble track statistics of a year, after all its members.

A per-year task: it runs once per year, as soon as every member's ``vort_track`` of that year
is complete, and writes ``{results_dir}/year_summary/{year}/year_summary_{year}.nc``.
Like vort_track, it imports numpy and netCDF4 only when it runs.
"""

from __future__ import annotations

from typing import Any

from clusterfarm import __version__
from clusterfarm.errors import SettingsError
from clusterfarm.tasks.registry import TaskContext, get_task, task

NAME = "year_summary"
VERSION = "1"


def check_params(params: dict[str, Any]) -> None:
    """``box_deg`` must divide 180 into whole boxes."""
    box = params["box_deg"]
    if not 0 < box <= 90 or abs(180 / box - round(180 / box)) > 1e-9:
        raise SettingsError(f"[tasks.{NAME}] box_deg = {box!r}: must divide 180, e.g. 2.5 or 5")


@task(
    NAME,
    version=VERSION,
    params={"box_deg": 5.0},
    per_year=True,
    after="vort_track",
    check=check_params,
)
def year_summary(year: int, member: int, ctx: TaskContext) -> dict[str, Any]:
    """Summarise the vort_track results of every member of ``year``."""
    from clusterfarm import analysis

    tracking = get_task("vort_track")
    members = ctx.members if ctx.members is not None else []
    files = {m: tracking.output_path(ctx.results_dir, year, m) for m in members}
    summary = analysis.summarise_year(year, files, ctx.params["box_deg"])
    attrs = {
        "year": year,
        "task": NAME,
        "task_version": VERSION,
        "clusterfarm_version": __version__,
        "source": "vort_track",
        "param_box_deg": ctx.params["box_deg"],
        **({"run_id": ctx.run_id} if ctx.run_id else {}),
    }
    with ctx.atomic_output() as tmp:
        analysis.write_summary(tmp, summary, attrs)
    return {
        "members": len(members),
        "mean_tracks": round(summary.mean_count, 3),
        "spread_tracks": round(summary.spread_count, 3),
    }
