"""Reading 20CR-like winds: layout, packing, fill values, templates, and bad input."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from clusterfarm.analysis import WindSource, read_winds, write_sample_data
from clusterfarm.analysis.sample import PACK_SCALE
from clusterfarm.errors import InputError

LATS = np.arange(10.0, -10.1, -5.0)
LONS = np.arange(0.0, 360.0, 30.0)
TIMES = 6.0 * np.arange(4)
UNITS = "hours since 2000-01-01 00:00:00"


def write_var(
    path: Path,
    name: str,
    data: np.ndarray,
    dims: Sequence[str] = ("time", "member", "lat", "lon"),
    lats: np.ndarray = LATS,
    times: np.ndarray = TIMES,
    packed: bool = False,
) -> Path:
    """Write one wind variable with coordinates named after its dimensions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    coords = {"time": times, "lat": lats, "lon": LONS, "t": times}
    with netCDF4.Dataset(path, "w") as ds:
        for dim, size in zip(dims, data.shape, strict=True):
            ds.createDimension(dim, size)
            key = "lat" if "lat" in dim else "lon" if "lon" in dim else dim
            if key in coords:
                var = ds.createVariable(dim, "f8", (dim,))
                var[:] = coords[key]
                if key in ("time", "t"):
                    var.units, var.calendar = UNITS, "standard"
        if packed:
            var = ds.createVariable(name, "i2", dims, zlib=True, fill_value=np.int16(-32767))
            var.scale_factor, var.add_offset = np.float32(0.01), np.float32(5.0)
        else:
            var = ds.createVariable(name, "f4", dims, fill_value=np.float32(1e20))
        var[:] = data
    return path


def winds_pair(tmp_path: Path, members: int = 3, packed: bool = False) -> np.ndarray:
    """Write u (member m holds m + lat/100) and v (= -u) for 2000 in the default layout."""
    shape = (TIMES.size, members, LATS.size, LONS.size)
    u = np.arange(members)[None, :, None, None] + LATS[None, None, :, None] / 100 + np.zeros(shape)
    write_var(tmp_path / "2000" / "u850_2000.nc", "u850", u, packed=packed)
    write_var(tmp_path / "2000" / "v850_2000.nc", "v850", -u, packed=packed)
    return u


def test_reads_only_the_requested_member(tmp_path: Path) -> None:
    u = winds_pair(tmp_path)
    winds = read_winds(tmp_path, 2000, 2)
    assert winds.u.shape == (TIMES.size, LATS.size, LONS.size)
    assert winds.u.dtype == np.float32
    np.testing.assert_allclose(winds.u, u[:, 2], rtol=1e-6)
    np.testing.assert_allclose(winds.v, -u[:, 2], rtol=1e-6)
    np.testing.assert_array_equal(winds.lats, LATS)
    np.testing.assert_array_equal(winds.times, TIMES)
    assert (winds.time_units, winds.calendar) == (UNITS, "standard")


def test_packed_shorts_are_unpacked(tmp_path: Path) -> None:
    u = winds_pair(tmp_path, packed=True)
    with netCDF4.Dataset(tmp_path / "2000" / "u850_2000.nc") as ds:
        assert ds["u850"].dtype == np.int16  # the file really is packed
    winds = read_winds(tmp_path, 2000, 1)
    np.testing.assert_allclose(winds.u, u[:, 1], atol=0.005 + 1e-6)


def test_packed_sample_data_matches_the_float_sample(tmp_path: Path) -> None:
    write_sample_data(tmp_path / "f4", 2000, 2, seed=5)
    write_sample_data(tmp_path / "i2", 2000, 2, seed=5, packed=True)
    plain = read_winds(tmp_path / "f4", 2000, 1)
    packed = read_winds(tmp_path / "i2", 2000, 1)
    with netCDF4.Dataset(tmp_path / "i2" / "2000" / "v850_2000.nc") as ds:
        var = ds["v850"]
        assert var.dtype == np.int16
        assert var.filters()["zlib"]
        assert {"scale_factor", "add_offset", "_FillValue"} <= set(var.ncattrs())
    np.testing.assert_allclose(packed.u, plain.u, atol=float(PACK_SCALE) / 2 + 1e-5)
    np.testing.assert_allclose(packed.v, plain.v, atol=float(PACK_SCALE) / 2 + 1e-5)


def test_fill_values_become_nan(tmp_path: Path) -> None:
    shape = (TIMES.size, 2, LATS.size, LONS.size)
    u = np.ma.masked_array(np.ones(shape), mask=np.zeros(shape, bool))
    u.mask[1, 0, 2, 3] = True
    for name in ("u850", "v850"):
        write_var(tmp_path / "2000" / f"{name}_2000.nc", name, u, packed=True)
    winds = read_winds(tmp_path, 2000, 0)
    assert np.isnan(winds.u[1, 2, 3])
    assert np.isfinite(winds.u).sum() == winds.u.size - 1


