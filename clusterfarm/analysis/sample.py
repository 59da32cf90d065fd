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
easterlies, a weak stationary wave) plus smooth noise plus moving vortices with a shielded
Gaussian profile. The vortex scenario repeats every ``BLOCK_STEPS`` steps, jittered in time,
place and intensity by (seed, year, member, block), and contains on purpose a track across
0°, a high-latitude track, a close pair, a pair of crossing tracks and Southern Hemisphere
tracks. The same seed gives the same files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import cftime
import netCDF4
import numpy as np

from clusterfarm.analysis.geo import FloatArray, great_circle_km
from clusterfarm.analysis.tracking import Track
from clusterfarm.analysis.trajectories import write_tracks

Size = Literal["small", "full"]

STEPS: dict[str, int] = {"small": 40, "full": 1460}
BLOCK_STEPS = 40
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
NOISE_SPEED = 0.5


@dataclass(frozen=True)
class Vortex:
    """A cyclone on a smooth path in lat/lon, growing over its first 3 steps, decaying over
    its last 3."""

    name: str
    start: int
    steps: int
    lat0: float
    lon0: float
    dlat: float  # degrees per step
    dlon: float
    zeta0: float  # peak relative vorticity magnitude (s-1)
    radius_km: float
    turn_lat: float = 0.0  # change of dlat per step: tracks bend poleward or recurve
    turn_lon: float = 0.0

    def path(self) -> tuple[np.ndarray, FloatArray, FloatArray]:
        """Time steps and centre positions of the vortex."""
        k = np.arange(self.steps)
        lat = self.lat0 + self.dlat * k + 0.5 * self.turn_lat * k**2
        lon = self.lon0 + self.dlon * k + 0.5 * self.turn_lon * k**2
        return self.start + k, lat, np.mod(lon, 360.0)

    def vorticity(self) -> FloatArray:
        """Signed peak vorticity at each step: cyclones turn clockwise in the south."""
        k = np.arange(self.steps)
        envelope = np.minimum(1.0, np.minimum(k + 1, self.steps - k) / 3.0)
        return np.sign(self.lat0) * self.zeta0 * envelope


# Groups of vortices jittered together, so a pair keeps its geometry. Steps are within a block.
_SCENARIO: tuple[tuple[Vortex, ...], ...] = (
    (Vortex("zero_crossing", 4, 16, 48.0, 336.0, 0.2, 3.0, 8e-5, 550.0, turn_lat=0.02),),
    (Vortex("high_latitude", 6, 14, 66.0, 190.0, 0.4, 2.0, 7e-5, 450.0),),
    (
        Vortex("close_pair_west", 10, 16, 44.0, 95.0, 0.25, 2.2, 7e-5, 450.0),
        Vortex("close_pair_east", 10, 16, 44.0, 116.0, 0.25, 2.2, 7e-5, 450.0),
    ),
    (
        Vortex("crossing_zonal", 8, 18, 38.0, 150.0, 0.0, 2.5, 8e-5, 500.0),
        Vortex("crossing_meridional", 18, 16, 28.0, 160.0, 1.25, 1.25, 8e-5, 500.0),
    ),
    (Vortex("southern", 3, 20, -45.0, 60.0, -0.2, 2.8, 9e-5, 550.0, turn_lat=-0.02),),
    (Vortex("southern_polar", 14, 18, -58.0, 250.0, -0.2, 3.2, 8e-5, 550.0),),
    (Vortex("tropical", 2, 20, 15.0, 300.0, 0.5, -1.5, 6e-5, 600.0, turn_lon=0.15),),
    (Vortex("atlantic", 18, 16, 40.0, 290.0, 0.5, 2.4, 8e-5, 550.0, turn_lat=0.03, turn_lon=0.1),),
)

SPECIAL_CASES: dict[str, tuple[str, ...]] = {
    "zero_crossing": ("zero_crossing",),
    "high_latitude": ("high_latitude",),
    "close_pair": ("close_pair_west", "close_pair_east"),
    "crossing_pair": ("crossing_zonal", "crossing_meridional"),
    "southern_hemisphere": ("southern", "southern_polar"),
}


