"""The ``vort_track`` task: track the 850 hPa cyclones of one year and ensemble member.

Reads the member's u and v from ``ctx.data_dir`` (SPEC §9), finds maxima of sign(lat)·ζ,
links them into tracks and writes a CF trajectory file to ``ctx.output_path`` (SPEC §10).
Workers import this module at start, so numpy and netCDF4 (through
:mod:`clusterfarm.analysis`) are imported only when the task runs.
"""

from __future__ import annotations

import importlib.metadata
import math
import string
from pathlib import Path, PurePosixPath
from typing import Any

from clusterfarm.errors import SettingsError
from clusterfarm.tasks.registry import TaskContext, task

NAME = "vort_track"
VERSION = "1"

DEFAULTS: dict[str, Any] = {
    "threshold": 1e-5,
    "box": [-80.0, 80.0, 0.0, 360.0],
    "suppress_km": 1100.0,
    "link_km": 1800.0,
    "min_steps": 6,
    "u_path": "{year}/u850_{year}.nc",
    "v_path": "{year}/v850_{year}.nc",
    "u_var": "u850",
    "v_var": "v850",
    "time_dim": "time",
    "member_dim": "member",
    "lat_dim": "lat",
    "lon_dim": "lon",
}

_SOURCE_KEYS = (
    "u_path",
    "v_path",
    "u_var",
    "v_var",
    "time_dim",
    "member_dim",
    "lat_dim",
    "lon_dim",
)


def check_params(params: dict[str, Any]) -> None:
    """Raise :class:`SettingsError` naming the first parameter with an impossible value."""
    for key in ("threshold", "suppress_km", "link_km"):
        if not _is_number(params[key]):
            raise _invalid(params, key, "must be a finite number")
    if params["threshold"] < 0 or params["suppress_km"] < 0:
        key = "threshold" if params["threshold"] < 0 else "suppress_km"
        raise _invalid(params, key, "must not be negative")
    if params["link_km"] <= 0:
        raise _invalid(params, "link_km", "must be positive")
    min_steps = params["min_steps"]
    if not isinstance(min_steps, int) or isinstance(min_steps, bool) or min_steps < 1:
        raise _invalid(params, "min_steps", "must be a whole number of at least 1")
    box = params["box"]
    if not isinstance(box, list | tuple) or len(box) != 4 or not all(map(_is_number, box)):
        raise _invalid(params, "box", "must be four numbers [lat_min, lat_max, lon_min, lon_max]")
    if not -90 <= box[0] <= box[1] <= 90:
        raise _invalid(
            params, "box", "needs -90 <= lat_min <= lat_max <= 90 (lon_min > lon_max crosses 0°)"
        )
    for key in _SOURCE_KEYS:
        if not isinstance(params[key], str) or not params[key].strip():
            raise _invalid(params, key, "must be a non-empty string")
    for key in ("u_path", "v_path"):
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(params[key]) if f is not None}
        except ValueError:
            fields = {"malformed"}
        if not fields <= {"year", "member"}:
            raise _invalid(params, key, "is a path template that may use only {year} and {member}")
        template = PurePosixPath(params[key])
        if template.is_absolute() or ".." in template.parts:
            # workers read what the manager's settings say: never outside data_dir
            raise _invalid(params, key, "must be a path inside data_dir (relative, no '..')")


def _wind_source(params: dict[str, Any]) -> Any:
    from clusterfarm.analysis import WindSource

    return WindSource(**{key: params[key] for key in _SOURCE_KEYS})


def input_files(year: int, member: int, params: dict[str, Any], data_dir: Path) -> list[Path]:
    """The u and v files a cell reads (the results ledger watches them for changes)."""
    from clusterfarm.analysis.winds import wind_paths

    return list(wind_paths(data_dir, year, member, _wind_source({**DEFAULTS, **params})))


@task(NAME, version=VERSION, params=DEFAULTS, check=check_params, inputs=input_files)
def vort_track(year: int, member: int, ctx: TaskContext) -> dict[str, Any]:
    """Track the cyclones of ``year``/``member`` and write them to ``ctx.output_path``."""
    params = {**DEFAULTS, **ctx.params}
    from clusterfarm import analysis

    source = _wind_source(params)
    winds = analysis.read_winds(ctx.data_dir, year, member, source)
    tracks = analysis.track_cyclones(
        winds.u,
        winds.v,
        winds.lats,
        winds.lons,
        winds.times,
        threshold=params["threshold"],
        box=params["box"],
        suppress_km=params["suppress_km"],
        link_km=params["link_km"],
        min_steps=params["min_steps"],
    )
    attrs = {
        "year": year,
        "member": member,
        "task": NAME,
        "task_version": VERSION,
        "clusterfarm_version": clusterfarm_version(),
        **{f"param_{key}": value for key, value in sorted(params.items())},
        **({"run_id": ctx.run_id} if ctx.run_id else {}),
    }
    with ctx.atomic_output() as tmp:
        analysis.write_tracks(
            tmp, tracks, time_units=winds.time_units, calendar=winds.calendar, attrs=attrs
        )
    n_points = sum(len(track) for track in tracks)
    ctx.log.info("vort_track %s m%03d: %d tracks, %d points", year, member, len(tracks), n_points)
    return {"n_tracks": len(tracks), "n_points": n_points}


def clusterfarm_version() -> str:
    """The installed clusterfarm version, or ``0+unknown`` when running from a source tree."""
    try:
        return importlib.metadata.version("clusterfarm")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _invalid(params: dict[str, Any], key: str, why: str) -> SettingsError:
    return SettingsError(f"[tasks.{NAME}] {key} = {params[key]!r}: {why}")
