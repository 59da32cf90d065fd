"""vort_track on files laid out like 20CR, ERA5, CMIP and deterministic runs, from settings alone.

Each test writes small files in one layout (the sample scenario's winds, re-laid), a
``clusterfarm.toml`` that names the layout, runs ``clusterfarm run-task`` and scores the
tracks against the truth.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cftime
import netCDF4
import numpy as np
import pytest

from clusterfarm.analysis import read_tracks, relative_vorticity, score_tracks
from clusterfarm.analysis.sample import LATS, LONS, sample_winds
from clusterfarm.analysis.tracking import Track
from tests.harness.cli import run_cli

STEPS = 40
YEAR = 2000


def regrid(field: np.ndarray, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Linear interpolation of (time, LATS, LONS) onto another regular grid (periodic lon)."""
    wrapped_lons = np.r_[LONS, 360.0]
    wrapped = np.concatenate([field, field[..., :1]], axis=-1)
    rows = np.interp(lats, LATS[::-1], np.arange(LATS.size)[::-1])
    cols = np.interp(np.mod(lons, 360.0), wrapped_lons, np.arange(wrapped_lons.size))
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, LATS.size - 1), np.minimum(c0 + 1, LONS.size)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    top = wrapped[:, r0][..., c0] * (1 - fc) + wrapped[:, r0][..., c1] * fc
    bottom = wrapped[:, r1][..., c0] * (1 - fc) + wrapped[:, r1][..., c1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.float32)


