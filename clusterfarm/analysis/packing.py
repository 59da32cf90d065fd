"""Turn raw netCDF values into physical ones as CF says, missing points into NaN.

netCDF4's automatic masking compares ``valid_range``/``valid_min``/``valid_max`` with the raw
(packed) values whatever their type, so a float ``valid_range`` written in physical units on
packed shorts (as NCEP/NCAR R1 files are laid out) masks most of a field. CF (§8.1) says such
limits are in packed units when their type is the packed type, and in physical units when it
is the unpacked type (that of ``scale_factor``/``add_offset``). :class:`Unpacker` reads the
attributes once and applies them to every chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import netCDF4
import numpy as np

from clusterfarm.analysis.geo import FloatArray


@dataclass(frozen=True)
class Unpacker:
    """The packing and missing-value attributes of one variable."""

    packed_dtype: np.dtype[Any]
    scale: float
    offset: float
    fill: tuple[float, ...]
    low_raw: float
    high_raw: float
    low: float
    high: float

    @classmethod
    def of(cls, variable: netCDF4.Variable) -> Unpacker:
        """Read the attributes of ``variable`` that say how to unpack and mask it."""
        attrs = {key: variable.getncattr(key) for key in variable.ncattrs()}
        dtype = np.dtype(variable.dtype)
        fill: list[float] = []
        if "_FillValue" in attrs:
            fill += np.atleast_1d(attrs["_FillValue"]).astype(np.float64).tolist()
        elif dtype.kind in "iuf" and dtype.str[1:] in netCDF4.default_fillvals:
            fill.append(float(netCDF4.default_fillvals[dtype.str[1:]]))
        if "missing_value" in attrs:
            fill += np.atleast_1d(attrs["missing_value"]).astype(np.float64).tolist()
        low_raw, high_raw, low, high = -np.inf, np.inf, -np.inf, np.inf
        limits = {
            "valid_min": (attrs.get("valid_min"), None),
            "valid_max": (None, attrs.get("valid_max")),
        }
        if "valid_range" in attrs:
            pair = np.atleast_1d(attrs["valid_range"])
            limits["valid_range"] = (pair[0], pair[-1])
        for key, (lo, hi) in limits.items():
            if lo is None and hi is None:
                continue
            # CF §8.1: limits typed like the packed data are packed, else physical
            in_packed_units = np.asarray(attrs[key]).dtype == dtype
            if lo is not None:
                if in_packed_units:
                    low_raw = max(low_raw, float(lo))
                else:
                    low = max(low, float(lo))
            if hi is not None:
                if in_packed_units:
                    high_raw = min(high_raw, float(hi))
                else:
                    high = min(high, float(hi))
        return cls(
            packed_dtype=dtype,
            scale=float(attrs.get("scale_factor", 1.0)),
            offset=float(attrs.get("add_offset", 0.0)),
            fill=tuple(fill),
            low_raw=low_raw,
            high_raw=high_raw,
            low=low,
            high=high,
        )

    def unpack(self, raw: Any) -> FloatArray:
        """Return the physical values of ``raw`` as float32, NaN where missing or invalid."""
        raw = np.asarray(raw)
        missing = None
        for value in self.fill:
            hit = raw == value
            missing = hit if missing is None else missing | hit
        if np.isfinite(self.low_raw) or np.isfinite(self.high_raw):
            outside = (raw < self.low_raw) | (raw > self.high_raw)
            missing = outside if missing is None else missing | outside
        # raw is a fresh array read from the file: a float32 one is used (and scaled) in place
        data = raw.astype(np.float32, copy=False)
        if self.scale != 1.0:
            data *= np.float32(self.scale)
        if self.offset != 0.0:
            data += np.float32(self.offset)
        if np.isfinite(self.low) or np.isfinite(self.high):
            outside = (data < self.low) | (data > self.high)
            missing = outside if missing is None else missing | outside
        if missing is not None and missing.any():
            data[missing] = np.nan
        return data