def test_one_file_per_member_with_other_names_and_northward_latitudes(tmp_path: Path) -> None:
    dims = ("t", "latitude", "longitude")
    for member in range(2):
        data = np.full((TIMES.size, LATS.size, LONS.size), float(member))
        for name in ("uwnd", "vwnd"):
            write_var(tmp_path / f"m{member:02d}" / f"{name}.nc", name, data, dims, LATS[::-1])
    source = WindSource(
        u_path="m{member:02d}/uwnd.nc",
        v_path="m{member:02d}/vwnd.nc",
        u_var="uwnd",
        v_var="vwnd",
        time_dim="t",
        lat_dim="latitude",
        lon_dim="longitude",
    )
    winds = read_winds(tmp_path, 2000, 1, source)
    assert np.all(winds.u == 1.0)
    np.testing.assert_array_equal(winds.lats, LATS[::-1])


def test_dimensions_in_another_order_are_transposed(tmp_path: Path) -> None:
    u = winds_pair(tmp_path)
    for name, data in (("u850", u), ("v850", -u)):
        write_var(
            tmp_path / "2000" / f"{name}_2000.nc",
            name,
            np.transpose(data, (1, 0, 3, 2)),
            dims=("member", "time", "lon", "lat"),
        )
    np.testing.assert_allclose(read_winds(tmp_path, 2000, 1).u, u[:, 1], rtol=1e-6)


def test_missing_file_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"u850_2000\.nc: file not found"):
        read_winds(tmp_path, 2000, 0)


def test_corrupt_file_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    winds_pair(tmp_path)
    (tmp_path / "2000" / "v850_2000.nc").write_bytes(b"CDF\x01 this is not netCDF at all")
    with pytest.raises(InputError, match=r"v850_2000\.nc: not a readable netCDF file"):
        read_winds(tmp_path, 2000, 0)


def test_missing_variable_is_an_input_error(tmp_path: Path) -> None:
    winds_pair(tmp_path)
    with pytest.raises(InputError, match=r"u850_2000\.nc: no variable 'uwnd'"):
        read_winds(tmp_path, 2000, 0, WindSource(u_var="uwnd"))


def test_wrong_dimensions_are_an_input_error(tmp_path: Path) -> None:
    data = np.zeros((TIMES.size, 1, 2, LATS.size, LONS.size))
    dims = ("time", "member", "level", "lat", "lon")
    for name in ("u850", "v850"):
        write_var(tmp_path / "2000" / f"{name}_2000.nc", name, data, dims)
    with pytest.raises(InputError, match=r"u850_2000\.nc: u850 has dimensions"):
        read_winds(tmp_path, 2000, 0)


def test_a_file_without_member_dimension_needs_a_member_template(tmp_path: Path) -> None:
    data = np.zeros((TIMES.size, LATS.size, LONS.size))
    for name in ("u850", "v850"):
        write_var(tmp_path / "2000" / f"{name}_2000.nc", name, data, ("time", "lat", "lon"))
    with pytest.raises(InputError, match=r"no 'member' dimension"):
        read_winds(tmp_path, 2000, 0)


def test_member_beyond_the_file_is_an_input_error(tmp_path: Path) -> None:
    winds_pair(tmp_path, members=2)
    with pytest.raises(InputError, match=r"member 5 is not in the file \(2 members\)"):
        read_winds(tmp_path, 2000, 5)


def test_u_and_v_of_different_shapes_are_an_input_error(tmp_path: Path) -> None:
    u = winds_pair(tmp_path)
    write_var(tmp_path / "2000" / "v850_2000.nc", "v850", u[:3], times=TIMES[:3])
    with pytest.raises(InputError, match=r"v850_2000\.nc: v850 does not match u850 .*shape"):
        read_winds(tmp_path, 2000, 0)


def test_a_member_with_only_missing_values_is_an_input_error(tmp_path: Path) -> None:
    u = winds_pair(tmp_path)
    u[:, 1] = np.nan
    write_var(tmp_path / "2000" / "u850_2000.nc", "u850", np.ma.masked_invalid(u))
    assert np.isfinite(read_winds(tmp_path, 2000, 0).u).all()
    with pytest.raises(InputError, match=r"u850_2000\.nc: u850 of member 1 holds only missing"):
        read_winds(tmp_path, 2000, 1)


def test_time_without_cf_units_is_an_input_error(tmp_path: Path) -> None:
    winds_pair(tmp_path)
    with netCDF4.Dataset(tmp_path / "2000" / "u850_2000.nc", "a") as ds:
        ds["time"].units = "fortnights after the flood"
    with pytest.raises(InputError, match=r"u850_2000\.nc: time units"):
        read_winds(tmp_path, 2000, 0)
