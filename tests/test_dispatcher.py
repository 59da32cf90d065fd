"""The dispatch thread's rule for letting replies gather before it serves them."""

from __future__ import annotations

import selectors
import threading
from collections.abc import Iterator

import pytest

from clusterfarm.manager.dispatcher import MAX_GATHER, Batch, Dispatcher, Lane, WorkerLink
from clusterfarm.wire.nameserver import WorkerEntry


class Host:
    """Just enough of a manager for the dispatcher's constructor and its gathering rule."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.more_cells_than_workers = True

    def backlog(self) -> bool:
        return self.more_cells_than_workers


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def dispatcher(host: Host) -> Iterator[Dispatcher]:
    made = Dispatcher(host)  # type: ignore[arg-type]
    yield made
    made._selector.close()
    made._wake_in.close()
    made._wake_out.close()


def reply_from(*queued: float) -> tuple[selectors.SelectorKey, int]:
    """A reply as the selector reports it, from a worker whose next calls, queued behind the
    one answered, should run ``queued`` seconds each."""
    link = WorkerLink(WorkerEntry("clusterfarm.worker.a", "PYRO:a@h:1", "h", None))
    answered = Batch("noop", [], [], 0.5)
    link.inflight = [answered, *(Batch("noop", [], [], seconds) for seconds in queued)]
    lane = Lane(link, 0, batch=answered)
    return selectors.SelectorKey(None, 7, selectors.EVENT_READ, lane), selectors.EVENT_READ


WAKE_UP = selectors.SelectorKey(None, 3, selectors.EVENT_READ, None), selectors.EVENT_READ


def test_replies_from_workers_with_their_next_call_queued_wait_a_little(
    dispatcher: Dispatcher,
) -> None:
    assert dispatcher._gather_for([reply_from(1.0), reply_from(2.0)]) == MAX_GATHER
    # a quarter of the shortest call that runs meanwhile
    assert dispatcher._gather_for([reply_from(1.0), reply_from(0.2)]) == pytest.approx(0.05)


def test_a_reply_from_a_worker_left_idle_is_served_at_once(dispatcher: Dispatcher) -> None:
    assert dispatcher._gather_for([reply_from(1.0), reply_from()]) == 0.0


def test_nothing_waits_at_the_end_of_a_run_or_behind_a_wake_up(
    dispatcher: Dispatcher, host: Host
) -> None:
    assert dispatcher._gather_for([reply_from(1.0), WAKE_UP]) == 0.0
    host.more_cells_than_workers = False  # the tail: idle workers would wait for the rest
    assert dispatcher._gather_for([reply_from(1.0)]) == 0.0


def test_nothing_waits_for_a_call_of_unknown_length(dispatcher: Dispatcher) -> None:
    assert dispatcher._gather_for([reply_from(0.0)]) == 0.0  # the task's first cells
