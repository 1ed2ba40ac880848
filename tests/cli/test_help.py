"""Every flag and positional of every `ablate` command says what it is in --help."""

import argparse

import pytest

from ablate.cli.main import build_parser as _parser
from ablate.cli.main import main


def _commands(parser, path=("ablate",)):
    """(path, parser) for the parser and every subcommand below it, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def _undocumented(parser) -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            out += [f"command {name}" for name in action.choices if not helps.get(name)]
        elif not (action.help or "").strip():
            out.append("/".join(action.option_strings) or action.dest)
    return out


def test_every_action_of_every_command_has_help():
    commands = list(_commands(_parser()))
    assert {"train", "sweep", "compare", "dashboard", "doctor", "claims", "config", "ui",
            "bench"} <= {path[1] for path, _ in commands if len(path) > 1}
    assert ("ablate", "config", "keys") in {path for path, _ in commands}
    missing = {" ".join(path): bad for path, parser in commands if (bad := _undocumented(parser))}
    assert not missing, f"actions without help text: {missing}"


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_ui_help_shows_the_default_port(capsys):
    assert "default 5000" in _help(capsys, "ui")


def test_bench_help_has_no_bare_rest(capsys):
    out = _help(capsys, "bench")
    assert "rest" not in out.split()
    assert "moe" in out and "options" in out
