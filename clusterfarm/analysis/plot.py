"""Draw tracks on a latitude/longitude map as a PNG.

Each track is a line coloured by the strength of its vorticity (|ζ|, so southern cyclones
colour like northern ones), with a dot at its start and a colour bar, over the coastlines
(:mod:`.coastlines`, shipped with the package). Matplotlib is imported
only when a plot is drawn, and through its Agg canvas, so workers and headless machines never
need a display or pay for the import.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from clusterfarm.analysis.coastlines import coastline_segments
from clusterfarm.analysis.tracking import Track
from clusterfarm.analysis.trajectories import read_tracks

# colours are in units of 1e-5 s-1, the usual scale for 850 hPa cyclones
_UNIT = 1e-5


def plot_tracks(
    tracks_or_files: Iterable[Track | str | Path], out_png: str | Path, title: str = ""
) -> Path:
    """Draw the tracks (or the tracks in the given files) to ``out_png``; return its path."""
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    tracks = _load(tracks_or_files)
    segments: list[np.ndarray] = []
    strength: list[float] = []
    for track in tracks:
        if len(track) < 2:
            continue
        pair_mean = 0.5 * (np.abs(track.vorticity[:-1]) + np.abs(track.vorticity[1:]))
        for lon in _copies_in_view(track.lon):
            points = np.column_stack([lon, track.lat])
            segments.extend(np.stack([points[:-1], points[1:]], axis=1))
            strength.extend(pair_mean / _UNIT)

    figure, ax = _world_map(title or f"{len(tracks)} tracks")
    values = np.asarray(strength)
    norm = Normalize(*(np.percentile(values, [2, 98]) if values.size else (0.0, 1.0)))
    lines = LineCollection(segments, cmap="plasma", norm=norm, linewidths=1.8)
    lines.set_array(values)
    ax.add_collection(lines)
    if tracks:
        starts = np.array([[t.lon[0] % 360.0, t.lat[0]] for t in tracks if len(t)])
        ax.scatter(starts[:, 0], starts[:, 1], s=10, c="black", zorder=3, label="track start")
        ax.legend(loc="lower left", fontsize="small")
    figure.colorbar(lines, ax=ax, shrink=0.8, label="|relative vorticity| (1e-5 s-1)")
    return _save(figure, out_png)


def plot_density(summary_file: str | Path, out_png: str | Path, title: str = "") -> Path:
    """Draw the ensemble-mean track density of a year_summary file; return the PNG's path."""
    from clusterfarm.analysis.summary import read_density

    lat_edges, lon_edges, density, members = read_density(summary_file)
    figure, ax = _world_map(title or f"track density, mean of {members} members")
    mesh = ax.pcolormesh(lon_edges, lat_edges, density, cmap="viridis", shading="flat")
    step = lat_edges[1] - lat_edges[0]
    figure.colorbar(mesh, ax=ax, shrink=0.8, label=f"tracks per {step:g}° box")
    return _save(figure, out_png)


def _world_map(title: str) -> tuple[Any, Any]:
    """A figure with one lat/lon axes over the globe, 0-360° E, with a grid."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 5.5), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.set_xlim(0, 360)
    ax.set_ylim(-90, 90)
    ax.set_xticks(np.arange(0, 361, 30))
    ax.set_yticks(np.arange(-90, 91, 30))
    ax.set_xlabel("longitude (°E)")
    ax.set_ylabel("latitude (°N)")
    ax.set_aspect("equal")
    ax.grid(True, linestyle=":", linewidth=0.6, color="grey")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.add_collection(
        LineCollection(coastline_segments(), colors="dimgrey", linewidths=0.6, zorder=1)
    )
    ax.set_title(title)
    return figure, ax


def _save(figure: Any, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, bbox_inches="tight")
    return out


def _load(tracks_or_files: Iterable[Track | str | Path]) -> list[Track]:
    tracks: list[Track] = []
    for item in tracks_or_files:
        if isinstance(item, Track):
            tracks.append(item)
        else:
            tracks.extend(read_tracks(item).tracks)
    return tracks


def _copies_in_view(lons: np.ndarray) -> list[np.ndarray]:
    """A track's longitudes made continuous, plus copies shifted by 360° where it leaves 0..360.

    A track crossing 0° is then drawn as two pieces that meet the map's edges, instead of a
    line across the whole map; the axes clip what lies outside.
    """
    lon = np.degrees(np.unwrap(np.radians(np.mod(lons, 360.0))))
    return [
        lon + shift
        for shift in (-360.0, 0.0, 360.0)
        if (lon + shift).max() > 0.0 and (lon + shift).min() < 360.0
    ]
