"""The worker daemon, driven the way any Pyro5 client would."""

import os
import signal
import time

import pytest

from clusterfarm.wire.access import Access
from clusterfarm.wire.nameserver import locate
from clusterfarm.wire.protocol import parse_answers
from tests.harness.processes import alive
from tests.harness.secret import ACCESS, SECRET_FILE

RUN = "test-run"


def join(proxy, timeout=30.0, run_id=RUN, tmp="/tmp"):
    """Join the worker to a run, as the manager does: a plain dict on the wire."""
    tasks = {name: ["1", {}] for name in ("noop", "hang", "fail_always")}
    tasks["sleep"] = ["1", {"seconds": 0.01}]
    spec = {
        "run_id": run_id,
        "data_dir": tmp,
        "results_dir": tmp,
        "timeout": timeout,
        "lost_after": 60,
        "members": "0-2,5",
        "tasks": tasks,
        "manager": "the test",
    }
    return proxy.join(spec)


def batch(proxy, task, cells, run_id=RUN, expected=None):
    """Call do_batch and check its packed answers as the manager does."""
    count = expected if expected is not None else len(cells) if isinstance(cells, list) else 1
    return parse_answers(proxy.do_batch(run_id, task, cells), count)


@pytest.fixture
def worker_proxy(nameserver, start_worker):
    """A plain Pyro5 proxy of a real worker, found through the nameserver."""
    start_worker("test.0")
    # written as a user would, as the README shows (a proxy that proves the secret, then calls)
    access = Access(SECRET_FILE.read_text().strip())
    ns = access.proxy(f"PYRO:Pyro.NameServer@{nameserver.host}:{nameserver.port}")
    uri = ns.lookup("clusterfarm.worker.test.0")
    with access.proxy(uri) as proxy:
        proxy._pyroTimeout = 30
        yield proxy


def test_plain_pyro_client_finds_worker_and_runs_noop(worker_proxy):
    answer = worker_proxy.do_work(2000, 0, "noop")
    assert answer["status"] == "complete"
    assert (answer["year"], answer["member"], answer["task"]) == (2000, 0, "noop")
    assert answer["worker"] == "clusterfarm.worker.test.0"
    for key in ("host", "elapsed", "output", "summary"):
        assert key in answer


def test_unknown_task_is_refused_and_daemon_keeps_serving(worker_proxy):
    answer = worker_proxy.do_work(2000, 0, "no_such_task")
    assert answer["status"] == "failure" and answer["error_kind"] == "input"
    assert "unknown task 'no_such_task'" in answer["error"]
    assert worker_proxy.do_work(2000, 1, "noop")["status"] == "complete"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ((2000, "x", "noop"), "member must be"),
        ((-1, 0, "noop"), "year must be"),
        ((2000, 0, 5), "task must be"),
        ((2000, 0, "sleep", {"secs": 1}), "unknown parameter"),
    ],
)
def test_malformed_calls_are_refused(worker_proxy, args, complaint):
    answer = worker_proxy.do_work(*args)
    assert answer["status"] == "failure" and complaint in answer["error"]


def test_failing_task_reports_error_and_daemon_keeps_serving(worker_proxy):
    answer = worker_proxy.do_work(2001, 3, "fail_always")
    assert answer["status"] == "failure" and answer["error_kind"] == "task"
    assert answer["error"] == "RuntimeError: boom in 2001 m3"
    assert worker_proxy.do_work(2000, 0, "noop")["status"] == "complete"


def test_input_error_has_kind_input(worker_proxy):
    answer = worker_proxy.do_work(2001, 3, "bad_input")
    assert answer["error_kind"] == "input" and "missing_2001.nc" in answer["error"]


def test_crashing_task_process_is_replaced(worker_proxy):
    before = worker_proxy.info()["task_pid"]
    answer = worker_proxy.do_work(2000, 0, "crash")
    assert answer["status"] == "failure" and answer["error_kind"] == "crash"
    assert "exit code 3" in answer["error"]
    assert worker_proxy.do_work(2000, 0, "noop")["status"] == "complete"
    assert worker_proxy.info()["task_pid"] not in (None, before)


@pytest.mark.slow
def test_timeout_kills_the_task_not_the_daemon(worker_proxy):
    join(worker_proxy, timeout=0.5)
    started = time.monotonic()
    (answer,) = batch(worker_proxy, "hang", [[2000, 0, 1]])
    assert answer.status == "T" and answer.kind == "timeout"
    assert time.monotonic() - started < 5
    join(worker_proxy, timeout=30)
    assert batch(worker_proxy, "noop", [[2000, 1, 1]])[0].complete


