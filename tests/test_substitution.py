"""Shell-like ${VAR} substitution in settings strings."""

import os

import pytest

from clusterfarm.config.settings import load_settings
from clusterfarm.config.substitution import substitute
from clusterfarm.errors import SettingsError

ENV = {"HOME": "/home/ada", "EMPTY": "", "DATA": "/data"}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("${DATA}/20cr", "/data/20cr"),
        ("${UNSET:-/tmp}", "/tmp"),
        ("${EMPTY:-/tmp}", "/tmp"),  # set but empty: the default, as in the shell
        ("${EMPTY}", ""),
        ("${DATA:-/tmp}", "/data"),
        ("${UNSET:-${HOME}}/runs", "/home/ada/runs"),
        ("${UNSET:-${ALSO_UNSET:-${HOME}/x}}", "/home/ada/x"),
        ("${DATA:-${UNSET}}", "/data"),  # a default that is not used may name unset variables
        ("${UNSET:-}", ""),
        ("$${HOME}", "${HOME}"),
        ("cost: $5, $$ and $HOME", "cost: $5, $$ and $HOME"),
        ("$${UNSET:-x}", "${UNSET:-x}"),
    ],
)
def test_substitution_works_like_the_shell(text, value):
    assert substitute(text, ENV) == value


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("${UNSET}/x", "environment variable UNSET is not set"),
        ("${UNSET:-${ALSO_UNSET}}", "environment variable ALSO_UNSET is not set"),
        ("${HOME", "after ${HOME comes"),
        ("${UNSET:-x", "unterminated"),
        ("${1abc}", "must be followed by a variable name"),
        ("${HOME-x}", "after ${HOME comes"),
    ],
)
def test_bad_substitution_says_why(text, complaint):
    with pytest.raises(SettingsError, match=complaint.replace("$", r"\$").replace("{", r"\{")):
        substitute(text, ENV)


def test_settings_substitute_nested_defaults_and_literals(tmp_path, monkeypatch):
    monkeypatch.setenv("CF_EMPTY", "")
    monkeypatch.delenv("CF_UNSET", raising=False)
    path = tmp_path / "s.toml"
    path.write_text(
        '[run]\nrun_dir = "${CF_EMPTY:-${HOME}/runs}"\n'
        'data_dir = "${CF_UNSET:-/data}"\n'
        '[workers]\nsetup = "echo $${NOT_EXPANDED}"\n'
    )
    settings = load_settings(str(path))
    assert settings.run.run_dir == f"{os.environ['HOME']}/runs"
    assert settings.run.data_dir == "/data"
    assert settings.workers.setup == "echo ${NOT_EXPANDED}"


def test_bad_substitution_names_the_file_and_key(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[run]\ndata_dir = "${CF_UNSET:-x"\n')
    with pytest.raises(SettingsError, match=r"s\.toml: run\.data_dir: unterminated"):
        load_settings(str(path))
