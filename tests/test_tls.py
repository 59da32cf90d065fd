"""Mutual TLS (``[security] tls``) with real processes: certificates made by ``clusterfarm
certs``, a local run over TLS, clients without a certificate of the cluster's CA refused by
the nameserver and the workers, and every certificate problem as one ``Error:`` line."""

from __future__ import annotations

import datetime
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from clusterfarm.errors import EXIT_INFRA, EXIT_USAGE
from clusterfarm.wire.certs import issue, write_credential
from tests.harness.cli import cli_env, run_cli, write_settings
from tests.harness.pki import read_ca
from tests.harness.processes import stop_process, wait_for_text

# A plain Pyro5 client, in a process of its own (TLS settings are per process): with a CA
# file it is a TLS client presenting the given certificate. Prints one outcome per URI.
PROBE = """
import json, os, sys
from Pyro5 import config
from clusterfarm.wire.access import Access
ca, cert, key, *uris = sys.argv[1:]
secret = open(os.environ["CLUSTERFARM_SECRET_FILE"]).read().strip()  # past auth: TLS decides
if ca:
    config.SSL, config.SSL_CACERTS = True, ca
    config.SSL_CLIENTCERT, config.SSL_CLIENTKEY = cert, key
outcomes = []
for uri in uris:
    try:
        with Access(secret).proxy(uri) as proxy:
            proxy._pyroTimeout = 5
            proxy._pyroBind()
        outcomes.append({"ok": True})
    except Exception as exc:
        outcomes.append({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
print(json.dumps(outcomes))
"""


def security(directory: Path, stem: str = "localhost", ca: Path | None = None) -> str:
    """A ``[security]`` table using ``directory/stem.pem`` and its key."""
    return (
        f'[security]\ntls = true\nca = "{ca or directory / "ca.pem"}"\n'
        f'cert = "{directory / stem}.pem"\nkey = "{directory / stem}.key"\n'
    )


