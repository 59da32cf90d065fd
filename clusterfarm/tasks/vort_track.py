"""The ``vort_track`` task: track the 850 hPa cyclones of one year and ensemble member.

Reads the member's u and v from ``ctx.data_dir`` (:mod:`clusterfarm.analysis.winds`), finds
maxima of sign(lat)·ζ, links them into tracks and writes a CF trajectory file to
``ctx.output_path`` (:mod:`clusterfarm.analysis.trajectories`).
Workers import this module at start, so numpy and netCDF4 (through
:mod:`clusterfarm.analysis`) are imported only when the task runs.
"""

from __future__ import annotations

import math
import string
from pathlib import Path, PurePosixPath
from typing import Any

from clusterfarm.analysis.wind_files import WindSource, wind_paths
from clusterfarm.errors import SettingsError
from clusterfarm.tasks.registry import TaskContext, task

NAME = "vort_track"
VERSION = "2"
SMOOTH_KM = 0.0

# (default, meaning) of each parameter; `clusterfarm tasks` prints them
PARAMETERS: dict[str, tuple[Any, str]] = {
    "threshold": (1e-5, "s-1: a cyclone's |relative vorticity| must exceed this"),
    "box": (
        [-80.0, 80.0, 0.0, 360.0],
        "[lat_min, lat_max, lon_min, lon_max] searched, degrees; lon_min > lon_max crosses 0°",
    ),
    "smooth_km": (
        SMOOTH_KM,
        "km: Gaussian radius by which vorticity is smoothed before maxima are found "
        "(takes off grid-scale noise; intensities come from the unsmoothed field); 0: none",
    ),
    "suppress_km": (
        1100.0,
        "km: of two maxima closer than this, the weaker is dropped unless the field dips "
        "between them (min_dip)",
    ),
    "min_dip": (
        0.2,
        "share by which vorticity must fall between two close maxima for both to be kept "
        "as separate cyclones; 1: always drop the weaker",
    ),
    "link_km": (750.0, "km per 6 h: farthest a centre moves in one step (750 km is 35 m/s)"),
    "predict_km": (
        250.0,
        "km per 6 h: farthest a centre lies from where its track's motion predicts it",
    ),
    "max_gap": (1, "time steps a track may miss (a storm fading for a step) and go on"),
    "intensity_weight": (
        1.0,
        "weight of the relative change of vorticity against distance in a link's cost",
    ),
    "min_steps": (6, "points a track needs to be kept"),
    "max_missing": (0.05, "share of missing wind values above which a cell fails (input)"),
    "chunk_mb": (
        400.0,
        "MB of working arrays: the year is read and searched in time chunks of this size",
    ),
    "u_path": ("{year}/u850_{year}.nc", "u file under data_dir; may use {year} and {member}"),
    "v_path": ("{year}/v850_{year}.nc", "v file under data_dir; may use {year} and {member}"),
    "u_var": ("u850", "name of the eastward wind variable"),
    "v_var": ("v850", "name of the northward wind variable"),
    "time_dim": ("time", "name of the time dimension (and its coordinate)"),
    "member_dim": (
        "member",
        "name of the member dimension; a file without it holds a deterministic run (member 0)",
    ),
    "lat_dim": ("lat", "name of the latitude dimension (and coordinate)"),
    "lon_dim": ("lon", "name of the longitude dimension (and coordinate)"),
    "level_dim": ("level", "name of the level dimension that `level` picks from"),
    "level": (
        0.0,
        "level to read (its coordinate value, e.g. 850); 0: the file's only level, or none",
    ),
}

DEFAULTS: dict[str, Any] = {key: default for key, (default, _) in PARAMETERS.items()}
PARAM_HELP: dict[str, str] = {key: meaning for key, (_, meaning) in PARAMETERS.items()}

_SOURCE_KEYS = (
    "u_path",
    "v_path",
    "u_var",
    "v_var",
    "time_dim",
    "member_dim",
    "lat_dim",
    "lon_dim",
    "level_dim",
)
# estimated float32 fields of one time step held at once while a chunk is processed, the
# next chunk's u and v (read ahead) included
_ARRAYS_PER_STEP = 16


