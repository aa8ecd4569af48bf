"""Configuration: file choice, MDM_* overrides, one-line errors naming the file and the key, secrets by reference."""

from __future__ import annotations

import pytest

from mdm_core.config import SecretRef, load_config
from mdm_core.errors import ConfigError


@pytest.fixture
def conf(project_dir):
    path = project_dir / "conf" / "mdm.toml"

    def write(text: str):
        path.write_text(text)
        return path

    return write


def test_config_from_path_env_or_default(conf, project_dir, monkeypatch, tmp_path):
    path = conf("[core]\nworkers = 7\n")
    assert load_config(path, environ={}).core.workers == 7
    assert load_config(None, environ={"MDM_CONFIG": str(path)}).core.workers == 7
    monkeypatch.chdir(project_dir)
    assert load_config(None, environ={}).core.workers == 7  # conf/mdm.toml of the current folder
    with pytest.raises(ConfigError, match="nowhere.toml does not exist"):
        load_config("nowhere.toml", environ={})


def test_relative_paths_are_taken_from_the_project_folder(conf, project_dir):
    config = load_config(conf(""), environ={})
    assert config.database_url == f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}"
    assert config.var_dir == project_dir / "var"


def test_database_url_env_override(conf, project_dir):
    config = load_config(conf('[core]\ndatabase_url = "sqlite:///a.db"\n'), environ={"MDM_DATABASE_URL": "postgresql+psycopg://u@h/db"})
    assert config.database_url == "postgresql+psycopg://u@h/db"
    assert load_config(conf(""), environ={"MDM_DATABASE_URL": "sqlite://"}).database_url == "sqlite://"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[core\nworkers = 1\n", r"mdm\.toml: malformed TOML: .*line 1"),
        ("[core]\nworkerz = 1\n", r"mdm\.toml: \[core\] unknown key 'workerz'; known keys: "),
        ('[core]\nworkers = "four"\n', r"mdm\.toml: \[core\] workers must be an integer, got a string"),
        ("[core]\nworkers = true\n", r"mdm\.toml: \[core\] workers must be an integer, got a boolean"),
        ("[plugins]\nenabled = [1]\n", r"mdm\.toml: \[plugins\] enabled\[0\] must be a string, got an integer"),
        ('[plugins]\nautoload = "yes"\n', r"mdm\.toml: \[plugins\] autoload must be true or false"),
        ("core = 3\n", r"mdm\.toml: \[core\] must be a table"),
        ('[core]\nsecret_key = "hunter2"\n', r"\[core\] secret_key must be a secret reference like \{ env = \"VAR\" \}.*never the secret itself"),
        ('[core]\nsecret_key = { env = "A", file = "b" }\n', r"\[core\] secret_key must be a secret reference"),
        ("[core]\nsqlite_busy_timeout = nan\n", r"\[core\] sqlite_busy_timeout must be a finite number, got nan"),
        ("[core]\nsqlite_busy_timeout = inf\n", r"\[core\] sqlite_busy_timeout must be a finite number, got inf"),
        ("[core]\nworkers = 0\n", r"\[core\] workers must be from 1 to 64, got 0"),
    ],
    ids=[
        "malformed",
        "unknown-key",
        "wrong-type",
        "bool-for-int",
        "list-item",
        "bool",
        "not-a-table",
        "inline-secret",
        "two-refs",
        "nan",
        "inf",
        "out-of-range",
    ],
)
def test_bad_configuration_is_one_line_error_naming_file_and_key(conf, text, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(conf(text), environ={})
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(str(conf(text)))


def test_unknown_section_and_plugin_sections(make_host, load_plugin):
    with pytest.raises(ConfigError, match=r"mdm\.toml: unknown section \[vpq\]; known sections: core, inventory, plugins") as info:
        make_host(plugins=[], config="[vpq]\nx = 1\n")
    assert "\n" not in str(info.value)
    plug = load_plugin("""
        from dataclasses import dataclass, field
        from mdm_core.config import SecretRef

        @dataclass
        class Settings:
            interval: float = 60.0
            token: SecretRef | None = None
            labels: dict[str, str] = field(default_factory=dict)

        @hookimpl
        def mdm_config_sections():
            return {"thing": Settings}

        @hookimpl
        def mdm_configure(host):
            global settings
            settings = host.config.section("thing", Settings)
    """)
    host = make_host(plugins=[plug], config='[thing]\ninterval = 5\ntoken = { env = "THING_TOKEN" }\nlabels = { a = "b" }\n', environ={"THING_TOKEN": "s3cret"})
    assert plug.settings.interval == 5.0 and isinstance(plug.settings.interval, float)
    assert plug.settings.labels == {"a": "b"}
    assert plug.settings.token.resolve(host.config) == "s3cret"
    assert "s3cret" not in repr(plug.settings)
    with pytest.raises(ConfigError, match=r"\[thing\] interval must be a number, got a string"):
        make_host(plugins=[plug], config='[thing]\ninterval = "soon"\n')
    with pytest.raises(ConfigError, match=r"\[thing\] labels\.a must be a string, got an integer"):
        make_host(plugins=[plug], config="[thing]\nlabels = { a = 1 }\n")
    with pytest.raises(ConfigError, match=r"\[thing\] token must be a secret reference"):
        make_host(plugins=[plug], config='[thing]\ntoken = "inline-secret"\n')


def test_secret_references(conf, project_dir):
    (project_dir / "conf" / "token.txt").write_text("from-file\n")
    config = load_config(conf('[core]\nsecret_key = { file = "conf/token.txt" }\n'), environ={})
    assert config.core.secret_key == SecretRef(file="conf/token.txt")
    assert config.core.secret_key.resolve(config) == "from-file"
    with pytest.raises(ConfigError, match="environment variable NOPE is not set"):
        SecretRef(env="NOPE").resolve(config, environ={})
    with pytest.raises(ConfigError, match="secret file .*missing.txt cannot be read"):
        SecretRef(file="missing.txt").resolve(config)


def test_config_errors_exit_2_from_main(mdm):
    code, out, err = mdm("plugins", config="[core]\nworkerz = 1\n")
    assert code == 2
    assert err.count("\n") == 1 and "mdm.toml: [core] unknown key 'workerz'" in err
    assert "Traceback" not in err
    code, _, err = mdm("plugins", config="[core\n")
    assert code == 2 and "malformed TOML" in err and err.count("\n") == 1
    code, _, err = mdm("plugins", config="[nosuch]\n")
    assert code == 2 and "unknown section [nosuch]" in err
    # plugin sections are checked the same way, at start
    for text, expected in (
        ("[vpp]\ndefault_interval = 1000000000000\n", "[vpp] default_interval must be from 1 to 31536000"),
        ("[vpp]\nlock_wait = nan\n", "[vpp] lock_wait must be a finite number, got nan"),
        ("[mobile_apps]\ninstall_wait = -1.0\n", "[mobile_apps] install_wait must be from 0 to 3600"),
        # the name Apple shows other admins as the MDM holding the location: never empty
        ('[vpp]\nmdm_name = ""\n', "[vpp] mdm_name must be 1 to 100 characters long, got 0"),
        ('[vpp]\nmdm_name = "   "\n', "[vpp] mdm_name must be 1 to 100 characters long, got 0"),
        (f'[vpp]\nmdm_name = "{"x" * 101}"\n', "[vpp] mdm_name must be 1 to 100 characters long, got 101"),
        # refused by every command at start, `mdm run` included (was: only once an account asked Apple for notifications)
        ('[web]\npublic_url = "ftp://mdm.example.org"\n', "[web] public_url 'ftp://mdm.example.org' is not valid: give the https URL"),
        ('[web]\npublic_url = "https://mdm.example.org/?x=1"\n', "[web] public_url 'https://mdm.example.org/?***' is not valid"),
        # a credential written into it is never echoed
        ('[web]\npublic_url = "https://u:PW1@mdm.example.org/a?token=SEC2#F3"\n', "[web] public_url 'https://***@mdm.example.org/a?***#***' is not valid"),
    ):
        enabled = '[plugins]\nenabled = ["plugins.vpp.plugin", "plugins.mobile_apps.plugin"]\n'
        code, _, err = mdm("plugins", config=enabled + text)
        assert code == 2 and expected in err and err.count("\n") == 1, err


def test_mdm_config_env_is_used_by_main(mdm, project_dir, monkeypatch, capsys):
    from mdm_core.cli import main

    other = project_dir / "other.toml"
    other.write_text("[core]\nworkers = x\n")
    monkeypatch.setenv("MDM_CONFIG", str(other))
    assert main(["plugins"]) == 2
    assert "other.toml: malformed TOML" in capsys.readouterr().err


def test_the_shipped_configuration_loads_and_its_examples_are_real():
    """conf/mdm.toml is valid, and the plugin module its comment suggests exists."""
    import importlib
    import re
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "conf" / "mdm.toml"
    config = load_config(shipped, environ={})
    assert config.core.log_level == "WARNING" and config.plugins.enabled == []
    [example] = re.findall(r'enabled = \[\]\s+# .*e\.g\. \["([\w.]+)"\]', shipped.read_text())
    importlib.import_module(example)


def test_log_level_is_the_default_logging_of_mdm(mdm):
    import logging

    assert mdm("plugins", config='[core]\nlog_level = "info"\n')[0] == 0
    assert logging.getLogger().level == logging.INFO
    assert mdm("-q", "plugins")[0] == 0  # -q and -v still win
    assert logging.getLogger().level == logging.ERROR
    assert mdm("plugins", config="")[0] == 0
    assert logging.getLogger().level == logging.WARNING  # the default: warnings and errors only
    code, _, err = mdm("plugins", config='[core]\nlog_level = "loud"\n')
    assert code == 2 and err.strip().endswith("[core] log_level 'loud' is not a level: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL")


def test_a_database_url_or_config_variable_exported_empty_is_an_error_not_another_database(mdm, project_dir, monkeypatch):
    """`MDM_DATABASE_URL=` (a deploy script whose secret lookup failed) ran every command on the
    default SQLite file, a database the admin never meant: a split brain with PostgreSQL."""
    monkeypatch.setenv("MDM_DATABASE_URL", " ")
    for args in (("status",), ("devices", "add", "C02EMPTYURL1", "--platform", "iOS"), ("db", "upgrade")):
        code, out, err = mdm(*args)
        assert (code, out) == (2, ""), args
        assert err == (
            "mdm: error: MDM_DATABASE_URL is set but empty: give it the database URL, or unset it (`unset MDM_DATABASE_URL`) "
            "to use [core] database_url (or the default SQLite file var/mdm.sqlite3)\n"
        ), err
    assert not [p.name for p in project_dir.rglob("*.sqlite3*")]  # no database created anywhere
    with pytest.raises(ConfigError, match=r"^MDM_CONFIG is set but empty: give it the path of the configuration file, or unset it"):
        load_config(None, {"MDM_CONFIG": ""})
    assert load_config(project_dir / "conf" / "mdm.toml", {"MDM_CONFIG": ""}).path == project_dir / "conf" / "mdm.toml"  # --config wins
