"""Track cyclones with tobac: run inside bench/.venv-tobac by bench/tracking.py, not alone.

Reads ``cyclonic(time, lat, lon)`` (sign(lat)·ζ in s-1, the field clusterfarm searches) from
a netCDF file, detects maxima above multiple thresholds and links them with trackpy's
predictive linking, both as tobac's documentation shows, then writes one CSV row per tracked
point: ``cell, step, lat, lon, value`` and, on the first line, the seconds spent in tobac.

    bench/.venv-tobac/bin/python bench/tobac_tracker.py FIELD.nc OUT.csv --stubs 6 --memory 1
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import xarray as xr

warnings.filterwarnings("ignore")

import tobac  # noqa: E402
import trackpy  # noqa: E402

trackpy.quiet()

EARTH_KM_PER_DEG = 111.2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("field")
    parser.add_argument("out")
    parser.add_argument("--thresholds", default="1e-5,2e-5,4e-5,8e-5")
    parser.add_argument("--v-max", type=float, default=35.0, help="m/s, as link_km 750 per 6 h")
    parser.add_argument("--stubs", type=int, default=6)
    parser.add_argument("--memory", type=int, default=1)
    parser.add_argument("--lat-max", type=float, default=80.0)
    args = parser.parse_args()

    field = xr.open_dataset(args.field, decode_times=True)["cyclonic"].load()
    lats, lons = field["lat"].values, field["lon"].values
    dxy = EARTH_KM_PER_DEG * 1000.0 * abs(float(lats[1] - lats[0]))
    dt = float((field["time"].values[1] - field["time"].values[0]) / np.timedelta64(1, "s"))
    began = time.perf_counter()
    features = tobac.feature_detection_multithreshold(
        field,
        dxy,
        threshold=[float(x) for x in args.thresholds.split(",")],
        target="maximum",
        position_threshold="weighted_diff",
        sigma_threshold=0.5,
        n_min_threshold=1,
        PBC_flag="hdim_2",
    )
    lat_of_row = np.interp(features["hdim_1"], np.arange(lats.size), lats)
    features = features[np.abs(lat_of_row) <= args.lat_max].reset_index(drop=True)
    tracks = tobac.linking_trackpy(
        features,
        field,
        dt=dt,
        dxy=dxy,
        v_max=args.v_max,
        memory=args.memory,
        stubs=args.stubs,
        method_linking="predict",
        PBC_flag="hdim_2",
        min_h2=0,
        max_h2=lons.size,
    )
    elapsed = time.perf_counter() - began
    tracks = tracks[tracks["cell"] >= 0]
    rows = np.clip(np.round(tracks["hdim_1"].to_numpy()).astype(int), 0, lats.size - 1)
    cols = np.round(tracks["hdim_2"].to_numpy()).astype(int) % lons.size
    steps = tracks["frame"].to_numpy()
    lat = np.interp(tracks["hdim_1"], np.arange(lats.size), lats)
    lon = np.mod(lons[0] + tracks["hdim_2"].to_numpy() * (lons[1] - lons[0]), 360.0)
    value = field.values[steps, rows, cols]
    with open(args.out, "w") as out:
        out.write(f"# tobac {tobac.__version__} seconds {elapsed:.3f}\n")
        out.write("cell,step,lat,lon,value\n")
        for row in zip(tracks["cell"], steps, lat, lon, value, strict=True):
            out.write(",".join(str(x) for x in row) + "\n")


if __name__ == "__main__":
    main()
