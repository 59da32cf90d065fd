"""The wire's messages: what each end accepts, and that packing loses nothing."""

from __future__ import annotations

import math

import pytest

from clusterfarm.wire.protocol import (
    ErrorKind,
    JoinAnswer,
    ProtocolError,
    RunSpec,
    TaskRef,
    batch_cells,
    complete,
    failed,
    pack_answers,
    pack_cells,
    parse_answers,
)

SPEC = RunSpec("r1", "/data", "/results", 30.0, 60.0, (0, 1), {"noop": TaskRef("1", {})})


def test_a_batch_of_answers_survives_packing_whatever_it_holds():
    usage = (1795.5, 0.25, 123_000_000, 10, 20, None, 4096)
    answers = [
        complete(0.001),
        complete(2.5, usage, "/r/x.nc", "abc", "inputs-1", {"n_tracks": 3}),
        failed(ErrorKind.TASK, "RuntimeError: boom\nwith a second line", 0.5, usage),
        failed(ErrorKind.TIMEOUT, "too slow", 30.0),
    ]
    back = parse_answers(pack_answers([a.to_wire() for a in answers]), 4)
    assert [a.status for a in back] == ["+", "+", "F", "T"]
    assert back[1].output == "/r/x.nc" and back[1].summary == {"n_tracks": 3}
    assert back[1].usage == usage and back[0].usage is None
    assert (
        back[2].kind is ErrorKind.TASK and back[2].error == "RuntimeError: boom with a second line"
    )
    assert math.isclose(back[3].elapsed, 30.0)


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ([("+", 0.1, None)], "a batch answer is (statuses, figures, details)"),
        (("++", "0.1" + " -" * 7, {}), "2 answers for 1 cells"),
        (("+", "0.1 - -", {}), "figures for 1 cells"),
        (("+", "abc" + " -" * 7, {}), "elapsed must be a number"),
        (("?", "0.1" + " -" * 7, {}), "answer status must be one of"),
        (("F", "0.1" + " -" * 7, {0: ["no-such-kind", "x"]}), "unknown error kind"),
        (("F", "0.1" + " -" * 7, {}), "a failure answer has 5 fields"),
        (("+", "0.1 1 x 3 - - - -", {}), "usage must be numbers"),
        (("+", "-1" + " -" * 7, {}), "elapsed must be a number of seconds"),
        (("+", "0.1" + " -" * 7, {0: "not a list"}), "details of cell 0 must be a list"),
        (
            ("+", "0.1" + " -" * 7, {0: [None, None, None, {"a": [1.0, float("inf")]}]}),
            "summary holds a number that is not finite (['a'][1])",
        ),
    ],
)
def test_a_malformed_batch_answer_is_refused_with_what_is_wrong(raw, complaint):
    with pytest.raises(ProtocolError) as refused:
        parse_answers(raw, 1)
    assert complaint in str(refused.value)


def test_cells_travel_packed_and_are_checked_on_arrival():
    cells = [(2000, 0, 1), (2001, -1, 2)]
    assert batch_cells(pack_cells(cells)) == cells
    assert batch_cells([[2000, 3]]) == [(2000, 3, 0)]
    for bad in ("", "2000 x 1", [], [[2000, -2, 1]], [[2000, 0, True]], "1;" * 5000):
        with pytest.raises(ProtocolError):
            batch_cells(bad)


def test_a_run_spec_round_trips_and_a_malformed_one_is_refused():
    assert RunSpec.from_wire(SPEC.to_wire()) == SPEC
    for change in (
        {"timeout": math.inf},
        {"run_id": ""},
        {"tasks": {"noop": "1"}},
        {"members": [0, 1]},
        {"members": "0-x"},
    ):
        with pytest.raises(ProtocolError):
            RunSpec.from_wire({**SPEC.to_wire(), **change})


def test_a_join_answer_says_which_of_the_runs_tasks_a_worker_lacks():
    spec = RunSpec("r", "/d", "/r", 1.0, 2.0, (0,), {"a": TaskRef("1"), "b": TaskRef("2")})
    answer = JoinAnswer.from_wire(
        {"worker": "w", "host": "h", "version": "0.1.0", "tasks": {"b": "1"}}
    )
    assert answer.missing(spec) == {
        "a": "no task 'a' (a tasks.modules plugin missing there?)",
        "b": "b version 1, the run needs 2",
    }


def test_error_kinds_say_what_counts_as_an_attempt_and_what_is_retried():
    assert ErrorKind.TASK.is_attempt and ErrorKind.LOST.is_attempt
    assert not ErrorKind.RESOURCE.is_attempt and not ErrorKind.DRAINING.is_attempt
    assert not ErrorKind.INPUT.retried and ErrorKind.TIMEOUT.retried
    assert ErrorKind.RESOURCE.host_fault and not ErrorKind.INPUT.host_fault
