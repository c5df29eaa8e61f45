"""The README stays honest: every command and make target it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from civicflow.cli import app

PROJECT = Path(__file__).resolve().parents[1]
README = (PROJECT / "README.md").read_text()
MAKEFILE = (PROJECT / "Makefile").read_text()

CLI_COMMANDS = sorted(set(re.findall(r"`civicflow ([a-z]+(?: [a-z]+)?)", README)))
MAKE_TARGETS = sorted(set(re.findall(r"`make ([a-z-]+)", README)))


def test_quick_start_is_exactly_make_run_and_make_test() -> None:
    quick = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make run", "make test"]


@pytest.mark.parametrize("command", CLI_COMMANDS)
def test_every_cli_command_in_readme_exists(command: str) -> None:
    words = [w for w in command.split() if not w.isupper() and w.isidentifier()]
    result = CliRunner().invoke(app, [*words, "--help"])
    assert result.exit_code == 0, f"`civicflow {command}` in README: {result.output}"


@pytest.mark.parametrize("target", MAKE_TARGETS)
def test_every_make_target_in_readme_exists(target: str) -> None:
    assert re.search(rf"^{target}:", MAKEFILE, re.M), f"README names `make {target}`"


def test_every_env_var_in_readme_is_used_by_the_code() -> None:
    names = set(re.findall(r"`((?:CIVICFLOW|DATASETTE)_[A-Z_]+)`", README))
    code = [*(PROJECT / "src").rglob("*.py"), *(PROJECT / "flows").glob("*.py")]
    source = "\n".join(p.read_text() for p in code)
    assert names, "README lists no configuration"
    assert sorted(n for n in names if n not in source) == []


def _commands_table() -> str:
    return README.split("## Commands", 1)[1].split("\n## ", 1)[0]


def test_every_cli_command_is_in_the_readme_commands_table() -> None:
    import typer.main

    group = typer.main.get_command(app)
    assert isinstance(group, typer.main.TyperGroup)
    listed = set(re.findall(r"^\| `civicflow ([a-z]+)", _commands_table(), re.M))
    assert sorted(set(group.commands) - listed) == []


def test_every_retention_setting_is_in_the_readme_configuration_table() -> None:
    table = README.split("## Configuration (environment)", 1)[1].split("\n## ", 1)[0]
    for name in ("CIVICFLOW_KEEP_RUNS", "CIVICFLOW_KEEP_DAYS"):
        assert f"| `{name}` |" in table, name
