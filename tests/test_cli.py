"""The `bertpipe` console script (bertpipe/cli.py): its help, its commands, and that it hands
each command's errors to run_cli like `python -m bertpipe.<command>` does."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from bertpipe import cli
from bertpipe.errors import InputError
from tests.conftest import ROOT


def bertpipe(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run the installed `bertpipe` script (pyproject's [project.scripts]) beside this Python."""
    script = shutil.which("bertpipe", path=str(Path(sys.executable).parent)) or shutil.which("bertpipe")
    assert script, "no `bertpipe` script: install the project (pip install -e .)"
    return subprocess.run([script, *args], cwd=ROOT, capture_output=True, text=True, input=stdin, timeout=300,
                          env={**os.environ, "BERTPIPE_DEBUG": ""}, check=False)


def test_help_lists_every_command_on_one_line():
    done = bertpipe("--help")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name, command in cli.COMMANDS.items():
        assert f"    {name:<10}{command.summary}" in lines, (name, done.stdout)


@pytest.mark.parametrize("command,options", [
    ("predict", ["--model", "--input", "--input-format", "--output", "--text-column", "--batch-size", "--precision"]),
    ("promote", ["--params", "--run-file", "--split", "--dry-run", "--allow-foreign-commit", "--diff-rev"]),
    ("recipes", ["--params", "--experiment", "--json"]),
    ("redact", ["-h, --help"]),
])
def test_each_command_has_help_with_its_options(command, options):
    done = bertpipe(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: bertpipe {command} ")
    missing = [o for o in options if o not in done.stdout]
    assert not missing, done.stdout


def test_no_or_unknown_command_is_a_usage_error():
    assert "required: <command>" in bertpipe().stderr
    done = bertpipe("trian")
    assert done.returncode == 2
    assert "invalid choice: 'trian' (choose from 'predict', 'promote', 'recipes', 'redact')" in done.stderr


def test_redact_filters_stdin():
    done = bertpipe("redact", stdin="pushing to s3://key:secret@bucket/x?sig=1\n")
    assert (done.returncode, done.stdout) == (0, "pushing to s3://***@bucket/x?sig=***\n")


def test_an_input_error_through_the_script_is_one_line(tmp_path):
    texts = tmp_path / "reviews.txt"
    texts.write_text("A fine film.\n")
    done = bertpipe("predict", "--model", "models/best", "--input", str(texts))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {texts}: unknown file type; use a .csv or .jsonl name, or say --input-format"]
    verbose = bertpipe("predict", "--model", "models/best", "--input", str(texts), "--verbose")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and "InputError" in verbose.stderr


def fake_command(monkeypatch, err: Exception) -> list[list[str]]:
    """A `boom` command whose main() records sys.argv and raises err."""
    seen: list[list[str]] = []

    def main() -> None:
        seen.append(list(sys.argv))
        raise err
    monkeypatch.setitem(sys.modules, "fake_boom", types.SimpleNamespace(main=main))
    monkeypatch.setitem(cli.COMMANDS, "boom", cli.Command("fake_boom", "raise"))
    monkeypatch.delenv("BERTPIPE_DEBUG", raising=False)
    return seen


def test_dispatch_gives_the_command_its_arguments_and_one_line_for_a_bertpipe_error(monkeypatch, capsys):
    seen = fake_command(monkeypatch, InputError("in.txt: unknown file type"))
    with pytest.raises(SystemExit) as stop:
        cli.main(["boom", "--model", "m", "a text"])
    assert stop.value.code == 1 and capsys.readouterr().err == "error: in.txt: unknown file type\n"
    assert seen == [["bertpipe boom", "--model", "m", "a text"]]


def test_dispatch_keeps_the_traceback_of_an_unexpected_error(monkeypatch):
    fake_command(monkeypatch, ZeroDivisionError("a bug"))
    with pytest.raises(ZeroDivisionError, match="a bug"):
        cli.main(["boom"])


def test_commands_are_the_modules_that_run_as_commands():
    """Every bertpipe module with a main() run under `if __name__ == "__main__"` is a command."""
    runnable = set()
    for path in sorted((ROOT / "bertpipe").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        has_main = any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)
        if has_main and path.stem != "cli" and "__main__" in path.read_text(encoding="utf-8"):
            runnable.add(f"bertpipe.{path.stem}")
    assert {c.module for c in cli.COMMANDS.values()} == runnable
