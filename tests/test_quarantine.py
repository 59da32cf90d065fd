"""Host quarantine: a host that keeps failing rests a while."""

from clusterfarm.manager.quarantine import HostQuarantine


def test_host_rests_after_a_streak_of_failures_and_comes_back():
    quarantine = HostQuarantine(threshold=3, rest=60)
    assert not quarantine.record("a", False, "task", 0)
    assert not quarantine.record("a", False, "crash", 1)
    assert quarantine.record("a", False, "timeout", 2)
    assert quarantine.is_resting("a", 30) and not quarantine.is_resting("b", 30)
    assert quarantine.resting(30) == {"a": 62}
    assert not quarantine.is_resting("a", 63)


def test_a_success_or_an_input_error_breaks_the_streak():
    quarantine = HostQuarantine(threshold=2, rest=60)
    quarantine.record("a", False, "task", 0)
    quarantine.record("a", True, None, 1)
    assert not quarantine.record("a", False, "task", 2)
    assert not quarantine.record("a", False, "input", 3)  # the data's fault, not the host's
    assert quarantine.record("a", False, "lost", 4)