def write_sample_data(
    out_dir: str | Path,
    years: int | Iterable[int],
    members: int,
    size: Size = "small",
    seed: int = 0,
    packed: bool = False,
) -> list[Path]:
    """Write winds for ``members`` members of each year, and the truth; return the paths."""
    if size not in STEPS:
        raise ValueError(f"size must be one of {', '.join(STEPS)}, got {size!r}")
    if members < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    out = Path(out_dir)
    written: list[Path] = []
    for year in [years] if isinstance(years, int) else list(years):
        written += _write_year(out, year, members, STEPS[size], seed, packed)
    return written


def truth_path(truth_dir: str | Path, year: int, member: int) -> Path:
    """Return the truth file of one year and member under ``{out}/truth``."""
    return Path(truth_dir) / str(year) / f"truth_{year}_m{member:03d}.nc"


def sample_times(year: int, n_steps: int) -> FloatArray:
    """Time values (in ``TIME_UNITS``) of a year's 6-hourly steps from 1 January 00 UTC."""
    first = cftime.date2num(cftime.datetime(year, 1, 1, calendar=CALENDAR), TIME_UNITS, CALENDAR)
    return float(first) + STEP_HOURS * np.arange(n_steps, dtype=np.float64)


def sample_vortices(year: int, member: int, n_steps: int, seed: int = 0) -> list[Vortex]:
    """Return the vortices of one member-year: the scenario, jittered block after block."""
    rng = np.random.default_rng([seed, year, member, 0])
    vortices = []
    for block_start in range(0, n_steps, BLOCK_STEPS):
        for group in _SCENARIO:
            delay = int(rng.integers(0, 3))
            dlat, dlon = rng.uniform(-2.0, 2.0), rng.uniform(-4.0, 4.0)
            for base in group:
                vortex = replace(
                    base,
                    start=block_start + base.start + delay,
                    lat0=base.lat0 + dlat,
                    lon0=base.lon0 + dlon,
                    zeta0=base.zeta0 * rng.uniform(0.8, 1.25),
                )
                if vortex.start + vortex.steps <= n_steps:
                    vortices.append(vortex)
    return vortices


def sample_winds(
    year: int, member: int, n_steps: int, seed: int = 0
) -> tuple[FloatArray, FloatArray, list[Track]]:
    """Return u, v (float32, (time, lat, lon)) and the truth tracks of one member-year."""
    rng = np.random.default_rng([seed, year, member, 1])
    u_bg, v_bg = _background(LATS, LONS)
    u = _smooth_noise(rng, n_steps) + u_bg
    v = _smooth_noise(rng, n_steps) + v_bg
    times = sample_times(year, n_steps)
    truth = []
    for vortex in sample_vortices(year, member, n_steps, seed):
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


def _smooth_noise(rng: np.random.Generator, n_steps: int) -> FloatArray:
    """Wind noise (m/s) with a ~600 km length scale, fading towards the poles.

    White noise on a 4° grid spread by Gaussian bumps is as smooth as filtering the full grid
    but costs two small matrix products. Scaling by cos φ keeps the noise's vorticity
    roughly even, since a degree of longitude shrinks towards the poles.
    """
    lat_basis = _bumps(LATS, np.arange(90.0, -90.1, -4.0), width=3.0)
    lon_basis = _bumps(LONS, np.arange(0.0, 360.0, 4.0), width=3.0, period=360.0)
    white = rng.standard_normal((n_steps, lat_basis.shape[1], lon_basis.shape[1]), np.float32)
    noise = lat_basis @ white @ lon_basis.T
    # the bumps overlap, so the sum's spread is known only after the fact
    scale = NOISE_SPEED / float(noise[: min(n_steps, 8)].std())
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
    out: Path, year: int, members: int, n_steps: int, seed: int, packed: bool
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
            u, v, truth = sample_winds(year, member, n_steps, seed)
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
