"""The task schedule: statuses, next outstanding, retries, progress strings."""

import pytest

from clusterfarm.record.schedule import Status, TaskSchedule


def make(years=(2000, 2001), members=range(4), tasks=("vort_track",), retries=2):
    return TaskSchedule(years, members, tasks, retries)


def test_new_schedule_is_all_outstanding():
    schedule = make()
    assert schedule.get_progress(include_year=True) == "2000: ----\n2001: ----"
    assert schedule.counts[Status.OUTSTANDING] == 8
    assert not schedule.is_finished


def test_next_outstanding_goes_in_year_and_member_order_and_never_repeats():
    schedule = make()
    seen = []
    while (cell := schedule.get_next_outstanding()) is not None:
        schedule.start(cell, "w", "h", 0.0)
        seen.append((cell.year, cell.member))
    assert seen == [(y, m) for y in (2000, 2001) for m in range(4)]
    assert schedule.get_progress_for_year(2000) == "2000: WWWW"


def test_next_outstanding_costs_the_same_however_many_cells_are_done():
    # after most cells are complete, the next outstanding is found without a scan:
    # the queue only ever holds cells that were outstanding when queued
    schedule = make(years=range(1900, 2000), members=range(50))
    for _ in range(4999):
        cell = schedule.get_next_outstanding()
        schedule.start(cell, "w", "h", 0.0)
        schedule.complete(cell, None, None, 0.0, 0.0)
    assert len(schedule._queue) == 1
    assert schedule.get_next_outstanding().key == ("vort_track", 1999, 49)


def test_progress_strings_show_every_status():
    schedule = make(years=[2001], members=range(6), retries=0)
    cells = [schedule.get_next_outstanding() for _ in range(5)]
    for cell in cells:
        schedule.start(cell, "w", "h", 0.0)
    schedule.complete(cells[0], None, None, 1.0, 1.0)
    schedule.fail(cells[1], Status.FAILURE, "boom", "task", 1.0)
    schedule.fail(cells[2], Status.TIMEOUT, "slow", "timeout", 1.0)
    assert schedule.get_progress_for_year(2001) == "2001: +FTWW-"
    assert schedule.get_progress_for_year(2001, include_year=False) == "+FTWW-"
    assert [c.member for c in schedule.failures()] == [1, 2]


def test_failed_cell_is_retried_until_attempts_run_out():
    schedule = make(years=[2000], members=[0], retries=2)
    for attempt in (1, 2, 3):
        cell = schedule.get_next_outstanding()
        assert cell is not None, f"attempt {attempt} was not offered"
        schedule.start(cell, f"w{attempt}", "h", 0.0)
        requeued = schedule.fail(cell, Status.FAILURE, "boom", "task", 0.0)
        assert requeued == (attempt < 3)
    assert cell.status is Status.FAILURE and cell.attempts == 3
    assert cell.tried_workers == ["w1", "w2", "w3"]
    assert schedule.get_next_outstanding() is None and schedule.is_finished


def test_input_errors_are_not_retried():
    schedule = make(years=[2000], members=[0], retries=5)
    cell = schedule.get_next_outstanding()
    schedule.start(cell, "w", "h", 0.0)
    assert not schedule.fail(cell, Status.FAILURE, "missing file", "input", 0.0)
    assert cell.status is Status.FAILURE and cell.attempts == 1


def test_requeue_of_a_cancelled_cell_does_not_count_an_attempt():
    schedule = make(years=[2000], members=[0])
    cell = schedule.get_next_outstanding()
    schedule.start(cell, "w", "h", 0.0)
    schedule.requeue(cell)
    assert cell.status is Status.OUTSTANDING and cell.attempts == 0
    assert schedule.get_next_outstanding() is cell


def test_several_tasks_prefix_each_line_with_the_task_name():
    schedule = make(years=[2000], members=range(3), tasks=("vort_track", "year_summary"))
    assert schedule.get_progress_for_year(2000) == ("vort_track 2000: ---\nyear_summary 2000: ---")


def test_print_years_prints_the_progress(capsys):
    make(years=[2000, 2001, 2002], members=range(2)).print_years([2001, 2002])
    assert capsys.readouterr().out == "2001: --\n2002: --\n"


def test_empty_schedule_is_refused():
    with pytest.raises(ValueError):
        TaskSchedule([], [0])


def test_retry_prefers_another_host_then_another_worker():
    schedule = make(years=[2000], members=range(3), retries=3)
    first = schedule.get_next_outstanding()
    schedule.start(first, "a.0", "a", 0.0)
    schedule.fail(first, Status.FAILURE, "boom", "task", 0.0)  # requeued at the end
    # workers on the failing host get fresh cells, not the retry
    assert schedule.take_preferred("a.1", "a").member == 1
    assert schedule.take_preferred("a.0", "a").member == 2
    # the retry waits for a worker on another host
    assert schedule.take_preferred("b.0", "b") is first


