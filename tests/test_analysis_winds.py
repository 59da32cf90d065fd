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
    data = np.zeros((TIMES.size, 1, LATS.size, LONS.size))
    dims = ("time", "member", "y", "lon")
    for name in ("u850", "v850"):
        write_var(tmp_path / "2000" / f"{name}_2000.nc", name, data, dims)
    with pytest.raises(InputError, match=r"u850_2000\.nc: u850 has dimensions"):
        read_winds(tmp_path, 2000, 0)


def test_several_levels_need_the_level_parameter(tmp_path: Path) -> None:
    data = np.zeros((TIMES.size, 1, 2, LATS.size, LONS.size))
    dims = ("time", "member", "level", "lat", "lon")
    for name in ("u850", "v850"):
        write_var(tmp_path / "2000" / f"{name}_2000.nc", name, data, dims)
    with pytest.raises(InputError, match=r"u850 has 2 values along 'level'; set level"):
        read_winds(tmp_path, 2000, 0)


def test_the_level_parameter_picks_one_level_by_its_value(tmp_path: Path) -> None:
    data = np.zeros((TIMES.size, 2, LATS.size, LONS.size))
    data[:, 1] = 7.0
    dims = ("time", "plev", "lat", "lon")
    for name in ("u850", "v850"):
        path = write_var(tmp_path / "2000" / f"{name}_2000.nc", name, data, dims)
        with netCDF4.Dataset(path, "a") as ds:
            ds.createVariable("plev", "f8", ("plev",))[:] = [500.0, 850.0]
    source = WindSource(level_dim="plev", level=850.0)
    assert (read_winds(tmp_path, 2000, 0, source).u == 7.0).all()
    with pytest.raises(InputError, match=r"level 700 is not in 'plev' \(has 500, 850\)"):
        read_winds(tmp_path, 2000, 0, WindSource(level_dim="plev", level=700.0))


def test_a_size_one_level_of_any_name_is_taken_as_it_is(tmp_path: Path) -> None:
    data = np.full((TIMES.size, 1, LATS.size, LONS.size), 3.0)
    for name in ("u850", "v850"):
        write_var(
            tmp_path / "2000" / f"{name}_2000.nc",
            name,
            data,
            ("time", "pressure_level", "lat", "lon"),
        )
    assert read_winds(tmp_path, 2000, 0).u.shape == (TIMES.size, LATS.size, LONS.size)


def test_a_file_without_member_dimension_is_a_deterministic_member_0(tmp_path: Path) -> None:
    data = np.ones((TIMES.size, LATS.size, LONS.size))
    for name in ("u850", "v850"):
        write_var(tmp_path / "2000" / f"{name}_2000.nc", name, data, ("time", "lat", "lon"))
    assert (read_winds(tmp_path, 2000, 0).u == 1.0).all()
    with pytest.raises(InputError, match=r"no 'member' dimension.*use members = 0"):
        read_winds(tmp_path, 2000, 1)


def test_a_repeated_360_degree_column_is_dropped_so_the_grid_wraps(tmp_path: Path) -> None:
    lons = np.arange(0.0, 360.1, 30.0)
    data = np.ones((TIMES.size, LATS.size, lons.size))
    for name in ("u850", "v850"):
        path = tmp_path / "2000" / f"{name}_2000.nc"
        path.parent.mkdir(parents=True, exist_ok=True)
        with netCDF4.Dataset(path, "w") as ds:
            for dim, values in (("time", TIMES), ("lat", LATS), ("lon", lons)):
                ds.createDimension(dim, values.size)
                ds.createVariable(dim, "f8", (dim,))[:] = values
            ds["time"].units = UNITS
            ds.createVariable(name, "f4", ("time", "lat", "lon"))[:] = data
    winds = read_winds(tmp_path, 2000, 0)
    assert winds.lons.tolist() == LONS.tolist()
    assert winds.u.shape[-1] == LONS.size


def test_member_beyond_the_file_is_an_input_error(tmp_path: Path) -> None:
    winds_pair(tmp_path, members=2)
    with pytest.raises(InputError, match=r"member 5 is not in the file \(2 members\)"):
        read_winds(tmp_path, 2000, 5)


