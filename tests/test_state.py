"""The run state database: resume rules, the writer, the report."""

import threading
import time

from clusterfarm.record.ledger import Ledger
from clusterfarm.record.schedule import Status, TaskSchedule
from clusterfarm.record.state import RunState, connect
from clusterfarm.record.state_writer import StateWriter, end_row, start_rows
from clusterfarm.record.status import read_status
from clusterfarm.tasks.files import check_result, input_identity
from clusterfarm.wire.protocol import ErrorKind

LEDGER = Ledger({"noop": "1"}, {"noop": "abc"}, lambda cell: cell.output)


class Shown:
    """The display's side of the writer: what it was shown, in order."""

    def __init__(self, on_saved=lambda changes: None):
        self.on_saved = on_saved

    def cells_saved(self, changes):
        self.on_saved(changes)


def writer_for(state, on_saved=lambda changes: None):
    return StateWriter(state.db, state.path, Shown(on_saved))


def fresh(tmp_path, members=range(3)):
    return TaskSchedule([2000], members, ["noop"], retries=1), RunState(tmp_path)


def finish_all(schedule, state, ledger=LEDGER, output=None):
    rows = []
    while (cell := schedule.get_next_outstanding()) is not None:
        schedule.start(cell, "w", "h", 1.0)
        schedule.complete(cell, output, {"n": cell.member}, 0.5, 2.0, inputs="inputs-1")
        rows.append(end_row(cell))
    writer = writer_for(state)
    for row in rows:
        writer.put_ends([row], [])
    writer.close()


def test_complete_cells_are_skipped_on_resume(tmp_path):
    schedule, state = fresh(tmp_path)
    assert state.load(schedule, LEDGER).kept == []
    finish_all(schedule, state)
    again = TaskSchedule([2000], range(3), ["noop"])
    assert len(RunState(tmp_path).load(again, LEDGER).kept) == 3
    assert again.get_progress_for_year(2000) == "2000: +++"
    assert again.cell("noop", 2000, 1).summary == {"n": 1}


def test_changed_version_or_params_recomputes(tmp_path):
    schedule, state = fresh(tmp_path)
    state.load(schedule, LEDGER)
    finish_all(schedule, state)
    for ledger, reason in (
        (
            Ledger({"noop": "2"}, {"noop": "abc"}, LEDGER.output_path),
            "task version changed (1 -> 2)",
        ),
        (Ledger({"noop": "1"}, {"noop": "x"}, LEDGER.output_path), "parameters changed"),
    ):
        again = TaskSchedule([2000], range(3), ["noop"])
        plan = RunState(tmp_path).load(again, ledger)
        assert plan.kept == [] and {r for _, r in plan.stale} == {reason}
        assert again.get_progress_for_year(2000) == "2000: ---"
        original = TaskSchedule([2000], range(3), ["noop"])
        RunState(tmp_path).load(original, LEDGER)  # complete again under the original ledger
        finish_all(original, RunState(tmp_path))


def test_missing_or_changed_output_recomputes(tmp_path):
    from clusterfarm.tasks.files import file_checksum

    output = tmp_path / "x.nc"
    output.write_text("tracks")
    checksum = file_checksum(output)
    assert check_result([], None, str(output), checksum) is None
    output.write_text("edited by hand")
    assert check_result([], None, str(output), checksum) == (
        f"output {output} changed since it was written"
    )
    output.unlink()
    assert check_result([], None, str(output), checksum) == f"output {output} is missing"


def test_changed_inputs_recompute(tmp_path):
    data = tmp_path / "u.nc"
    data.write_text("winds")
    identity = input_identity([data])
    assert check_result([data], identity, None, None) is None
    data.write_text("other winds")
    assert check_result([data], identity, None, None) == "input files changed"


def test_output_in_another_results_dir_recomputes(tmp_path):
    schedule, state = fresh(tmp_path, members=[0])
    state.load(schedule, LEDGER)
    finish_all(schedule, state, output=str(tmp_path / "old" / "x.nc"))
    moved = Ledger(LEDGER.versions, LEDGER.params_hashes, lambda cell: "/new/x.nc")
    plan = RunState(tmp_path).load(TaskSchedule([2000], [0], ["noop"]), moved)
    assert [reason for _, reason in plan.stale] == [
        f"results_dir changed (its output was {tmp_path / 'old' / 'x.nc'})"
    ]