def test_retry_still_runs_on_the_same_worker_when_nothing_else_is_left():
    schedule = make(years=[2000], members=[0], retries=1)
    cell = schedule.get_next_outstanding()
    schedule.start(cell, "a.0", "a", 0.0)
    schedule.fail(cell, Status.FAILURE, "boom", "task", 0.0)
    assert schedule.take_preferred("a.0", "a") is cell


def test_cancelled_try_is_forgotten():
    schedule = make(years=[2000], members=[0])
    cell = schedule.get_next_outstanding()
    schedule.start(cell, "a.0", "a", 0.0)
    schedule.requeue(cell)
    assert cell.tried_workers == [] and cell.tried_hosts == [] and cell.attempts == 0


def summary_schedule(years=(2000, 2001), members=range(3), retries=0):
    from clusterfarm.record.schedule import TaskShape

    shapes = {"track": TaskShape(), "summary": TaskShape(per_year=True, after=("track",))}
    return TaskSchedule(years, members, ["track", "summary"], retries, shapes)


def run_all_of(schedule, task, year=None, fail_member=None):
    while (cell := schedule.get_next_outstanding(task)) is not None:
        if year is not None and cell.year != year:
            schedule._queue.appendleft(cell)
            return
        schedule.start(cell, "w", "h", 0.0)
        if cell.member == fail_member:
            schedule.fail(cell, Status.FAILURE, "boom", "task", 0.0)
        else:
            schedule.complete(cell, None, None, 0.0, 0.0)


def test_per_year_task_has_one_cell_per_year_shown_as_one_character():
    schedule = summary_schedule()
    assert schedule.get_progress_for_year(2000) == "track 2000: ---\nsummary 2000: -"
    assert len(schedule) == 2 * 3 + 2


def test_year_summary_becomes_eligible_the_moment_its_year_is_complete():
    schedule = summary_schedule()
    # only tracking is eligible at first
    first = [schedule.get_next_outstanding() for _ in range(6)]
    assert {c.task for c in first} == {"track"} and schedule.get_next_outstanding() is None
    for cell in first:
        schedule.start(cell, "w", "h", 0.0)
    for cell in first[:3]:  # all of 2000, none of 2001
        schedule.complete(cell, None, None, 0.0, 0.0)
    summary_2000 = schedule.get_next_outstanding()
    assert (summary_2000.task, summary_2000.year) == ("summary", 2000)
    assert schedule.get_next_outstanding() is None  # 2001's members are still running


def test_a_failed_member_fails_its_year_summary_with_kind_dependency():
    schedule = summary_schedule()
    run_all_of(schedule, "track", fail_member=1)
    summary = schedule.cell("summary", 2000, -1)
    assert summary.status is Status.FAILURE and summary.error_kind == "dependency"
    assert summary.error == "needs track 2000 m1, which ended F"
    assert summary in schedule.failed_by_dependency
    assert schedule.is_finished


def test_prerequisites_complete_from_an_earlier_run_release_their_dependents():
    schedule = summary_schedule(years=[2000])
    for member in range(3):
        schedule.mark_complete_from_earlier(schedule.cell("track", 2000, member))
    assert schedule.get_next_outstanding() is schedule.cell("summary", 2000, -1)


def test_a_dependency_missing_from_the_run_or_listed_after_is_refused():
    from clusterfarm.errors import UsageError
    from clusterfarm.record.schedule import TaskShape

    with pytest.raises(UsageError, match="run both: --task track,summary"):
        TaskSchedule([2000], [0], ["summary"], shapes={"summary": TaskShape(True, ("track",))})
    with pytest.raises(UsageError, match="list tasks in dependency order"):
        TaskSchedule(
            [2000],
            [0],
            ["summary", "track"],
            shapes={"summary": TaskShape(True, ("track",)), "track": TaskShape()},
        )


def test_per_cell_dependency_waits_for_the_same_member():
    from clusterfarm.record.schedule import TaskShape

    schedule = TaskSchedule(
        [2000], range(2), ["a", "b"], shapes={"a": TaskShape(), "b": TaskShape(after=("a",))}
    )
    a0 = schedule.get_next_outstanding()
    schedule.start(a0, "w", "h", 0.0)
    schedule.complete(a0, None, None, 0.0, 0.0)
    assert schedule.prerequisites(schedule.cell("b", 2000, 0)) == [a0]
    # a released cell goes to the front: finishing work beats starting more
    assert schedule.get_next_outstanding().key == ("b", 2000, 0)
    assert schedule.get_next_outstanding().key == ("a", 2000, 1)
    assert schedule.get_next_outstanding() is None  # b 2000 m1 waits for a 2000 m1
