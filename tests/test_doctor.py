"""``clusterfarm doctor`` against a real sshd on 127.0.0.1: one row per check, with hints."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterfarm.launchers.ssh.doctor import CHECKS
from tests.harness.sshd import SSHLab, SSHServer, free_port, make_key, table_rows

pytestmark = pytest.mark.usefixtures("sshd_server")


def rows(output: str) -> dict[str, tuple[str, str]]:
    """check name → (result, detail), for the one host of these tests."""
    return {check: (result, detail) for _, check, result, detail in table_rows(output)}


def test_doctor_passes_on_a_healthy_host(ssh_lab: SSHLab, sshd_server: SSHServer) -> None:
    ssh_lab.trust(sshd_server)
    (ssh_lab.folder / "data").mkdir()
    result = ssh_lab.cli(ssh_lab.settings(ssh_lab.host("loc", sshd_server)), "doctor")
    assert result.code == 0, result.out
    checks = rows(result.out)
    assert list(checks) == list(CHECKS)
    assert {verdict for verdict, _ in checks.values()} == {"ok"}
    assert checks["clusterfarm"][1].startswith("0.") and "(here " in checks["clusterfarm"][1]
    assert "GB free under" in checks["disk"][1]


def test_doctor_says_how_to_fix_each_failing_check(ssh_lab: SSHLab, sshd_server: SSHServer) -> None:
    ssh_lab.trust(sshd_server)
    ssh_lab.ns_port = free_port()  # nothing listens there
    result = ssh_lab.cli(ssh_lab.settings(ssh_lab.host("loc", sshd_server)), "doctor")
    assert result.code == 1
    checks = rows(result.out)
    assert checks["data_dir"][0] == "FAIL" and "same path" in checks["data_dir"][1]
    assert checks["nameserver"][0] == "FAIL"
    assert "unreachable" in checks["nameserver"][1]
    assert "clusterfarm nameserver" in checks["nameserver"][1]
    assert checks["python"][0] == checks["address"][0] == "ok"


@pytest.mark.parametrize(
    ("failing", "host_changes", "worker_changes", "phrase"),
    [
        ("ssh login", {"key_file": "WRONG"}, {}, "publickey refused"),
        ("python", {}, {"python": "/nonexistent/python3"}, "not found"),
    ],
)
def test_doctor_skips_what_cannot_be_checked_after_a_failure(
    failing: str,
    host_changes: dict[str, str],
    worker_changes: dict[str, str],
    phrase: str,
    ssh_lab: SSHLab,
    sshd_server: SSHServer,
    tmp_path: Path,
) -> None:
    ssh_lab.trust(sshd_server)
    make_key(tmp_path / "wrong_key")
    host = ssh_lab.host("loc", sshd_server)
    host.update(
        {k: str(tmp_path / "wrong_key") if v == "WRONG" else v for k, v in host_changes.items()}
    )
    result = ssh_lab.cli(ssh_lab.settings(host, **worker_changes), "doctor")
    assert result.code == 1
    checks = rows(result.out)
    assert list(checks) == list(CHECKS)
    assert checks[failing][0] == "FAIL" and phrase in checks[failing][1]
    later = CHECKS[CHECKS.index(failing) + 1 :]
    assert {checks[name][0] for name in later} == {"-"}