def test_stale_working_and_failed_cells_become_outstanding_with_fresh_attempts(tmp_path):
    schedule, state = fresh(tmp_path, members=range(2))
    state.load(schedule, LEDGER)
    working, failed = schedule.get_next_outstanding(), schedule.get_next_outstanding()
    schedule.start(working, "w", "h", 1.0)
    schedule.start(failed, "w", "h", 1.0)
    schedule.fail(failed, Status.FAILURE, "boom", ErrorKind.INPUT, 2.0)
    writer = writer_for(state)
    writer.put_start(start_rows([working]))
    writer.put_ends([end_row(failed)], [])
    writer.close()
    assert state.db.execute("SELECT group_concat(status, '') FROM cells").fetchone()[0] == "WF"
    again = TaskSchedule([2000], range(2), ["noop"])
    RunState(tmp_path).load(again, LEDGER)
    rows = state.db.execute("SELECT status, attempts FROM cells ORDER BY member").fetchall()
    assert rows == [("-", 0), ("-", 0)]


def test_writer_hands_on_only_what_it_committed(tmp_path):
    schedule, state = fresh(tmp_path)
    state.load(schedule, LEDGER)
    seen_in_db = []

    def on_saved(changes):
        # by the time we hear of a change, another connection can read it
        reader = connect(tmp_path, create=False)
        for change in changes:
            stored = reader.execute(
                "SELECT status FROM cells WHERE task=? AND year=? AND member=?",
                (change.task, change.year, change.member),
            ).fetchone()[0]
            seen_in_db.append(stored == change.status)
        reader.close()

    writer = writer_for(state, on_saved)
    cell = schedule.get_next_outstanding()
    schedule.start(cell, "w", "h", 1.0)
    writer.put_start(start_rows([cell]))
    writer.close()
    assert seen_in_db == [True]


def test_writer_keeps_up_with_many_threads(tmp_path):
    schedule, state = fresh(tmp_path, members=range(2000))
    state.load(schedule, LEDGER)
    committed = []
    writer = writer_for(state, committed.extend)
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                cell = schedule.get_next_outstanding()
                if cell is None:
                    return
                schedule.start(cell, "w", "h", 1.0)
                writer.put_start(start_rows([cell]))
                schedule.complete(cell, None, None, 0.0, 1.0)
                writer.put_ends([end_row(cell)], [])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    count = state.db.execute("SELECT count(*) FROM cells WHERE status='+'").fetchone()[0]
    assert count == 2000
    assert {change.status for change in committed[-10:]} == {"+"}


def test_report_reads_the_latest_invocation(tmp_path):
    schedule, state = fresh(tmp_path, members=range(3))
    schedule.retries = 0
    state.load(schedule, LEDGER)
    invocation = state.begin_invocation(["noop"], "2000", "0-2")
    cell = schedule.get_next_outstanding()
    schedule.start(cell, "w", "h", 1.0)
    schedule.fail(cell, Status.TIMEOUT, "too slow", ErrorKind.TIMEOUT, 2.0)
    writer = writer_for(state)
    writer.put_ends([end_row(cell)], [])
    writer.close()
    state.end_invocation(invocation, ran=1, skipped=0, state="finished", exit_code=1)
    report = read_status(state.db)
    assert report.to_json()["progress"] == {"noop": {"2000": "T--"}}
    assert report.failures == [
        {
            "task": "noop",
            "year": 2000,
            "member": 0,
            "status": "T",
            "attempts": 1,
            "error_kind": "timeout",
            "error": "too slow",
        }
    ]
    assert report.to_json()["outstanding"] == 2


def test_writer_keeps_saving_when_showing_fails(tmp_path):
    schedule, state = fresh(tmp_path, members=range(2))
    state.load(schedule, LEDGER)

    def broken_view(changes):
        raise KeyError("a view bug")

    writer = writer_for(state, broken_view)
    for cell in (schedule.get_next_outstanding(), schedule.get_next_outstanding()):
        schedule.start(cell, "w", "h", 1.0)
        writer.put_start(start_rows([cell]))
        time.sleep(0.05)  # separate commits: the second comes after the first one's failure
    writer.close()
    assert state.db.execute("SELECT group_concat(status, '') FROM cells").fetchone()[0] == "WW"


