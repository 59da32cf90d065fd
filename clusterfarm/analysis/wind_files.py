"""Where one member-year's winds are: path templates, variable and dimension names.

Standard library only: the manager lists a run's input files (provenance, the results
ledger in local mode) without loading numpy or netCDF4; only reading the winds
(:mod:`.winds`) needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clusterfarm.errors import SettingsError


@dataclass(frozen=True)
class WindSource:
    """Where the winds are: path templates, variable, dimension names and the level."""

    u_path: str = "{year}/u850_{year}.nc"
    v_path: str = "{year}/v850_{year}.nc"
    u_var: str = "u850"
    v_var: str = "v850"
    time_dim: str = "time"
    member_dim: str = "member"
    lat_dim: str = "lat"
    lon_dim: str = "lon"
    level_dim: str = "level"
    level: float | None = None


def wind_paths(
    data_dir: str | Path, year: int, member: int, source: WindSource
) -> tuple[Path, Path]:
    """The u and v files that one year and member are read from."""
    return (
        _resolve(data_dir, source.u_path, year, member),
        _resolve(data_dir, source.v_path, year, member),
    )


def _resolve(data_dir: str | Path, template: str, year: int, member: int) -> Path:
    try:
        return Path(data_dir) / template.format(year=year, member=member)
    except (KeyError, ValueError, IndexError) as exc:
        raise SettingsError(
            f"path template {template!r} is invalid ({exc!r}); use only {{year}} and {{member}}"
        ) from exc
