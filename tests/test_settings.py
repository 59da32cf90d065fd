"""Settings: lookup order, substitution, validation, printing."""

import tomllib
from pathlib import Path

import pytest

from clusterfarm.config.settings import (
    default_settings_path,
    load_settings,
    parse_settings,
    to_toml,
)
from clusterfarm.errors import SettingsError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLUSTERFARM_SETTINGS", raising=False)


def write(path, text):
    path.write_text(text)
    return str(path)


def test_default_settings_have_no_hosts_and_documented_values():
    settings = load_settings()
    assert settings.hosts == ()
    assert settings.run.timeout == 900.0 and settings.run.retries == 2
    assert settings.source == str(default_settings_path())


def test_lookup_order_is_option_then_env_then_local_file(tmp_path, monkeypatch):
    local = write(tmp_path / "clusterfarm.toml", '[run]\nyears = "2001"\n')
    env = write(tmp_path / "env.toml", '[run]\nyears = "2002"\n')
    explicit = write(tmp_path / "explicit.toml", '[run]\nyears = "2003"\n')
    assert load_settings().run.years == "2001"
    assert load_settings().source == "clusterfarm.toml" and local
    monkeypatch.setenv("CLUSTERFARM_SETTINGS", env)
    assert load_settings().run.years == "2002"
    assert load_settings(explicit).run.years == "2003"


def test_user_file_is_merged_over_the_defaults(tmp_path):
    settings = load_settings(write(tmp_path / "s.toml", "[run]\nretries = 5\n"))
    assert settings.run.retries == 5
    assert settings.run.timeout == 900.0  # from the default file


def test_environment_variables_are_substituted(tmp_path, monkeypatch):
    monkeypatch.setenv("CF_DATA", "/data/20cr")
    monkeypatch.delenv("CF_UNSET", raising=False)
    path = write(
        tmp_path / "s.toml",
        '[run]\ndata_dir = "${CF_DATA}/v2c"\nrun_dir = "${CF_UNSET:-/tmp/run}"\n',
    )
    settings = load_settings(path)
    assert settings.run.data_dir == "/data/20cr/v2c"
    assert settings.run.run_dir == "/tmp/run"


def test_unset_variable_without_default_names_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv("CF_UNSET", raising=False)
    path = write(tmp_path / "s.toml", '[run]\ndata_dir = "${CF_UNSET}/x"\n')
    with pytest.raises(SettingsError, match=r"s\.toml: run\.data_dir: .*CF_UNSET is not set"):
        load_settings(path)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[run]\ntimeot = 3\n", r"unknown key run\.timeot"),
        ("[runn]\n", "unknown key 'runn'"),
        ('[run]\ntimeout = "x"\n', r"run\.timeout must be a number, not str"),
        ("[run]\nretries = 1.5\n", r"run\.retries must be an integer"),
        ("[run]\ntimeout = -1\n", r"run\.timeout must be positive"),
        ("[run]\nretries = -1\n", r"run\.retries must not be negative"),
        ('[run]\nyears = "2012-2000"\n', r"run\.years: .*reversed"),
        ('[[hosts]]\nname = ""\n', r"hosts\[0\]\.name '' must be a non-empty name"),
        ('[[hosts]]\nname = "a"\n[[hosts]]\nname = "a"\n', r"duplicate host 'a'"),
        ('[[hosts]]\naddress = "x"\n', r"missing key hosts\[0\]\.name"),
        ('[[hosts]]\nname = "a"\nport = 0\n', "not a TCP port"),
        ('[logging]\nformat = "xml"\n', "must be text or json"),
        ("[run\n", "not valid TOML"),
        ("[security]\ntls = true\n", r"security\.ca is needed for tls"),
        ('[run]\nlauncher = "pbs"\n', r"run\.launcher must be one of auto, local, ssh, slurm"),
        ("[slurm]\nworkers = 0\n", r"slurm\.workers must be at least 1"),
        ("[slurm]\nmax_running = -1\n", r"slurm\.max_running must not be negative"),
        ('[slurm]\ntime = "1 hour"\n', r"slurm\.time '1 hour' is not a SLURM time limit"),
        ('[slurm]\nmem = "4 GB"\n', r"slurm\.mem '4 GB' is not a SLURM memory size"),
        ('[slurm]\nsbatch_args = "--exclusive"\n', r"slurm\.sbatch_args must be a list"),
        ('[slurm]\nsbatch_args = ["exclusive"]\n', r"slurm\.sbatch_args\[0\] 'exclusive'"),
        ('[slurm]\nqueue = "x"\n', r"unknown key slurm\.queue"),
    ],
)
def test_invalid_settings_name_the_file_and_key(tmp_path, text, complaint):
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(SettingsError, match=complaint) as caught:
        load_settings(path)
    assert str(caught.value).startswith(path) or "TOML" in str(caught.value)


