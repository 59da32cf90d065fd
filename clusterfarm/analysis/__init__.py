"""The storm-tracking science behind the ``vort_track`` task, usable on its own.

Vorticity on the sphere (:mod:`.vorticity`), smoothing (:mod:`.smooth`), local maxima
(:mod:`.extrema`), linking them into tracks (:mod:`.tracking`), the pipeline of these
(:mod:`.cyclones`), reading reanalysis-like winds (:mod:`.winds`, :mod:`.packing`; where
they are, :mod:`.wind_files`, needs only the standard library), CF
trajectory files (:mod:`.trajectories`), exchange formats (:mod:`.export`), synthetic data
with known tracks (:mod:`.sample`, :mod:`.storms`), scoring against them (:mod:`.score`), a
year's ensemble statistics (:mod:`.summary`) and maps with coastlines (:mod:`.plot`,
:mod:`.coastlines`). This is one of the two places in clusterfarm that import numpy and
netCDF4. Names are imported from their modules on first use, so a worker running the task
loads only the modules it needs (and matplotlib only when a plot is drawn). Runs in the task
process and in the CLI's science commands; uses only :mod:`clusterfarm.errors` of clusterfarm.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_WHERE = {
    "Detection": "cyclones",
    "Linking": "cyclones",
    "find_cyclones": "cyclones",
    "track_chunks": "cyclones",
    "track_cyclones": "cyclones",
    "Maxima": "extrema",
    "find_maxima": "extrema",
    "GLOBAL_BOX": "geo",
    "great_circle_km": "geo",
    "plot_density": "plot",
    "plot_tracks": "plot",
    "truth_path": "sample",
    "write_sample_data": "sample",
    "score_results": "score",
    "score_tracks": "score",
    "YearSummary": "summary",
    "read_density": "summary",
    "summarise_year": "summary",
    "write_summary": "summary",
    "Track": "tracking",
    "link_tracks": "tracking",
    "TrackFile": "trajectories",
    "find_results": "trajectories",
    "read_tracks": "trajectories",
    "result_path": "trajectories",
    "write_tracks": "trajectories",
    "cyclonic_vorticity": "vorticity",
    "relative_vorticity": "vorticity",
    "WindReader": "winds",
    "WindSource": "wind_files",
    "Winds": "winds",
    "read_winds": "winds",
}

# the same names as _WHERE, spelled out for linters and readers
__all__ = [
    "Detection",
    "GLOBAL_BOX",
    "Linking",
    "Maxima",
    "Track",
    "TrackFile",
    "WindReader",
    "WindSource",
    "Winds",
    "YearSummary",
    "cyclonic_vorticity",
    "find_cyclones",
    "find_maxima",
    "find_results",
    "great_circle_km",
    "link_tracks",
    "plot_density",
    "plot_tracks",
    "read_density",
    "read_tracks",
    "read_winds",
    "relative_vorticity",
    "result_path",
    "score_results",
    "score_tracks",
    "summarise_year",
    "track_chunks",
    "track_cyclones",
    "truth_path",
    "write_sample_data",
    "write_summary",
    "write_tracks",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value  # the next look-up does not come here
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from clusterfarm.analysis.cyclones import (
        Detection,
        Linking,
        find_cyclones,
        track_chunks,
        track_cyclones,
    )
    from clusterfarm.analysis.extrema import Maxima, find_maxima
    from clusterfarm.analysis.geo import GLOBAL_BOX, great_circle_km
    from clusterfarm.analysis.plot import plot_density, plot_tracks
    from clusterfarm.analysis.sample import truth_path, write_sample_data
    from clusterfarm.analysis.score import score_results, score_tracks
    from clusterfarm.analysis.summary import (
        YearSummary,
        read_density,
        summarise_year,
        write_summary,
    )
    from clusterfarm.analysis.tracking import Track, link_tracks
    from clusterfarm.analysis.trajectories import (
        TrackFile,
        find_results,
        read_tracks,
        result_path,
        write_tracks,
    )
    from clusterfarm.analysis.vorticity import cyclonic_vorticity, relative_vorticity
    from clusterfarm.analysis.wind_files import WindSource
    from clusterfarm.analysis.winds import WindReader, Winds, read_winds