def test_u_and_v_of_different_shapes_are_an_input_error(tmp_path: Path) -> None:
    u = winds_pair(tmp_path)
    write_var(tmp_path / "2000" / "v850_2000.nc", "v850", u[:3], times=TIMES[:3])
    with pytest.raises(InputError, match=r"v850_2000\.nc: v850 does not match u850 .*time axis"):
        read_winds(tmp_path, 2000, 0)


def test_a_member_with_only_missing_values_is_an_input_error(tmp_path: Path) -> None:
    u = winds_pair(tmp_path)
    u[:, 1] = np.nan
    write_var(tmp_path / "2000" / "u850_2000.nc", "u850", np.ma.masked_invalid(u))
    assert np.isfinite(read_winds(tmp_path, 2000, 0).u).all()
    with pytest.raises(InputError, match=r"u850_2000\.nc: u850 of member 1 is 100.0% missing"):
        read_winds(tmp_path, 2000, 1)


def test_a_mostly_missing_member_fails_with_the_fraction_but_a_few_holes_pass(
    tmp_path: Path,
) -> None:
    u = winds_pair(tmp_path, members=1)
    u[:, 0, :2] = np.nan  # 2 of 5 rows: 40 %
    write_var(tmp_path / "2000" / "v850_2000.nc", "v850", np.ma.masked_invalid(u))
    with pytest.raises(InputError, match=r"v850_2000\.nc: v850 of member 0 is 40.0% missing"):
        read_winds(tmp_path, 2000, 0)
    assert np.isnan(read_winds(tmp_path, 2000, 0, max_missing=0.5).v).mean() == pytest.approx(0.4)


def write_r1_like(path: Path, name: str, data: np.ndarray, valid_range: np.ndarray) -> None:
    """Packed shorts as NCEP/NCAR R1 files from PSL hold them (valid_range of a chosen type)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w") as ds:
        for dim, values in (("time", TIMES), ("lat", LATS), ("lon", LONS)):
            ds.createDimension(dim, values.size)
            ds.createVariable(dim, "f8", (dim,))[:] = values
        ds["time"].units = UNITS
        var = ds.createVariable(name, "i2", ("time", "lat", "lon"), fill_value=np.int16(32766))
        var.set_auto_maskandscale(False)
        var.scale_factor, var.add_offset = np.float32(0.01), np.float32(202.66)
        var.setncattr("valid_range", valid_range)  # plain attribute: keeps its own type
        var[:] = np.round((data - 202.66) / 0.01).astype(np.int16)


@pytest.mark.parametrize(
    "valid_range",
    [np.array([-125.0, 160.0], np.float32), np.array([-32765, 32765], np.int16)],
    ids=["float: unpacked units", "short: packed units"],
)
def test_valid_range_is_in_packed_units_only_when_typed_like_the_packed_data(
    tmp_path: Path, valid_range: np.ndarray
) -> None:
    rng = np.random.default_rng(0)
    data = rng.uniform(-30.0, 30.0, (TIMES.size, LATS.size, LONS.size))
    data[0, 0, 0] = 200.0  # out of the physical range; in range as a packed value
    for name in ("u850", "v850"):
        write_r1_like(tmp_path / "2000" / f"{name}_2000.nc", name, data, valid_range)
    u = read_winds(tmp_path, 2000, 0).u
    assert np.isnan(u[0, 0, 0]) == (valid_range.dtype == np.float32)
    assert np.allclose(u.ravel()[1:], data.ravel()[1:], atol=0.006)


def test_time_without_cf_units_is_an_input_error(tmp_path: Path) -> None:
    winds_pair(tmp_path)
    with netCDF4.Dataset(tmp_path / "2000" / "u850_2000.nc", "a") as ds:
        ds["time"].units = "fortnights after the flood"
    with pytest.raises(InputError, match=r"u850_2000\.nc: time units"):
        read_winds(tmp_path, 2000, 0)