def nameserver_at(host: str, port: int) -> str:
    return f'[nameserver]\nhost = "{host}"\nport = {port}\n'


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``certs/`` and ``other/`` (a second CA), both made by ``clusterfarm certs``."""
    work = tmp_path_factory.mktemp("pki")
    for out in ("certs", "other"):
        made = run_cli("certs", "--out", out, cwd=work)
        assert made.code == 0, made.err
    # a nameserver certificate naming only 127.0.0.1, so dialling "localhost" mismatches
    write_credential(issue(read_ca(work / "certs"), "ns", ["127.0.0.1"]), work / "certs", "ns")
    return work


def read_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def alt_names(path: Path) -> set[str]:
    alt = read_cert(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in alt}


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


# -- clusterfarm certs ------------------------------------------------------------------------


def test_certs_makes_a_ca_and_a_certificate_per_host_naming_its_addresses(tmp_path):
    settings = write_settings(
        tmp_path / "cluster.toml",
        nameserver_at("10.1.2.1", 9090)
        + '[[hosts]]\nname = "berlin"\naddress = "10.1.2.3"\n\n[[hosts]]\nname = "rome"\n',
    )
    made = run_cli("--settings", str(settings), "certs", "--out", "pki", cwd=tmp_path)
    assert made.code == 0, made.err
    pki = tmp_path / "pki"
    stems = ["ca", "berlin", "rome", "localhost", "manager"]
    written = [f"pki/{stem}.{ext}" for stem in stems for ext in ("pem", "key")]
    assert [line.split()[0] for line in made.out.splitlines()] == written
    for stem in stems:
        assert (pki / f"{stem}.key").stat().st_mode & 0o777 == 0o600
    assert alt_names(pki / "berlin.pem") == {"berlin", "10.1.2.3"}
    assert alt_names(pki / "rome.pem") == {"rome"}
    assert alt_names(pki / "localhost.pem") == {"localhost", "127.0.0.1", "::1"}
    assert "10.1.2.1" in alt_names(pki / "manager.pem")  # the nameserver runs there
    ca = read_cert(pki / "ca.pem")
    for stem in stems[1:]:
        cert = read_cert(pki / f"{stem}.pem")
        cert.verify_directly_issued_by(ca)
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert datetime.timedelta(days=365) < lifetime < datetime.timedelta(days=1000)

    some = run_cli(
        "--settings",
        str(settings),
        "certs",
        "--out",
        "few",
        "--hosts",
        "berlin,10.9.9.9",
        cwd=tmp_path,
    )
    assert some.code == 0, some.err
    assert sorted(p.name for p in (tmp_path / "few").glob("*.pem")) == [
        "10.9.9.9.pem",
        "berlin.pem",
        "ca.pem",
        "manager.pem",
    ]
    assert alt_names(tmp_path / "few/10.9.9.9.pem") == {"10.9.9.9"}


def test_certs_keeps_an_existing_ca_unless_forced(tmp_path):
    assert run_cli("certs", "--out", "pki", cwd=tmp_path).code == 0
    ca = (tmp_path / "pki/ca.pem").read_bytes()
    again = run_cli("certs", "--out", "pki", cwd=tmp_path)
    assert again.code == EXIT_USAGE
    assert "pki/ca.pem" in one_error_line(again.err) and "--force" in again.err
    assert (tmp_path / "pki/ca.pem").read_bytes() == ca
    forced = run_cli("certs", "--out", "pki", "--force", cwd=tmp_path)
    assert forced.code == 0, forced.err
    assert (tmp_path / "pki/ca.pem").read_bytes() != ca


# -- a run over TLS ---------------------------------------------------------------------------


@pytest.mark.slow
def test_local_run_over_tls_completes_with_every_connection_encrypted(pki, tmp_path):
    settings = write_settings(tmp_path / "tls.toml", security(pki / "certs"))
    pyro_log = tmp_path / "pyro5.log"
    result = run_cli(
        "--settings",
        str(settings),
        "run",
        "--local",
        "2",
        "--task",
        "noop",
        "--years",
        "2000",
        "--members",
        "0-3",
        "--json",
        cwd=tmp_path,
        PYRO_LOGLEVEL="DEBUG",  # Pyro5's own log says how each daemon and connection runs
        PYRO_LOGFILE=str(pyro_log),
    )
    assert result.code == 0, result.err
    assert json.loads(result.out)["complete"] == 4
    log = pyro_log.read_text()
    assert log.count("using SSL") == 3  # the manager's nameserver and both workers
    assert "not using SSL" not in log and "unencrypted" not in log


# -- a TLS nameserver and worker, and clients that must be refused ---------------------------


@dataclass
class Cluster:
    work: Path
    settings: Path
    port: int
    worker_uri: str

    @property
    def ns_uri(self) -> str:
        return f"PYRO:Pyro.NameServer@127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def cluster(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A TLS nameserver (certificate naming 127.0.0.1 only) and one TLS worker."""
    work = tmp_path_factory.mktemp("cluster")
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, settings: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = work / f"{name}.log"
        with open(log, "wb") as out:
            command = [sys.executable, "-m", "clusterfarm", "--settings", str(settings), *args]
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=work, env=cli_env()
            )
        processes.append(process)
        return process, log

    try:
        ns_settings = write_settings(
            work / "ns.toml", nameserver_at("127.0.0.1", 9090) + security(pki / "certs", "ns")
        )
        server, log = start("nameserver", ns_settings, "nameserver", "--port", "0")  # a free one
        port = int(wait_for_text(log, "listening at", server).split(":")[-1].split()[0])
        settings = write_settings(
            work / "tls.toml", nameserver_at("127.0.0.1", port) + security(pki / "certs")
        )
        worker, log = start("worker", settings, "worker", "--host", "127.0.0.1", "--name", "tls.0")
        wait_for_text(log, "listening at", worker)
        listed = run_cli("--settings", str(settings), "workers", "--json", cwd=work)
        assert listed.code == 0, listed.err
        [entry] = json.loads(listed.out)
        yield Cluster(work, settings, port, entry["uri"])
    finally:
        for process in reversed(processes):
            stop_process(process)


def probe(*uris: str, ca: Path | str = "", cert: Path | str = "", key: Path | str = "") -> list:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(ca), str(cert), str(key), *uris],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def identity(pki: Path, trusts: str, presents: str) -> dict[str, Path]:
    """A TLS client trusting the CA of ``trusts`` and presenting the certificate of ``presents``."""
    return {
        "ca": pki / trusts / "ca.pem",
        "cert": pki / presents / "localhost.pem",
        "key": pki / presents / "localhost.key",
    }


def test_nameserver_and_worker_serve_a_client_with_a_certificate_of_the_cluster(pki, cluster):
    outcomes = probe(cluster.ns_uri, cluster.worker_uri, **identity(pki, "certs", "certs"))
    assert outcomes == [{"ok": True}, {"ok": True}]


@pytest.mark.parametrize(
    ("client", "refusal"),
    [
        ("plain", ""),  # no TLS at all
        ("foreign certificate", ""),  # the server refuses a certificate of another CA
        ("trusting another CA", "certificate verify failed"),  # the client refuses the server
    ],
)
def test_nameserver_and_worker_refuse_a_client_without_a_certificate_of_the_cluster(
    pki, cluster, client, refusal
):
    who = {
        "plain": {},
        "foreign certificate": identity(pki, "certs", "other"),
        "trusting another CA": identity(pki, "other", "other"),
    }[client]
    outcomes = probe(cluster.ns_uri, cluster.worker_uri, **who)
    for outcome in outcomes:
        assert not outcome["ok"] and refusal in outcome["error"].lower(), outcome
    # and they still serve the cluster afterwards
    assert probe(cluster.ns_uri, **identity(pki, "certs", "certs")) == [{"ok": True}]