def write_layout(
    path: Path,
    name: str,
    data: np.ndarray,
    dims: Sequence[str],
    coords: dict[str, np.ndarray],
    time_attrs: dict[str, str],
) -> None:
    """One wind variable with the given dimension order; ``data`` already in that shape."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w") as ds:
        for dim, size in zip(dims, data.shape, strict=True):
            ds.createDimension(dim, size)
            if dim in coords:
                ds.createVariable(dim, "f8", (dim,))[:] = coords[dim]
        ds[dims[0]].setncatts(time_attrs)
        ds.createVariable(name, "f4", dims)[:] = data


def run_from_settings(tmp_path: Path, settings: str, member: int) -> list[Track]:
    (tmp_path / "clusterfarm.toml").write_text(
        f'[run]\ndata_dir = "{tmp_path / "data"}"\nrun_dir = "{tmp_path / "run"}"\n' + settings
    )
    done = run_cli(
        "run-task", "--task", "vort_track", "--year", str(YEAR), "--member", str(member),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.code == 0, done.err + done.out
    outcome = json.loads(done.out)
    assert outcome["status"] == "complete", outcome
    return read_tracks(outcome["output"]).tracks


def assert_found(found: list[Track], truth: list[Track], times: np.ndarray) -> None:
    """Found tracks score well against the truth, whose times are re-expressed as ``times``."""
    truth = [Track(times[np.searchsorted(_base_times(), t.time)], t.lat, t.lon, t.vorticity)
             for t in truth]  # fmt: skip
    score = score_tracks(found, truth)
    assert score["recall"] >= 0.9, score
    assert score["precision"] >= 0.9, score
    assert score["error_km"]["mean"] <= 100.0, score


def _base_times() -> np.ndarray:
    from clusterfarm.analysis.sample import sample_times

    return sample_times(YEAR, STEPS)


def test_20cr_layout_runs_from_the_default_settings(tmp_path: Path) -> None:
    members = [sample_winds(YEAR, m, STEPS) for m in range(2)]
    times = _base_times()
    coords = {"time": times, "member": np.arange(2), "lat": LATS, "lon": LONS}
    attrs = {"units": "hours since 1800-01-01 00:00:00", "calendar": "standard"}
    for k, name in enumerate(("u850", "v850")):
        data = np.stack([m[k] for m in members], axis=1)
        dims = ("time", "member", "lat", "lon")
        write_layout(tmp_path / "data" / str(YEAR) / f"{name}_{YEAR}.nc", name, data, dims,
                     coords, attrs)  # fmt: skip
    found = run_from_settings(tmp_path, "", member=1)
    assert_found(found, members[1][2], times)


def test_era5_layout_with_a_size_one_pressure_level_and_0_to_360_inclusive(
    tmp_path: Path,
) -> None:
    u, v, truth = sample_winds(YEAR, 0, STEPS)
    lats, lons = np.arange(90.0, -90.1, -1.0), np.arange(0.0, 360.1, 1.0)  # 360 repeats 0
    times = np.arange(STEPS) * 6.0
    coords = {"valid_time": times, "pressure_level": np.array([850.0]),
              "latitude": lats, "longitude": lons}  # fmt: skip
    attrs = {"units": f"hours since {YEAR}-01-01", "calendar": "proleptic_gregorian"}
    for name, wind in (("u", u), ("v", v)):
        data = regrid(wind, lats, lons)[:, None]
        dims = ("valid_time", "pressure_level", "latitude", "longitude")
        write_layout(tmp_path / "data" / f"era5_{name}_{YEAR}.nc", name, data, dims, coords,
                     attrs)  # fmt: skip
    settings = (
        "[tasks.vort_track]\n"
        'u_path = "era5_u_{year}.nc"\nv_path = "era5_v_{year}.nc"\nu_var = "u"\nv_var = "v"\n'
        'time_dim = "valid_time"\nlat_dim = "latitude"\nlon_dim = "longitude"\n'
    )
    found = run_from_settings(tmp_path, settings, member=0)
    assert_found(found, truth, times)
    assert all(t.lon.max() < 360.0 for t in found)


@pytest.mark.parametrize("calendar", ["noleap", "360_day"])
def test_cmip_layout_cell_centred_with_a_model_calendar_and_one_file_per_member(
    tmp_path: Path, calendar: str
) -> None:
    u, v, truth = sample_winds(YEAR, 2, STEPS)
    lats, lons = np.arange(-89.5, 90.0, 1.0), np.arange(0.5, 360.0, 1.0)
    first = cftime.date2num(cftime.datetime(YEAR, 1, 1, calendar=calendar),
                            "days since 1850-01-01", calendar)  # fmt: skip
    times = first + 0.25 * np.arange(STEPS)
    attrs = {"units": "days since 1850-01-01", "calendar": calendar}
    for name, wind in (("ua", u), ("va", v)):
        path = tmp_path / "data" / f"{name}_6hrPlevPt_r3i1p1f1_{YEAR}.nc"
        write_layout(path, name, regrid(wind, lats, lons)[:, None], ("time", "plev", "lat", "lon"),
                     {"time": times, "plev": np.array([85000.0]), "lat": lats, "lon": lons},
                     attrs)  # fmt: skip
    settings = (
        "[tasks.vort_track]\n"
        'u_path = "ua_6hrPlevPt_r{member}i1p1f1_{year}.nc"\n'
        'v_path = "va_6hrPlevPt_r{member}i1p1f1_{year}.nc"\n'
        'u_var = "ua"\nv_var = "va"\nlevel_dim = "plev"\nlevel = 85000.0\n'
    )
    found = run_from_settings(tmp_path, settings, member=3)
    assert_found(found, truth, times)
    assert read_tracks(next((tmp_path / "run").rglob("*.nc"))).calendar == calendar


def test_deterministic_run_without_a_member_dimension_is_member_0(tmp_path: Path) -> None:
    u, v, truth = sample_winds(YEAR, 0, STEPS)
    times = _base_times()
    attrs = {"units": "hours since 1800-01-01 00:00:00", "calendar": "standard"}
    for name, wind in (("u850", u), ("v850", v)):
        write_layout(tmp_path / "data" / str(YEAR) / f"{name}_{YEAR}.nc", name, wind,
                     ("time", "lat", "lon"), {"time": times, "lat": LATS, "lon": LONS},
                     attrs)  # fmt: skip
    found = run_from_settings(tmp_path, "", member=0)
    assert_found(found, truth, times)


# solid-body rotation of this speed at the equator has ζ = 2U sin φ / R ≈ 0.57e-5 s-1 at the
# poles, below the threshold; a one-sided ∂/∂φ at the outermost row doubles it, above
POLAR_U = 18.0


def calm_winds(lats: np.ndarray, lons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solid-body rotation (strongest vorticity at the poles, yet below threshold), no storm."""
    u = POLAR_U * np.cos(np.radians(lats))[:, None] * np.ones(lons.size)
    u = np.repeat(u[None], STEPS, axis=0).astype(np.float32)
    return u, np.zeros_like(u)


@pytest.mark.parametrize(
    ("lats", "lons"),
    [(LATS, LONS), (np.arange(89.5, -90.0, -1.0), np.arange(0.5, 360.0, 1.0))],
    ids=["2deg with pole rows", "1deg cell-centred"],
)
def test_a_box_to_the_poles_finds_no_track_where_there_is_no_storm(
    lats: np.ndarray, lons: np.ndarray
) -> None:
    from clusterfarm.analysis import Detection, track_cyclones

    u, v = calm_winds(lats, lons)
    zeta = relative_vorticity(u, v, lats, lons)
    assert np.abs(zeta[:, [0, -1]]).max() < 1e-5  # the outermost rows stay calm
    tracks = track_cyclones(u, v, lats, lons, _base_times(), Detection(box=[-90, 90, 0, 360]))
    assert tracks == []
