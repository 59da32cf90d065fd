"""Score found tracks against the truth tracks of sample data.

A truth track and a found track match when more than half of the truth track's points lie
within ``match_km`` of the found track's point at the same time. Matching is one-to-one,
best pairs first (most close points, then smallest mean distance), so a truth track split in
two counts once and the other half lowers the precision. Recall is the share of truth tracks
matched, precision the share of found tracks matched, and the position errors are the
distances of the close points of matched pairs. The intensity errors are the differences of
|vorticity| at those points (found − true, s-1): their mean absolute value, their mean (a
bias) and the mean absolute error relative to the true value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cftime
import numpy as np

from clusterfarm.analysis.geo import great_circle_km
from clusterfarm.analysis.sample import truth_path
from clusterfarm.analysis.tracking import Track
from clusterfarm.analysis.trajectories import TrackFile, find_results, read_tracks
from clusterfarm.errors import InputError

MATCH_KM = 300.0
# time values are hours or days; this is far below any time step and above rounding
_TIME_DECIMALS = 6


@dataclass
class Tally:
    """Counts and matched-point errors, pooled over any number of member-years."""

    truth_tracks: int = 0
    found_tracks: int = 0
    matched: int = 0
    errors_km: list[float] = field(default_factory=list)
    intensity_errors: list[float] = field(default_factory=list)
    true_intensities: list[float] = field(default_factory=list)

    def add(self, found: Sequence[Track], truth: Sequence[Track], match_km: float) -> None:
        """Match one member-year's tracks and add the outcome."""
        pairs = match_tracks(found, truth, match_km)
        self.truth_tracks += len(truth)
        self.found_tracks += len(found)
        self.matched += len(pairs)
        for (ti, fi), errors in pairs.items():
            self.errors_km.extend(errors.tolist())
            true, track = truth[ti], found[fi]
            ia, ib, distance = _same_time(true, track)
            close = distance <= match_km
            true_value = np.abs(true.vorticity[ia][close])
            self.intensity_errors.extend((np.abs(track.vorticity[ib][close]) - true_value).tolist())
            self.true_intensities.extend(true_value.tolist())

    def summary(self) -> dict[str, Any]:
        """The scores as a JSON-friendly dict (what ``score --json`` prints)."""
        # with nothing to find (or nothing found) no track was missed (or wrong)
        recall = self.matched / self.truth_tracks if self.truth_tracks else 1.0
        precision = self.matched / self.found_tracks if self.found_tracks else 1.0
        f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
        errors = np.asarray(self.errors_km)
        stats: dict[str, float | None] = {"mean": None, "median": None, "p95": None}
        if errors.size:
            stats = {
                "mean": float(errors.mean()),
                "median": float(np.median(errors)),
                "p95": float(np.percentile(errors, 95)),
            }
        return {
            "recall": recall,
            "precision": precision,
            "f1": f1,
            "truth_tracks": self.truth_tracks,
            "found_tracks": self.found_tracks,
            "error_km": stats,
            "intensity_error": self._intensity_stats(),
        }

    def _intensity_stats(self) -> dict[str, float | None]:
        """Mean absolute error, bias (s-1) and relative mean absolute error of |vorticity|."""
        diff = np.asarray(self.intensity_errors)
        if not diff.size:
            return {"mean_abs": None, "bias": None, "relative": None}
        true = np.abs(np.asarray(self.true_intensities))
        return {
            "mean_abs": float(np.abs(diff).mean()),
            "bias": float(diff.mean()),
            "relative": float((np.abs(diff) / np.maximum(true, 1e-30)).mean()),
        }


def score_tracks(
    found_tracks: Sequence[Track], truth_tracks: Sequence[Track], match_km: float = MATCH_KM
) -> dict[str, Any]:
    """Return recall, precision, f1, track counts and position errors of one set of tracks."""
    tally = Tally()
    tally.add(found_tracks, truth_tracks, match_km)
    return tally.summary()


def match_tracks(
    found: Sequence[Track], truth: Sequence[Track], match_km: float = MATCH_KM
) -> dict[tuple[int, int], np.ndarray]:
    """Pair truth and found tracks one-to-one; map (truth index, found index) to errors (km)."""
    candidates = []
    # only tracks that overlap in time can match: skip the others without a look
    starts = np.array([t.time.min() if len(t) else np.inf for t in found])
    ends = np.array([t.time.max() if len(t) else -np.inf for t in found])
    for ti, true in enumerate(truth):
        if not len(true):
            continue
        overlapping = np.flatnonzero((starts <= true.time.max()) & (ends >= true.time.min()))
        for fi in overlapping.tolist():
            track = found[fi]
            distance = _same_time_distances(true, track)
            close = distance[distance <= match_km]
            if close.size > 0.5 * len(true):
                candidates.append((-close.size, float(close.mean()), ti, fi, close))
    candidates.sort(key=lambda c: c[:4])
    pairs: dict[tuple[int, int], np.ndarray] = {}
    used_truth: set[int] = set()
    used_found: set[int] = set()
    for _, _, ti, fi, close in candidates:
        if ti not in used_truth and fi not in used_found:
            pairs[(ti, fi)] = close
            used_truth.add(ti)
            used_found.add(fi)
    return pairs


def score_results(
    results_dir: str | Path, truth_dir: str | Path, match_km: float = MATCH_KM
) -> dict[str, Any]:
    """Score every vort_track result file under ``results_dir`` against its truth file.

    ``truth_dir`` is the ``truth`` folder of sample data or the sample data folder itself.
    """
    truth_root = Path(truth_dir)
    if (truth_root / "truth").is_dir():
        truth_root = truth_root / "truth"
    results = find_results(results_dir)
    if not results:
        raise InputError(f"{results_dir}: no vort_track results found; run vort_track first")
    tally = Tally()
    for (year, member), path in sorted(results.items()):
        truth_file = truth_path(truth_root, year, member)
        if not truth_file.is_file():
            raise InputError(
                f"{truth_file}: no truth for year {year} member {member}; "
                "score only runs over sample data (clusterfarm sample-data)"
            )
        truth = read_tracks(truth_file)
        tally.add(_in_units_of(read_tracks(path), truth), truth.tracks, match_km)
    return tally.summary()


def _same_time_distances(a: Track, b: Track) -> np.ndarray:
    """Distances (km) between the points of two tracks that share a time."""
    return _same_time(a, b)[2]


def _same_time(a: Track, b: Track) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices into ``a`` and ``b`` of the points that share a time, and their distances."""
    _, ia, ib = np.intersect1d(
        np.round(a.time, _TIME_DECIMALS), np.round(b.time, _TIME_DECIMALS), return_indices=True
    )
    return ia, ib, great_circle_km(a.lat[ia], a.lon[ia], b.lat[ib], b.lon[ib])


def _in_units_of(found: TrackFile, truth: TrackFile) -> list[Track]:
    """Found tracks with times converted to the truth's units, if they differ."""
    if (found.time_units, found.calendar) == (truth.time_units, truth.calendar):
        return found.tracks
    converted = []
    for track in found.tracks:
        dates = cftime.num2date(track.time, found.time_units, found.calendar)
        time = np.asarray(cftime.date2num(dates, truth.time_units, truth.calendar), dtype=float)
        converted.append(Track(time, track.lat, track.lon, track.vorticity, track.name))
    return converted