def test_cancel_stops_the_running_task(worker_proxy, nameserver):
    import threading

    uri = worker_proxy._pyroUri
    answers = []

    def call():
        try:
            answers.append(_call(uri, "hang"))
        except BaseException as e:
            answers.append(repr(e))

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 10
    while worker_proxy.info()["state"] != "busy":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    busy = worker_proxy.do_work(2000, 1, "noop")
    assert busy["error_kind"] == "busy"
    assert worker_proxy.cancel() is True
    thread.join(10)
    assert answers and answers[0]["error_kind"] == "cancelled", answers
    assert worker_proxy.info()["state"] == "idle"


def _call(uri, task):
    with ACCESS.proxy(uri) as proxy:
        return proxy.do_work(2000, 0, task)


def test_task_process_dies_with_a_killed_daemon(start_worker, nameserver):
    process = start_worker("test.1")
    uri = locate(nameserver.host, nameserver.port, ACCESS).lookup("clusterfarm.worker.test.1")
    with ACCESS.proxy(uri) as proxy:
        deadline = time.monotonic() + 10
        while proxy.info()["task_pid"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        task_pid = proxy.info()["task_pid"]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while alive(task_pid):
        assert time.monotonic() < deadline, "task process outlived its daemon"
        time.sleep(0.05)


def test_sigterm_unregisters_the_worker(start_worker, nameserver):
    process = start_worker("test.2")
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    ns = locate(nameserver.host, nameserver.port, ACCESS)
    assert "clusterfarm.worker.test.2" not in ns.list(prefix="clusterfarm.worker.")


def test_daemon_listens_on_the_address_given(worker_proxy):
    assert worker_proxy._pyroUri.host == "127.0.0.1"


def test_batch_answers_one_outcome_per_cell_in_order(worker_proxy):
    join(worker_proxy)
    answers = batch(worker_proxy, "sleep", [[2000, 0, 1], [2000, 1, 1], [2001, 5, 1]])
    assert [a.status for a in answers] == ["+"] * 3
    assert all(a.summary == {"slept": 0.01} for a in answers)
    assert all(a.usage is not None and a.usage[2] > 1e6 for a in answers)  # peak RSS
    assert worker_proxy.info()["done"] == 3


@pytest.mark.slow
def test_batch_time_limit_holds_per_cell_and_later_cells_are_not_started(worker_proxy):
    join(worker_proxy, timeout=0.5)
    answers = batch(worker_proxy, "hang", [[2000, 0, 1], [2000, 1, 1], [2000, 2, 1]])
    assert [a.kind for a in answers] == ["timeout", "not_started", "not_started"]
    assert batch(worker_proxy, "noop", "2000 0 1")[0].complete  # cells packed as a string


@pytest.mark.parametrize("cells", [[], [[2000]], [[2000, -2]], "2000,0", [[2000, 0, "x"]], 7])
def test_malformed_batches_are_refused(worker_proxy, cells):
    join(worker_proxy)
    (answer,) = batch(worker_proxy, "noop", cells, expected=1)
    assert answer.status == "F" and answer.kind == "protocol"


def test_a_batch_of_an_unknown_run_asks_to_join_first(worker_proxy):
    (answer,) = batch(worker_proxy, "noop", [[2000, 0, 1]], run_id="never-joined")
    assert answer.status == "F" and answer.kind == "unknown_run"


def test_a_worker_leased_to_one_run_refuses_another(worker_proxy):
    assert join(worker_proxy, run_id="run-a")["leased_by"] is None
    refused = join(worker_proxy, run_id="run-b")
    assert refused["leased_by"].startswith("run run-a")
    assert worker_proxy.do_work(2000, 0, "noop")["error_kind"] == "leased"
    assert worker_proxy.info()["run_id"] == "run-a"
    assert worker_proxy.release("run-a") is True
    assert join(worker_proxy, run_id="run-b")["leased_by"] is None
    assert batch(worker_proxy, "noop", [[2000, 0, 1]], run_id="run-b")[0].complete


def test_join_says_which_tasks_and_versions_the_worker_has(worker_proxy):
    answer = join(worker_proxy)
    assert answer["tasks"]["noop"] == "1" and answer["tasks"]["fail_always"] == "1"
    assert answer["version"] and answer["worker"] == "clusterfarm.worker.test.0"


@pytest.mark.slow
def test_a_worker_started_for_a_run_leaves_once_no_manager_calls(start_worker, nameserver):
    process = start_worker("test.3", "--exit-when-idle", "1")
    uri = locate(nameserver.host, nameserver.port, ACCESS).lookup("clusterfarm.worker.test.3")
    with ACCESS.proxy(uri) as worker:
        for _ in range(6):  # a manager's heartbeats keep it
            worker.ping()
            time.sleep(0.3)
        assert process.poll() is None
    began = time.monotonic()
    assert process.wait(10) == 0
    assert time.monotonic() - began < 3
    ns = locate(nameserver.host, nameserver.port, ACCESS)
    assert "clusterfarm.worker.test.3" not in ns.list(prefix="clusterfarm.worker.")
