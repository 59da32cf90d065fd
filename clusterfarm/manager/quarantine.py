"""Host quarantine: a host whose workers keep failing tasks is rested a while.

A host that fails ``threshold`` tasks in a row (failures, timeouts, lost workers; not input
errors, which are the data's fault) is quarantined for ``rest`` seconds; its workers take no
cells meanwhile. Its first success ends the count. Pure logic, no clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clusterfarm.wire.protocol import ErrorKind


@dataclass
class HostQuarantine:
    """Counts consecutive failures per host and says which hosts are resting."""

    threshold: int = 5
    rest: float = 60.0
    _streak: dict[str, int] = field(default_factory=dict)
    _until: dict[str, float] = field(default_factory=dict)

    def record(
        self, host: str, ok: bool, error_kind: str | None, now: float, may_rest: bool = True
    ) -> bool:
        """Record one task outcome on ``host``; True if this put the host in quarantine.

        ``may_rest`` is False when no other host could take over: then the host keeps working.
        """
        if ok:
            self._streak[host] = 0
            return False
        if error_kind is None or not ErrorKind(error_kind).host_fault:
            return False
        self._streak[host] = self._streak.get(host, 0) + 1
        if may_rest and self._streak[host] >= self.threshold and not self.is_resting(host, now):
            self._until[host] = now + self.rest
            self._streak[host] = 0
            return True
        return False

    def is_resting(self, host: str, now: float) -> bool:
        """True while ``host`` is quarantined."""
        return self._until.get(host, 0.0) > now

    def resting(self, now: float) -> dict[str, float]:
        """The quarantined hosts and until when."""
        return {host: until for host, until in self._until.items() if until > now}