@pytest.mark.slow
def test_silent_connections_do_not_lock_others_out_of_a_tls_daemon(pki, cluster):
    worker_port = int(cluster.worker_uri.rsplit(":", 1)[1])
    ports = (cluster.port, worker_port)
    silent = [socket.create_connection(("127.0.0.1", port)) for port in ports for _ in range(200)]
    try:  # connected, but never start the TLS handshake
        time.sleep(0.5)
        began = time.monotonic()
        outcomes = probe(cluster.ns_uri, cluster.worker_uri, **identity(pki, "certs", "certs"))
        assert outcomes == [{"ok": True}, {"ok": True}]
        assert time.monotonic() - began < 2 + 1.5  # the probe's own Python start-up: < 1.5 s
    finally:
        for sock in silent:
            sock.close()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("name mismatch", "TLS: its certificate does not name the address dialled"),
        ("another CA", "TLS: its certificate is signed by another CA"),
        ("plain client", "if it uses TLS, set [security] tls = true"),
    ],
)
def test_a_tls_failure_at_connect_is_one_line_naming_the_address(pki, cluster, case, message):
    host, table = {
        "name mismatch": ("localhost", security(pki / "certs")),  # its certificate: 127.0.0.1
        "another CA": ("127.0.0.1", security(pki / "other")),
        "plain client": ("127.0.0.1", ""),
    }[case]
    settings = write_settings(
        cluster.work / "client.toml", nameserver_at(host, cluster.port) + table
    )
    result = run_cli("--settings", str(settings), "workers", cwd=cluster.work)
    assert result.code == EXIT_INFRA
    line = one_error_line(result.err)
    assert f"{host}:{cluster.port}" in line and message in line, line


def test_a_tls_client_of_a_plain_nameserver_is_told_so_in_one_line(pki, nameserver, tmp_path):
    settings = write_settings(
        tmp_path / "tls.toml",
        nameserver_at(nameserver.host, nameserver.port) + security(pki / "certs"),
    )
    result = run_cli("--settings", str(settings), "workers", cwd=tmp_path)
    assert result.code == EXIT_INFRA
    line = one_error_line(result.err)
    assert f"{nameserver.port}: TLS failed" in line and "tls on" in line, line


# -- certificate problems found at start ------------------------------------------------------


def bad_files(pki: Path, case: str, tmp_path: Path) -> tuple[dict[str, Path], Path, str]:
    """The ca/cert/key of ``case``, the file to blame and the reason to give."""
    certs = pki / "certs"
    good = {"ca": certs / "ca.pem", "cert": certs / "localhost.pem", "key": certs / "localhost.key"}
    now = datetime.datetime.now(datetime.UTC)
    if case == "missing":
        return {**good, "cert": tmp_path / "nowhere.pem"}, tmp_path / "nowhere.pem", "not found"
    if case == "not PEM":
        junk = write_settings(tmp_path / "junk.pem", "certainly not a certificate\n")
        return {**good, "cert": junk}, junk, "not a PEM certificate"
    if case == "key mismatch":
        return {**good, "key": certs / "manager.key"}, certs / "manager.key", "not the private key"
    if case == "another CA":
        other = {"cert": pki / "other/localhost.pem", "key": pki / "other/localhost.key"}
        return {**good, **other}, other["cert"], "not signed by the CA"
    start, reason = {
        "expired": (now - datetime.timedelta(days=900), "expired on"),
        "not yet valid": (now + datetime.timedelta(days=10), "not valid before"),
    }[case]
    made = issue(read_ca(certs), "localhost", ["127.0.0.1"], not_before=start, days=30)
    cert, key = write_credential(made, tmp_path, "dated")
    return {**good, "cert": cert, "key": key}, cert, reason


@pytest.mark.parametrize(
    "case", ["missing", "not PEM", "key mismatch", "another CA", "expired", "not yet valid"]
)
def test_a_certificate_problem_is_one_line_naming_the_file(pki, tmp_path, case):
    files, blamed, reason = bad_files(pki, case, tmp_path)
    table = "[security]\ntls = true\n" + "".join(f'{k} = "{v}"\n' for k, v in files.items())
    settings = write_settings(tmp_path / "tls.toml", table)
    result = run_cli("--settings", str(settings), "workers", cwd=tmp_path)
    assert result.code == EXIT_USAGE
    line = one_error_line(result.err)
    assert str(blamed) in line and reason in line, line


def test_a_daemon_refuses_to_listen_where_its_certificate_does_not_name(pki, tmp_path):
    write_credential(issue(read_ca(pki / "certs"), "berlin", ["berlin"]), tmp_path, "berlin")
    settings = write_settings(
        tmp_path / "berlin.toml", security(tmp_path, "berlin", ca=pki / "certs/ca.pem")
    )
    result = run_cli("--settings", str(settings), "worker", "--host", "127.0.0.1", cwd=tmp_path)
    assert result.code == EXIT_USAGE
    line = one_error_line(result.err)
    assert str(tmp_path / "berlin.pem") in line and "not 127.0.0.1" in line, line
