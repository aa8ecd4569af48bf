"""The `mdm` command: help, exit codes, one-line errors, `mdm plugins` and `mdm hooks`."""

from __future__ import annotations

import contextlib
import json

import pytest

from mdm_core.cli import build_parser, parser_for
from mdm_core.host import create_host

CLI_PLUGIN = """
    @hookimpl
    def mdm_register_cli(subparsers, host):
        p = subparsers.add_parser("explode", help="raise an unexpected error")
        p.set_defaults(func=lambda host, args: 1 / 0)
        p = subparsers.add_parser("fail", help="raise an MdmError")
        p.set_defaults(func=_fail)

    def _fail(host, args):
        from mdm_core import MdmError
        raise MdmError("the thing is not there: add it first")
"""


def subcommands(parser):
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def all_command_paths():
    host = create_host(environ={}, database_url="sqlite://", plugins=[])
    try:
        parser = build_parser(host)
        paths = []
        for name, sub in subcommands(parser).items():
            paths.append([name])
            with contextlib.suppress(StopIteration):
                paths += [[name, child] for child in subcommands(sub)]
        return paths
    finally:
        host.close()


def test_help(mdm):
    code, out, _ = mdm("--help")
    assert code == 0
    for command in ("plugins", "hooks", "run", "jobs", "devices", "users", "commands"):
        assert command in out


@pytest.mark.parametrize("path", all_command_paths(), ids=lambda p: " ".join(p))
def test_every_subcommand_has_help(mdm, path):
    code, out, err = mdm(*path, "--help")
    assert code == 0, err
    assert out.startswith("usage: mdm " + " ".join(path))


@pytest.mark.parametrize("args", [["nosuch"], ["devices", "list", "--bogus"], ["devices", "add", "S1"], []], ids=str)
def test_bad_arguments_exit_2_with_one_line(mdm, args):
    code, out, err = mdm(*args)
    assert code == 2
    lines = [line for line in err.splitlines() if not line.startswith("usage:") and line.strip() and not line.startswith(" ")]
    assert len(lines) == 1 and lines[0].startswith("mdm") and "error:" in lines[0], err


@pytest.mark.parametrize(
    "args, says",
    [
        (["users", "list", "--limit", "0"], "argument --limit: '0' must be a whole number of at least 1"),
        (["users", "list", "--offset", "-1"], "argument --offset: '-1' must be a whole number of at least 0"),
        (["users", "list", "--limit", "ten"], "argument --limit: 'ten' is not a whole number"),
    ],
    ids=str,
)
def test_a_number_out_of_range_says_the_range_in_plain_words(mdm, args, says):
    code, out, err = mdm(*args)
    assert code == 2 and says in err, err


@pytest.mark.parametrize(
    "args, says",
    [
        (
            ["devices", "set", "S1", "--platfrom", "iOS"],
            "mdm devices set: error: unrecognized arguments: --platfrom iOS: did you mean --platform? (see mdm devices set --help)",
        ),
        (["users", "list", "--jsn"], "mdm users list: error: unrecognized arguments: --jsn: did you mean --json or --jsonl? (see mdm users list --help)"),
        (["users", "list", "extra"], "mdm users list: error: unrecognized arguments: extra (see mdm users list --help)"),
        (["users", "list", "--lim", "5"], "mdm users list: error: unrecognized arguments: --lim 5: did you mean --limit? (see mdm users list --help)"),
        (["--bogus", "status"], "mdm: error: unrecognized arguments: --bogus (see mdm --help)"),
    ],
    ids=str,
)
def test_an_unknown_argument_is_named_by_its_command_with_the_option_meant(mdm, args, says):
    """The error names the command it was given to (whose --help lists the options) and the
    closest option; an abbreviation is unknown too (`--lim` is not taken for `--limit`)."""
    code, out, err = mdm(*args)
    assert (code, out, err) == (2, "", says + "\n")