def test_report_strings_each_year_in_member_order_whatever_the_insert_order(tmp_path):
    import random

    state = RunState(tmp_path)
    members = [0, 2, 3, 7, 11]
    statuses = {(y, m): random.choice("-W+FT") for y in (2000, 2001, 2003) for m in range(12)}
    rows = [("noop", y, m, s) for (y, m), s in statuses.items()]
    random.shuffle(rows)
    del rows[:3]  # some cells never made it into the table: outstanding
    with state.db:
        state.db.executemany(
            "INSERT INTO cells (task, year, member, status) VALUES (?,?,?,?)", rows
        )
    state.begin_invocation(["noop"], "2000-2001,2003", "0,2-3,7,11")
    stored = {(y, m): s for _, y, m, s in rows}
    expected = {
        str(y): "".join(stored.get((y, m), "-") for m in members) for y in (2000, 2001, 2003)
    }
    assert read_status(state.db).to_json()["progress"] == {"noop": expected}


def test_an_invocation_records_its_manager_and_its_heartbeat(tmp_path, monkeypatch):
    import os
    import socket

    from clusterfarm.record.manager_heartbeat import ManagerHeartbeat

    monkeypatch.chdir(tmp_path)
    schedule, state = fresh(tmp_path / "run")
    state.load(schedule, LEDGER)
    invocation = state.begin_invocation(["noop"], "2000", "0-2")
    query = "SELECT pid, host, cwd, heartbeat FROM invocations WHERE id=?"
    pid, host, cwd, first = state.db.execute(query, (invocation,)).fetchone()
    assert (pid, host, cwd) == (os.getpid(), socket.gethostname(), str(tmp_path))
    with ManagerHeartbeat(tmp_path / "run", invocation, interval=0.05):
        time.sleep(0.3)
    assert state.db.execute(query, (invocation,)).fetchone()[3] > first
    report = read_status(state.db)
    assert report.state == "running" and report.gone_since is None  # this process: alive
    state.close()


def test_an_older_run_dir_gains_the_new_columns_in_place(tmp_path):
    import sqlite3

    old = sqlite3.connect(tmp_path / "state.sqlite")
    old.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '2');"
        "CREATE TABLE cells (task TEXT, year INTEGER, member INTEGER, status TEXT, "
        "attempts INTEGER, error TEXT, error_kind TEXT, PRIMARY KEY (task, year, member));"
        "CREATE TABLE invocations (id INTEGER PRIMARY KEY, pid INTEGER, started REAL, "
        "finished REAL, tasks TEXT, years TEXT, members TEXT, ran INTEGER NOT NULL DEFAULT 0, "
        "skipped INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'running', "
        "exit_code INTEGER);"
        "INSERT INTO invocations (pid, started, tasks, years, members) "
        "VALUES (1, 0, 'noop', '2000', '0');"
    )
    old.commit()
    old.close()
    from clusterfarm.record.state import connect_read_only

    reader = connect_read_only(tmp_path)  # status reads it as it is: no migration, no write
    assert read_status(reader).cwd is None
    reader.close()
    db = connect(tmp_path)
    columns = {row[1] for row in db.execute("PRAGMA table_info(invocations)")}
    assert {"host", "cwd", "heartbeat", "year_tasks"} <= columns
    db.close()


def test_a_group_of_any_size_writes_each_cell_once_and_touches_no_other(tmp_path):
    """Rows go in statements of many rows (sizes 256, 64, 16, 4, 1): every count adds up,
    a plain end clears what an earlier failed try left, and no cell outside is written."""
    schedule, state = fresh(tmp_path, members=range(1000))
    state.load(schedule, LEDGER)
    cells = []
    while (cell := schedule.get_next_outstanding()) is not None:
        cells.append(cell)
    first = cells[0]
    schedule.start(first, "w", "h", 1.0)
    schedule.fail(first, Status.FAILURE, "boom", ErrorKind.TASK, 1.5)  # an earlier try
    writer = writer_for(state)
    writer.put_ends([end_row(first)], [])
    writer.close()
    done = 0
    for size in (0, 1, 5, 300, 341):  # 0 to 341 rows in one group: every statement size
        group = cells[done : done + size]
        done += size
        for cell in group:
            schedule.start(cell, "w", "h", 1.0)  # the first one: its second try
            schedule.complete(cell, None, None, 0.5, 2.0)
        writer = writer_for(state)
        writer.put_ends([end_row(cell) for cell in group], [])
        writer.close()
    rows = state.db.execute("SELECT member, status, error, worker FROM cells").fetchall()
    assert len(rows) == 1000
    written = {member for member, status, _, _ in rows if status == "+"}
    assert written == {cell.member for cell in cells[:done]}
    assert all(status == "-" and worker is None for m, status, _, worker in rows if m >= done)
    assert all(error is None for _, _, error, _ in rows)  # the failed try's error is gone
