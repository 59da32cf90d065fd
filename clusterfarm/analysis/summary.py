"""Ensemble statistics of one year's tracks: track counts and a track-density map.

From the vort_track files of every member of a year: the number of tracks per member, the
ensemble mean and spread (standard deviation) of that number, and how many tracks pass
through each ``box_deg`` × ``box_deg`` box, per member and as the ensemble mean. A track
counts once per box it visits, however many of its points fall in it. Written as a CF-1.8
netCDF file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import numpy.typing as npt

from clusterfarm.analysis.tracking import Track
from clusterfarm.analysis.trajectories import netcdf_attr, read_tracks
from clusterfarm.errors import InputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class YearSummary:
    """Track counts and densities of one year, per member and over the ensemble."""

    year: int
    members: IntArray
    counts: IntArray
    density: FloatArray  # (member, lat, lon): tracks through each box
    lat_edges: FloatArray
    lon_edges: FloatArray

    @property
    def mean_count(self) -> float:
        return float(self.counts.mean())

    @property
    def spread_count(self) -> float:
        return float(self.counts.std(ddof=1)) if self.counts.size > 1 else 0.0

    @property
    def density_mean(self) -> FloatArray:
        return self.density.mean(axis=0)


def summarise_year(year: int, track_files: Mapping[int, Path], box_deg: float = 5.0) -> YearSummary:
    """Summarise the tracks of ``year`` from one vort_track file per member."""
    if not track_files:
        raise InputError(f"no vort_track results for year {year} to summarise")
    lat_edges = np.arange(-90.0, 90.0 + box_deg / 2, box_deg)
    lon_edges = np.arange(0.0, 360.0 + box_deg / 2, box_deg)
    members = sorted(track_files)
    density = np.zeros((len(members), lat_edges.size - 1, lon_edges.size - 1))
    counts = np.zeros(len(members), dtype=np.int64)
    for i, member in enumerate(members):
        path = Path(track_files[member])
        if not path.is_file():
            raise InputError(f"{path}: vort_track result of year {year} member {member} missing")
        tracks = read_tracks(path).tracks
        counts[i] = len(tracks)
        for track in tracks:
            _add_visits(density[i], track, box_deg)
    return YearSummary(year, np.array(members), counts, density, lat_edges, lon_edges)


def _add_visits(grid: FloatArray, track: Track, box_deg: float) -> None:
    rows = np.clip(((track.lat + 90.0) // box_deg).astype(int), 0, grid.shape[0] - 1)
    cols = np.clip(((track.lon % 360.0) // box_deg).astype(int), 0, grid.shape[1] - 1)
    boxes = np.unique(rows * grid.shape[1] + cols)  # each box once per track
    grid.flat[boxes] += 1.0


def write_summary(path: str | Path, summary: YearSummary, attrs: Mapping[str, Any]) -> None:
    """Write ``summary`` as a CF-1.8 netCDF file."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.Conventions = "CF-1.8"
        ds.title = f"Ensemble track statistics of {summary.year}"
        for key, value in attrs.items():
            ds.setncattr(key, netcdf_attr(value))
        ds.createDimension("member", summary.members.size)
        ds.createDimension("lat", summary.lat_edges.size - 1)
        ds.createDimension("lon", summary.lon_edges.size - 1)
        ds.createDimension("nv", 2)
        member = ds.createVariable("member", "i4", ("member",))
        member.long_name = "ensemble member"
        member[:] = summary.members
        _coordinate(ds, "lat", summary.lat_edges, "latitude", "degrees_north")
        _coordinate(ds, "lon", summary.lon_edges, "longitude", "degrees_east")
        count = ds.createVariable("track_count", "i4", ("member",))
        count.long_name = "number of tracks"
        count[:] = summary.counts
        for name, value, meaning in (
            ("track_count_mean", summary.mean_count, "ensemble mean of the number of tracks"),
            (
                "track_count_spread",
                summary.spread_count,
                "ensemble standard deviation of the number of tracks",
            ),
        ):
            scalar = ds.createVariable(name, "f8", ())
            scalar.long_name = meaning
            scalar.assignValue(value)
        density = ds.createVariable("track_density", "f4", ("member", "lat", "lon"), zlib=True)
        density.long_name = "tracks passing through each box"
        density.units = "1"
        density.cell_methods = "lat: lon: sum"
        density[:] = summary.density
        mean = ds.createVariable("track_density_mean", "f4", ("lat", "lon"), zlib=True)
        mean.long_name = "ensemble mean of tracks passing through each box"
        mean.units = "1"
        mean.cell_methods = "member: mean"
        mean[:] = summary.density_mean


def _coordinate(
    ds: netCDF4.Dataset, name: str, edges: FloatArray, standard: str, units: str
) -> None:
    variable = ds.createVariable(name, "f8", (name,))
    variable.standard_name, variable.units, variable.bounds = standard, units, f"{name}_bnds"
    variable[:] = 0.5 * (edges[:-1] + edges[1:])
    bounds = ds.createVariable(f"{name}_bnds", "f8", (name, "nv"))
    bounds[:] = np.column_stack([edges[:-1], edges[1:]])


def read_density(path: str | Path) -> tuple[FloatArray, FloatArray, FloatArray, int]:
    """Read the ensemble-mean density of a summary file: lat edges, lon edges, grid, members."""
    with netCDF4.Dataset(path) as ds:
        lat_edges = np.append(ds["lat_bnds"][:, 0], ds["lat_bnds"][-1, 1])
        lon_edges = np.append(ds["lon_bnds"][:, 0], ds["lon_bnds"][-1, 1])
        return (
            np.asarray(lat_edges),
            np.asarray(lon_edges),
            np.asarray(ds["track_density_mean"][:], dtype=float),
            len(ds.dimensions["member"]),
        )