def check_params(params: dict[str, Any]) -> None:
    """Raise :class:`SettingsError` naming the first parameter with an impossible value."""
    numbers = ("threshold", "suppress_km", "smooth_km", "min_dip", "intensity_weight", "level")
    positive = ("link_km", "predict_km", "chunk_mb")
    for key in (*numbers, *positive, "max_missing"):
        if not _is_number(params[key]):
            raise _invalid(params, key, "must be a finite number")
        if key in positive and params[key] <= 0:
            raise _invalid(params, key, "must be positive")
        if params[key] < 0:
            raise _invalid(params, key, "must not be negative")
    for key in ("min_dip", "max_missing"):
        if params[key] > 1:
            raise _invalid(params, key, "is a share: between 0 and 1")
    for key, least in (("min_steps", 1), ("max_gap", 0)):
        value = params[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise _invalid(params, key, f"must be a whole number of at least {least}")
    box = params["box"]
    if not isinstance(box, list | tuple) or len(box) != 4 or not all(map(_is_number, box)):
        raise _invalid(params, "box", "must be four numbers [lat_min, lat_max, lon_min, lon_max]")
    if not -90 <= box[0] <= box[1] <= 90:
        raise _invalid(
            params, "box", "needs -90 <= lat_min <= lat_max <= 90 (lon_min > lon_max crosses 0°)"
        )
    for key in _SOURCE_KEYS:
        if not isinstance(params[key], str) or not (params[key].strip() or key == "member_dim"):
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


def _wind_source(params: dict[str, Any]) -> WindSource:
    return WindSource(
        **{key: params[key] for key in _SOURCE_KEYS},
        level=params["level"] or None,
    )


def input_files(year: int, member: int, params: dict[str, Any], data_dir: Path) -> list[Path]:
    """The u and v files a cell reads (the results ledger watches them for changes)."""
    return list(wind_paths(data_dir, year, member, _wind_source({**DEFAULTS, **params})))


@task(NAME, version=VERSION, params=DEFAULTS, check=check_params, inputs=input_files)
def vort_track(year: int, member: int, ctx: TaskContext) -> dict[str, Any]:
    """Track the cyclones of ``year``/``member`` and write them to ``ctx.output_path``."""
    params = {**DEFAULTS, **ctx.params}
    from clusterfarm import analysis

    with analysis.WindReader(
        ctx.data_dir, year, member, _wind_source(params), params["max_missing"]
    ) as reader:
        per_step = reader.step_hours / 6.0
        tracks = analysis.track_chunks(
            reader.chunks(reader.chunk_steps(params["chunk_mb"], _ARRAYS_PER_STEP)),
            reader.lats,
            reader.lons,
            reader.times,
            analysis.Detection(
                threshold=params["threshold"],
                box=params["box"],
                suppress_km=params["suppress_km"],
                min_dip=params["min_dip"],
                smooth_km=params["smooth_km"],
            ),
            analysis.Linking(
                link_km=params["link_km"] * per_step,
                predict_km=params["predict_km"] * per_step,
                max_gap=params["max_gap"],
                intensity_weight=params["intensity_weight"],
                min_steps=params["min_steps"],
            ),
        )
        reader.check_missing()
        time_units, calendar = reader.time_units, reader.calendar
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
        analysis.write_tracks(tmp, tracks, time_units=time_units, calendar=calendar, attrs=attrs)
    n_points = sum(len(track) for track in tracks)
    ctx.log.info("vort_track %s m%03d: %d tracks, %d points", year, member, len(tracks), n_points)
    return {"n_tracks": len(tracks), "n_points": n_points}


def clusterfarm_version() -> str:
    """The running clusterfarm's version (the package's own: no metadata scan at run time)."""
    from clusterfarm import __version__

    return __version__


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _invalid(params: dict[str, Any], key: str, why: str) -> SettingsError:
    return SettingsError(f"[tasks.{NAME}] {key} = {params[key]!r}: {why}")
