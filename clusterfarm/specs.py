"""Parse year and member specs such as ``2005``, ``2000-2012`` or ``2000,2003,2005-2007``."""

from __future__ import annotations

from clusterfarm.errors import UsageError


def parse_spec(spec: str | int, what: str = "year") -> list[int]:
    """Return the sorted distinct numbers a spec names; malformed specs raise UsageError."""
    text = str(spec).strip()
    if not text:
        raise UsageError(f"empty {what} spec; give e.g. 2000-2012 or 2000,2003,2005-2007")
    numbers: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        first, sep, last = part.partition("-")
        try:
            start = int(first)
            stop = int(last) if sep else start
        except ValueError:
            raise UsageError(
                f"{what} spec {text!r}: {part!r} is not a number or range like 2000-2012"
            ) from None
        if start < 0 or stop < 0:
            raise UsageError(f"{what} spec {text!r}: {part!r} is negative")
        if stop < start:
            raise UsageError(
                f"{what} spec {text!r}: range {part!r} is reversed; write {stop}-{start}"
            )
        numbers.update(range(start, stop + 1))
    return sorted(numbers)


def format_spec(numbers: list[int]) -> str:
    """Return the shortest spec naming ``numbers`` (the inverse of :func:`parse_spec`)."""
    parts: list[str] = []
    values = sorted(set(numbers))
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(parts)
