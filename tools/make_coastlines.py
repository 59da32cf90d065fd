"""Convert Natural Earth 110 m land outlines (TopoJSON) into the package's coastline file.

Run once; the output, ``clusterfarm/analysis/coastlines_110m.npz``, is committed. The input is
``land-110m.json`` of the npm package ``world-atlas`` 2.0.2 (Natural Earth 4.1.0 physical
land, 1:110m, public domain; the TopoJSON encoding is ISC-licensed), fetched with
``npm pack world-atlas@2.0.2`` and unpacked. Every arc of the land object is coastline; the
file stores them as int16 hundredths of a degree, one polyline after another, with the
index where each starts:

    python tools/make_coastlines.py package/land-110m.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "clusterfarm" / "analysis" / "coastlines_110m.npz"


def decode_arcs(topology: dict) -> list[np.ndarray]:
    """Return the topology's arcs as (n, 2) lon/lat arrays in degrees."""
    scale = np.asarray(topology["transform"]["scale"])
    translate = np.asarray(topology["transform"]["translate"])
    # quantized arcs are delta-encoded: positions are running sums
    return [
        np.cumsum(np.asarray(arc, float), axis=0) * scale + translate for arc in topology["arcs"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("land_json", type=Path, help="land-110m.json of world-atlas")
    args = parser.parse_args()
    arcs = decode_arcs(json.loads(args.land_json.read_text()))
    points = np.concatenate(arcs)
    starts = np.cumsum([0] + [len(a) for a in arcs[:-1]])
    np.savez_compressed(
        OUT,
        lon=np.round(points[:, 0] * 100).astype(np.int16),
        lat=np.round(points[:, 1] * 100).astype(np.int16),
        starts=starts.astype(np.int32),
        source=np.array("Natural Earth 4.1.0 110m land (public domain), via world-atlas 2.0.2"),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(arcs)} lines, {len(points)} points)")


if __name__ == "__main__":
    main()
