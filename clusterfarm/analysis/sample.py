"""Synthetic 20CR-like winds with known cyclone tracks, for the demo and for scoring the tracker.

:func:`write_sample_data` writes, per year, ``{out}/{year}/u850_{year}.nc`` and
``v850_{year}.nc`` with variables ``u850``/``v850`` (m/s) shaped (time, member, lat, lon) on
the 2° grid (lat 90 → −90, lon 0 → 358), 6-hourly from 1 January, time in ``hours since
1800-01-01`` (standard calendar); ``packed=True`` stores int16 with ``scale_factor``,
``add_offset``, ``_FillValue`` and zlib as real archives do. The truth goes to
``{out}/truth/{year}/truth_{year}_m{member:03d}.nc``: a track file in the same CF trajectory
layout as the tracker's output (see :mod:`~clusterfarm.analysis.trajectories`), one track per
vortex with a ``name``, ``time`` values taken from the input's time axis (so a point's time
index is its position there), the centre's lat/lon and its peak relative vorticity (s-1,
negative in the south). The winds are a zonal background (mid-latitude jets, trade
easterlies, a weak stationary wave) plus spatially correlated noise plus moving vortices with
a shielded Gaussian profile (:mod:`.storms` says which). ``difficulty="easy"`` has 0.5 m/s of
noise on a ~600 km scale, independent from step to step; ``"hard"`` has 1.5 m/s at 45° (2.1
at the equator, shrinking as cos φ) on a ~1000 km scale, also correlated from step to step
(AR(1), 0.5), which gives many vorticity maxima above the default threshold that are no
storm; its scale was chosen so that vort_track 1 (nearest-neighbour linking) scores on it
about as the review of issue 13 found on an independent generator (recall ~0.7, precision
~0.4). The same seed gives the same files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cftime
import netCDF4
import numpy as np

from clusterfarm.analysis.geo import FloatArray, great_circle_km
from clusterfarm.analysis.storms import (
    BLOCK_STEPS,
    DIFFICULTIES,
    SPECIAL_CASES,
    Difficulty,
    Vortex,
    sample_vortices,
)
from clusterfarm.analysis.tracking import Track
from clusterfarm.analysis.trajectories import write_tracks

Size = Literal["small", "full"]

STEPS: dict[str, int] = {"small": 40, "full": 1460}
STEP_HOURS = 6.0
TIME_UNITS = "hours since 1800-01-01 00:00:00"
CALENDAR = "standard"
LATS = np.arange(90.0, -90.1, -2.0)
LONS = np.arange(0.0, 360.0, 2.0)

# packing: 0.003 m/s steps cover ±98 m/s, far beyond any 850 hPa wind
PACK_SCALE = np.float32(0.003)
PACK_FILL = np.int16(-32767)

# background amplitudes (m/s), chosen so that its vorticity stays well below the 1e-5 s-1
# default threshold: real jets do produce shear-vorticity ridges a tracker must not follow
JET_SPEED = 10.0
TRADE_SPEED = 5.0
WAVE_SPEED = 2.0


@dataclass(frozen=True)
class Noise:
    """Wind noise: spread (m/s), basis spacing and width (degrees), step-to-step correlation."""

    speed: float
    spacing: float
    width: float
    memory: float


NOISE: dict[str, Noise] = {
    "easy": Noise(speed=0.5, spacing=4.0, width=3.0, memory=0.0),
    "hard": Noise(speed=2.1, spacing=7.0, width=5.0, memory=0.5),
}

__all__ = [
    "BLOCK_STEPS",
    "DIFFICULTIES",
    "SPECIAL_CASES",
    "STEPS",
    "Vortex",
    "sample_times",
    "sample_vortices",
    "sample_winds",
    "truth_path",
    "write_sample_data",
]


def write_sample_data(
    out_dir: str | Path,
    years: int | Iterable[int],
    members: int,
    size: Size = "small",
    seed: int = 0,
    packed: bool = False,
    difficulty: Difficulty = "easy",
) -> list[Path]:
    """Write winds for ``members`` members of each year, and the truth; return the paths."""
    if size not in STEPS:
        raise ValueError(f"size must be one of {', '.join(STEPS)}, got {size!r}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")
    if members < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    out = Path(out_dir)
    written: list[Path] = []
    for year in [years] if isinstance(years, int) else list(years):
        written += _write_year(out, year, members, STEPS[size], seed, packed, difficulty)
    return written


def truth_path(truth_dir: str | Path, year: int, member: int) -> Path:
    """Return the truth file of one year and member under ``{out}/truth``."""
    return Path(truth_dir) / str(year) / f"truth_{year}_m{member:03d}.nc"


def sample_times(year: int, n_steps: int) -> FloatArray:
    """Time values (in ``TIME_UNITS``) of a year's 6-hourly steps from 1 January 00 UTC."""
    first = cftime.date2num(cftime.datetime(year, 1, 1, calendar=CALENDAR), TIME_UNITS, CALENDAR)
    return float(first) + STEP_HOURS * np.arange(n_steps, dtype=np.float64)