def test_config_option_without_value_exits_2(mdm, capsys):
    from mdm_core.cli import main

    assert main(["--config"]) == 2
    assert "expected one argument" in capsys.readouterr().err


def test_the_parser_is_built_once_per_set_of_plugins(mdm, write_plugin):
    hosts = [create_host(environ={}, database_url="sqlite://") for _ in range(2)]
    try:
        assert parser_for(hosts[0]) is parser_for(hosts[1])
        assert "fail" not in subcommands(parser_for(hosts[0]))
    finally:
        for host in hosts:
            host.close()
    mod = write_plugin(CLI_PLUGIN)  # another plugin enabled after: its commands are there
    code, _, err = mdm("fail", config=f'[plugins]\nenabled = ["{mod}"]\n')
    assert code == 1 and "the thing is not there" in err


@pytest.mark.parametrize(
    ("command", "line", "traceback"),
    [
        ("fail", "mdm: error: the thing is not there: add it first\n", False),  # an MdmError: never a traceback
        ("explode", "mdm: error: ZeroDivisionError: division by zero (run with -v for details)\n", True),  # unexpected: -v shows it
    ],
)
def test_an_error_exits_1_in_one_line_and_v_adds_the_traceback_of_an_unexpected_one(mdm, write_plugin, command, line, traceback):
    mod = write_plugin(CLI_PLUGIN)
    code, out, err = mdm(command, config=f'[plugins]\nenabled = ["{mod}"]\n')
    assert (code, err) == (1, line)
    code, _, err = mdm("-v", command)
    assert code == 1 and ("Traceback (most recent call last)" in err) is traceback, err
    assert not traceback or "ZeroDivisionError" in err


def test_plugins_json_and_table(mdm, write_plugin):
    mod = write_plugin(
        CLI_PLUGIN
        + """
    __version__ = "1.2.3"

    @hookimpl
    def mdm_shutdown(host):
        pass
    """
    )
    code, out, _ = mdm("plugins", "--json", config=f'[plugins]\nenabled = ["{mod}"]\n')
    assert code == 0
    rows = json.loads(out)
    assert [(r["name"], r["source"]) for r in rows] == [("inventory", "built-in"), ("web", "built-in"), (mod, "conf")]
    assert rows[2]["version"] == "1.2.3" and rows[2]["hooks"] == ["mdm_register_cli", "mdm_shutdown"]
    assert {"mdm_register_tables", "mdm_register_cli"} <= set(rows[0]["hooks"])
    code, out, _ = mdm("plugins")
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split() == ["name", "version", "source", "state", "module", "hooks"]
    assert any(line.startswith(mod) and "mdm_register_cli,mdm_shutdown" in line for line in lines)


def test_plugins_loads_entry_points_by_default(mdm, monkeypatch):
    """The in-repo plugins are registered as entry points and load (they may be stubs)."""
    monkeypatch.setenv("MDM_PLUGIN_AUTOLOAD", "1")
    code, out, err = mdm("plugins", "--json")
    assert code == 0, err
    sources = {r["name"]: r["source"] for r in json.loads(out)}
    assert sources.get("vpp") == "entry point" and sources.get("mobile_apps") == "entry point"


def test_hooks_lists_every_hook_with_its_doc(mdm):
    from mdm_core import hookspecs

    code, out, _ = mdm("hooks", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    core = [n for n in vars(hookspecs) if n.startswith("mdm_")]
    assert set(core) <= set(rows)
    assert rows["mdm_add_hookspecs"]["historic"] is True
    assert rows["mdm_register_tables"]["implemented_by"] == ["inventory", "web"]
    assert rows["mdm_event"]["args"] == ["host", "event"]
    for name in core:
        assert "When:" in rows[name]["doc"]
    code, out, _ = mdm("hooks")
    assert code == 0
    assert "mdm_device_enrolled(host, event)" in out
    assert "mdm_add_hookspecs(pluginmanager)  [historic]" in out
    assert "    When: after the commit that enrolled it" in out
    assert "implemented by: inventory, web" in out
