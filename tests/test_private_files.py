"""The secret and the keys: written without following a planted link, refused when they are
somebody else's or readable by others. The start helper runs as the real process it is on a
host; other users are played by uids the tests chown files to (so as root)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from clusterfarm.config.settings import SecuritySettings, load_settings
from clusterfarm.errors import SettingsError
from clusterfarm.wire.private_files import read_private, write_private
from clusterfarm.wire.secret import read_secret
from tests.harness.cli import cli_env

OTHER_UID = 12345  # somebody else
SECRET = "s" * 64

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="playing another user needs root (chown)")


def her_file(folder: Path) -> Path:
    victim = folder / "her_file"
    victim.write_text("her data\n")
    victim.chmod(0o644)
    os.chown(victim, OTHER_UID, -1)
    return victim


def start_helper(workdir: Path) -> subprocess.CompletedProcess[str]:
    """The SSH launcher's helper, as start-workers runs it on a host (no workers started)."""
    command = [sys.executable, "-m", "clusterfarm.launchers.ssh.daemons", "start",
               f"--workdir={workdir}", "--host=h", "--count=0", "--secret-stdin"]  # fmt: skip
    return subprocess.run(
        command, input=SECRET + "\n", env=cli_env(), capture_output=True, text=True, timeout=60
    )


def security(path: Path) -> SecuritySettings:
    return SecuritySettings(**{**load_settings(None).security.__dict__, "secret_file": str(path)})


@as_root
def test_a_secret_link_planted_in_her_workdir_is_refused_and_her_file_untouched(tmp_path):
    victim = her_file(tmp_path)
    workdir = tmp_path / "shared"
    workdir.mkdir()
    os.chown(workdir, OTHER_UID, -1)
    (workdir / "secret").symlink_to(victim)
    done = start_helper(workdir)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: ") and "belongs to uid 12345" in done.stderr
    assert victim.read_text() == "her data\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644


@as_root
def test_a_secret_link_in_our_workdir_is_replaced_not_followed(tmp_path):
    victim = her_file(tmp_path)
    workdir = tmp_path / "ours"
    workdir.mkdir()
    (workdir / "secret").symlink_to(victim)
    done = start_helper(workdir)
    assert done.returncode == 0, done.stderr
    secret = workdir / "secret"
    assert not secret.is_symlink() and secret.read_text() == SECRET + "\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert victim.read_text() == "her data\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_a_workdir_anybody_may_write_to_is_refused(tmp_path):
    workdir = tmp_path / "open"
    workdir.mkdir()
    workdir.chmod(0o777)
    done = start_helper(workdir)
    assert done.returncode == 2 and "anybody may write to its folder" in done.stderr
    assert not (workdir / "secret").exists()


@pytest.mark.parametrize(
    ("spoil", "complaint"),
    [
        pytest.param(lambda p: p.chmod(0o644), "other users may read it; chmod 600", id="readable"),
        pytest.param(
            lambda p: os.chown(p, OTHER_UID, -1),
            "belongs to uid 12345, not to you",
            id="somebody else's",
            marks=as_root,
        ),
        pytest.param(lambda p: _link(p), "is a symbolic link", id="a link"),
    ],
)
def test_a_secret_that_is_not_ours_alone_is_refused(tmp_path, spoil, complaint):
    path = tmp_path / "secret"
    write_private(path, (SECRET + "\n").encode())
    assert read_secret(security(path)) == SECRET
    spoil(path)
    with pytest.raises(SettingsError, match=complaint):
        read_secret(security(path))


def _link(path: Path) -> None:
    real = path.with_name("real_secret")
    path.rename(real)
    path.symlink_to(real)


def test_a_private_file_is_never_readable_by_others_nor_half_written(tmp_path):
    path = tmp_path / "deeper" / "key"
    write_private(path, b"first")
    write_private(path, b"second")
    assert path.read_bytes() == b"second" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["key"]  # no temporary left
    assert read_private(path) == b"second"
