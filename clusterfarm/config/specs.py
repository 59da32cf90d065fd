"""Parse year and member specs such as ``2005``, ``2000-2012`` or ``2000,2003,2005-2007``.

Numbers are ASCII digits only (no signs, ``_`` or other scripts' digits), and they are kept to
what a climate run can mean: years 0 to :data:`MAX_YEAR` (model years such as 0001 or 0850
are fine), members 0 to :data:`MAX_MEMBER`. The limits keep a typo such as ``0-99999999``
from filling the machine's memory before anything else can complain.
"""

from __future__ import annotations

import re

from clusterfarm.errors import UsageError

MAX_YEAR = 9999
MAX_MEMBER = 999  # result files are named m000..m999
_LIMITS = {"year": MAX_YEAR, "member": MAX_MEMBER}
_PART = re.compile(r"([0-9]+)(?:-([0-9]+))?", re.ASCII)


def spec_limit(what: str) -> int:
    """The largest number a ``what`` (``"year"`` or ``"member"``) spec may name."""
    return _LIMITS.get(what, MAX_YEAR)


def parse_spec(spec: str | int, what: str = "year") -> list[int]:
    """Return the sorted distinct numbers a spec names; malformed specs raise UsageError."""
    text = str(spec).strip()
    if not text:
        raise UsageError(f"empty {what} spec; give e.g. 2000-2012 or 2000,2003,2005-2007")
    numbers: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        match = _PART.fullmatch(part)
        if match is None:
            raise UsageError(
                f"{what} spec {_short(text)!r}: {_short(part)!r} is not a number or range like "
                "2000-2012 (ASCII digits, one '-' between two numbers)"
            )
        start = _number(match.group(1), what, text)
        stop = start if match.group(2) is None else _number(match.group(2), what, text)
        if stop < start:
            raise UsageError(
                f"{what} spec {_short(text)!r}: range {part!r} is reversed; write {stop}-{start}"
            )
        numbers.update(range(start, stop + 1))
    return sorted(numbers)


def _number(digits: str, what: str, text: str) -> int:
    """The value of ``digits``; above the limit of ``what`` is a UsageError."""
    limit = spec_limit(what)
    significant = digits.lstrip("0") or "0"
    # lengths first: int() of a huge string is slow, and refused past 4300 digits
    if len(significant) > len(str(limit)) or int(significant) > limit:
        raise UsageError(
            f"{what} spec {_short(text)!r}: {_short(digits)} is out of range; "
            f"{what}s go from 0 to {limit}"
        )
    return int(significant)


def _short(text: str, width: int = 40) -> str:
    """``text`` cut to ``width`` characters for a message."""
    return text if len(text) <= width else text[: width - 3] + "..."


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
