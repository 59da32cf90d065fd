"""The storm-tracking science behind the ``vort_track`` task, usable on its own.

Vorticity on the sphere (:mod:`.vorticity`), local maxima (:mod:`.extrema`), linking them into
tracks (:mod:`.tracking`), the pipeline of the three (:mod:`.cyclones`), reading 20CR-like
winds (:mod:`.winds`), CF trajectory files (:mod:`.trajectories`), synthetic data with known
tracks (:mod:`.sample`), scoring against them (:mod:`.score`), a year's ensemble statistics
(:mod:`.summary`) and maps (:mod:`.plot`). This is one of the two places in clusterfarm that
import numpy and netCDF4; matplotlib is imported only when a plot is drawn.
"""

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
from clusterfarm.analysis.summary import YearSummary, read_density, summarise_year, write_summary
from clusterfarm.analysis.tracking import Track, link_tracks
from clusterfarm.analysis.trajectories import (
    TrackFile,
    find_results,
    read_tracks,
    result_path,
    write_tracks,
)
from clusterfarm.analysis.vorticity import cyclonic_vorticity, relative_vorticity
from clusterfarm.analysis.winds import WindReader, Winds, WindSource, read_winds

__all__ = [
    "Detection",
    "GLOBAL_BOX",
    "Linking",
    "Maxima",
    "Track",
    "TrackFile",
    "WindReader",
    "WindSource",
    "YearSummary",
    "Winds",
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
