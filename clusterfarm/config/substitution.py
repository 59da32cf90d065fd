"""Shell-like ``${VAR}`` substitution in settings strings.

``${VAR}`` is the variable's value (unset is an error); ``${VAR:-default}`` is the default
when ``VAR`` is unset *or empty*, as in the shell, and the default may itself hold
substitutions (``${DATA:-${HOME}/data}``), expanded only when it is used. ``$${`` writes a
literal ``${``. Any other ``$`` is kept as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from clusterfarm.errors import SettingsError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def substitute(text: str, environ: Mapping[str, str]) -> str:
    """Return ``text`` with every substitution expanded from ``environ``.

    A malformed substitution or an unset variable without a default raises SettingsError
    whose message the caller prefixes with the file and key.
    """
    return _Expansion(text, environ).run()


class _Expansion:
    """One pass over one string; ``used=False`` parses a default that is not used."""

    def __init__(self, text: str, environ: Mapping[str, str]) -> None:
        self.text, self.environ, self.i = text, environ, 0

    def run(self) -> str:
        return self._until(closing=False, used=True)

    def _until(self, closing: bool, used: bool) -> str:
        """Expand up to the end, or with ``closing`` up to the ``}`` that ends a default."""
        text, out = self.text, list[str]()
        while self.i < len(text):
            if closing and text[self.i] == "}":
                return "".join(out)
            if text.startswith("$${", self.i):
                out.append("${")
                self.i += 3
            elif text.startswith("${", self.i):
                self.i += 2
                out.append(self._substitution(used))
            else:
                out.append(text[self.i])
                self.i += 1
        if closing:
            raise SettingsError(f"unterminated ${{...}} in {text!r}; write $${{ for a literal ${{")
        return "".join(out)

    def _substitution(self, used: bool) -> str:
        """Expand one ``${...}`` whose name starts at ``self.i``."""
        text = self.text
        match = _NAME.match(text, self.i)
        if match is None:
            raise SettingsError(
                f"bad substitution in {text!r}: ${{ must be followed by a variable name; "
                "write $${ for a literal ${"
            )
        name, self.i = match.group(), match.end()
        value = self.environ.get(name)
        if text.startswith("}", self.i):
            self.i += 1
            if value is None and used:
                raise SettingsError(
                    f"environment variable {name} is not set "
                    f"(set it, or write ${{{name}:-default}})"
                )
            return value or ""
        if not text.startswith(":-", self.i):
            raise SettingsError(
                f"bad substitution in {text!r}: after ${{{name} comes '}}' or ':-default}}'"
            )
        self.i += 2
        default = self._until(closing=True, used=used and not value)
        self.i += 1
        return value or default
