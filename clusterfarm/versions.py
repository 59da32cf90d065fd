"""Which versions of Python and of the key libraries this process runs (for provenance).

Asked of every worker (``PyroWorker.info()["versions"]``) and of the manager, and kept in
``provenance.json``. Read once per process from the ``name-version.dist-info`` folder names on
``sys.path``: reading every package's metadata would cost a worker tens of milliseconds.
"""

from __future__ import annotations

import functools
import os
import platform
import sys

LIBRARIES = (
    "clusterfarm",
    "Pyro5",
    "serpent",
    "numpy",
    "netCDF4",
    "cftime",
    "paramiko",
    "cryptography",
    "click",
    "matplotlib",
    "xarray",
)


@functools.cache
def library_versions() -> dict[str, str | None]:
    """Python, the platform and the key libraries' versions in this process (None: absent)."""
    installed = _installed()
    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for name in LIBRARIES:
        versions[name] = installed.get(_normal(name)) or _metadata_version(name)
    return versions


def _installed() -> dict[str, str]:
    """Name -> version from the ``name-version.dist-info`` folders on ``sys.path``.

    A listing per folder: reading every package's metadata would cost a worker tens of ms.
    """
    found: dict[str, str] = {}
    for folder in sys.path:
        try:
            entries = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".dist-info"):
                name, _, version = entry[: -len(".dist-info")].partition("-")
                found.setdefault(_normal(name), version)
    return found


def _metadata_version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _normal(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")