def test_launcher_auto_means_ssh_with_hosts_and_local_without(tmp_path):
    assert load_settings().launcher == "local"
    hosts = load_settings(write(tmp_path / "h.toml", '[[hosts]]\nname = "berlin"\n'))
    assert hosts.launcher == "ssh"
    slurm = load_settings(write(tmp_path / "s.toml", '[run]\nlauncher = "slurm"\n'))
    assert slurm.launcher == "slurm" and slurm.slurm.workers == 2


def test_example_slurm_settings_are_valid(monkeypatch):
    example = ROOT / "settings" / "example-slurm.toml"
    settings = load_settings(str(example))
    assert settings.launcher == "slurm"
    assert settings.slurm.sbatch_args == ("--constraint=haswell",)


def test_missing_settings_file_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="settings file not found"):
        load_settings(str(tmp_path / "nope.toml"))


def test_hosts_take_defaults_from_workers_section(tmp_path):
    path = write(
        tmp_path / "s.toml",
        '[workers]\nper_host = 3\n[[hosts]]\nname = "berlin"\n'
        '[[hosts]]\nname = "paris"\naddress = "10.0.0.2"\nworkers = 1\n',
    )
    berlin, paris = load_settings(path).hosts
    assert (berlin.address, berlin.workers) == ("berlin", 3)
    assert (paris.address, paris.workers) == ("10.0.0.2", 1)


def test_select_hosts_refuses_unknown_names(tmp_path):
    settings = load_settings(write(tmp_path / "s.toml", '[[hosts]]\nname = "a"\n'))
    assert [h.name for h in settings.select_hosts("a")] == ["a"]
    with pytest.raises(Exception, match="unknown host b"):
        settings.select_hosts("a,b")


def test_printed_settings_read_back_to_the_same_settings():
    example = load_settings(str(ROOT / "settings" / "example-cluster.toml"))
    printed = to_toml(example)
    again = parse_settings(tomllib.loads(printed), "printed")
    assert again.hosts == example.hosts
    assert again.run == example.run
    assert again.tasks == example.tasks


def test_command_line_overrides_are_checked_like_the_file():
    settings = load_settings()
    assert settings.with_run(retries=0).run.retries == 0
    with pytest.raises(SettingsError, match="--timeout must be positive"):
        settings.with_run(timeout=-3.0)
    with pytest.raises(SettingsError, match="--years: .*reversed"):
        settings.with_run(years="2005-2001")


def test_relative_run_paths_can_be_taken_from_where_a_run_started(tmp_path):
    path = write(tmp_path / "s.toml", '[run]\ndata_dir = "data"\nresults_dir = "/abs/results"\n')
    started = load_settings(path).started_in("/home/ada/project")
    assert started.run.data_dir == "/home/ada/project/data"
    assert started.run.results_dir == "/abs/results"  # absolute: as it was
    assert load_settings().started_in("/p").run.results_dir == ""  # empty: {run_dir}/results