def sample_winds(
    year: int, member: int, n_steps: int, seed: int = 0, difficulty: Difficulty = "easy"
) -> tuple[FloatArray, FloatArray, list[Track]]:
    """Return u, v (float32, (time, lat, lon)) and the truth tracks of one member-year."""
    rng = np.random.default_rng([seed, year, member, 1])
    u_bg, v_bg = _background(LATS, LONS)
    noise = NOISE[difficulty]
    u = _smooth_noise(rng, n_steps, noise) + u_bg
    v = _smooth_noise(rng, n_steps, noise) + v_bg
    times = sample_times(year, n_steps)
    truth = []
    for vortex in sample_vortices(year, member, n_steps, seed, difficulty):
        _add_vortex(u, v, vortex)
        steps, lat, lon = vortex.path()
        truth.append(Track(times[steps], lat, lon, vortex.vorticity(), name=vortex.name))
    return u, v, truth


def _background(lats: FloatArray, lons: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Time-mean flow: westerly jets near ±45°, easterlies in the tropics, a wave-3 meander."""
    lat = lats[:, None]
    lam = np.radians(lons)[None, :]
    jets = JET_SPEED * np.exp(-(((np.abs(lat) - 45.0) / 20.0) ** 2))
    trades = -TRADE_SPEED * np.exp(-((lat / 14.0) ** 2))
    u = (jets + trades) * np.ones_like(lam)
    v = WAVE_SPEED * np.sin(3 * lam) * np.exp(-(((np.abs(lat) - 50.0) / 10.0) ** 2))
    return u.astype(np.float32), v.astype(np.float32)


def _smooth_noise(rng: np.random.Generator, n_steps: int, how: Noise) -> FloatArray:
    """Wind noise (m/s), correlated in space (and time, with memory), fading to the poles.

    White noise on a coarse grid spread by Gaussian bumps is as smooth as filtering the full
    grid but costs two small matrix products. Scaling by cos φ keeps the noise's vorticity
    roughly even, since a degree of longitude shrinks towards the poles.
    """
    lat_basis = _bumps(LATS, np.arange(90.0, -90.1, -how.spacing), width=how.width)
    lon_basis = _bumps(LONS, np.arange(0.0, 360.0, how.spacing), width=how.width, period=360.0)
    white = rng.standard_normal((n_steps, lat_basis.shape[1], lon_basis.shape[1]), np.float32)
    if how.memory:  # AR(1) in time, same spread at every step
        fresh = np.float32(np.sqrt(1.0 - how.memory**2))
        for step in range(1, n_steps):
            white[step] = how.memory * white[step - 1] + fresh * white[step]
    noise = lat_basis @ white @ lon_basis.T
    # the bumps overlap, so the sum's spread is known only after the fact
    scale = how.speed / float(noise[: min(n_steps, 8)].std())
    noise *= (scale * np.cos(np.radians(LATS))).astype(np.float32)[:, None]
    return noise


def _bumps(x: FloatArray, centres: FloatArray, width: float, period: float = 0.0) -> FloatArray:
    distance = x[:, None] - centres[None, :]
    if period:
        distance = np.mod(distance + period / 2, period) - period / 2
    return np.exp(-0.5 * (distance / width) ** 2).astype(np.float32)


def _add_vortex(u: FloatArray, v: FloatArray, vortex: Vortex) -> None:
    """Add a vortex's winds to u and v in place.

    Shielded Gaussian: ζ(r) = ζ0 (1 − r²/r0²) exp(−r²/r0²) has tangential wind
    ζ0 r/2 · exp(−r²/r0²), smooth at the centre (no Rankine core) and zero net circulation,
    so it leaves the flow far away alone.
    """
    steps, clat, clon = vortex.path()
    reach = 4.0 * vortex.radius_km / 111.2  # degrees beyond which the winds are negligible
    rows = np.flatnonzero((LATS >= clat.min() - reach) & (LATS <= clat.max() + reach))
    window = (slice(int(steps[0]), int(steps[-1]) + 1), slice(int(rows[0]), int(rows[-1]) + 1))

    phi = np.radians(LATS[rows])[None, :, None]
    lam = np.radians(LONS)[None, None, :]
    phi_c = np.radians(clat)[:, None, None]
    dlam = np.radians(clon)[:, None, None] - lam
    r_m = 1000.0 * great_circle_km(
        LATS[rows][None, :, None], LONS[None, None, :], clat[:, None, None], clon[:, None, None]
    )
    # initial bearing from each grid point towards the centre, clockwise from north
    bearing = np.arctan2(
        np.sin(dlam) * np.cos(phi_c),
        np.cos(phi) * np.sin(phi_c) - np.sin(phi) * np.cos(phi_c) * np.cos(dlam),
    )
    zeta = vortex.vorticity()[:, None, None]
    speed = 0.5 * zeta * r_m * np.exp(-((r_m / (1000.0 * vortex.radius_km)) ** 2))
    # anticlockwise flow (positive ζ) is the inward direction turned 90° to the right
    u[window] += (speed * np.cos(bearing)).astype(np.float32)
    v[window] -= (speed * np.sin(bearing)).astype(np.float32)


def _write_year(
    out: Path,
    year: int,
    members: int,
    n_steps: int,
    seed: int,
    packed: bool,
    difficulty: Difficulty,
) -> list[Path]:
    paths = [out / str(year) / f"{name}_{year}.nc" for name in ("u850", "v850")]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    times = sample_times(year, n_steps)
    written = list(paths)
    with (
        netCDF4.Dataset(paths[0], "w", format="NETCDF4") as u_ds,
        netCDF4.Dataset(paths[1], "w", format="NETCDF4") as v_ds,
    ):
        u_var = _create_grid(u_ds, "u850", "eastward_wind", times, members, packed)
        v_var = _create_grid(v_ds, "v850", "northward_wind", times, members, packed)
        for member in range(members):
            u, v, truth = sample_winds(year, member, n_steps, seed, difficulty)
            u_var[:, member] = _for_storage(u, packed)
            v_var[:, member] = _for_storage(v, packed)
            path = truth_path(out / "truth", year, member)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_tracks(
                path,
                truth,
                time_units=TIME_UNITS,
                calendar=CALENDAR,
                attrs={
                    "title": "truth tracks of clusterfarm sample data",
                    "year": year,
                    "member": member,
                    "seed": seed,
                    "difficulty": difficulty,
                },
            )
            written.append(path)
    return written


def _create_grid(
    ds: netCDF4.Dataset,
    name: str,
    standard_name: str,
    times: FloatArray,
    members: int,
    packed: bool,
) -> netCDF4.Variable:
    """Create the dimensions, coordinates and the wind variable of one 20CR-like file."""
    ds.setncatts(
        {
            "Conventions": "CF-1.8",
            "title": "clusterfarm synthetic 20CR-like sample",
            "source": "clusterfarm.analysis.sample",
        }
    )
    for dim, size in (
        ("time", times.size),
        ("member", members),
        ("lat", LATS.size),
        ("lon", LONS.size),
    ):
        ds.createDimension(dim, size)
    coordinates: dict[str, tuple[str, Any, dict[str, str]]] = {
        "time": (
            "f8",
            times,
            {"standard_name": "time", "units": TIME_UNITS, "calendar": CALENDAR, "axis": "T"},
        ),
        "member": ("i4", np.arange(members), {"long_name": "ensemble member"}),
        "lat": ("f4", LATS, {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        "lon": ("f4", LONS, {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}),
    }
    for coord, (dtype, values, attrs) in coordinates.items():
        var = ds.createVariable(coord, dtype, (coord,))
        var.setncatts(attrs)
        var[:] = values
    dims = ("time", "member", "lat", "lon")
    if packed:
        var = ds.createVariable(
            name,
            "i2",
            dims,
            zlib=True,
            complevel=4,
            shuffle=True,
            chunksizes=(1, 1, LATS.size, LONS.size),
            fill_value=PACK_FILL,
        )
        var.scale_factor = PACK_SCALE
        var.add_offset = np.float32(0.0)
    else:
        var = ds.createVariable(name, "f4", dims)
    var.setncatts(
        {
            "standard_name": standard_name,
            "units": "m/s",
            "long_name": f"{standard_name.replace('_', ' ')} at 850 hPa",
        }
    )
    return var


def _for_storage(wind: FloatArray, packed: bool) -> FloatArray:
    """Clip winds into the packed range; netCDF4 then scales and rounds them to int16."""
    if not packed:
        return wind
    limit = float(PACK_SCALE) * 32766
    return np.clip(wind, -limit, limit)
