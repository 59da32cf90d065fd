"""The per-host circuit breaker."""

from clusterfarm.manager.quarantine import HostBreaker


def test_host_rests_after_a_streak_of_failures_and_comes_back():
    breaker = HostBreaker(threshold=3, rest=60)
    assert not breaker.record("a", False, "task", 0)
    assert not breaker.record("a", False, "crash", 1)
    assert breaker.record("a", False, "timeout", 2)
    assert breaker.is_resting("a", 30) and not breaker.is_resting("b", 30)
    assert breaker.resting(30) == {"a": 62}
    assert not breaker.is_resting("a", 63)


def test_a_success_or_an_input_error_breaks_the_streak():
    breaker = HostBreaker(threshold=2, rest=60)
    breaker.record("a", False, "task", 0)
    breaker.record("a", True, None, 1)
    assert not breaker.record("a", False, "task", 2)
    assert not breaker.record("a", False, "input", 3)  # the data's fault, not the host's
    assert breaker.record("a", False, "lost", 4)
