"""The README is a user's guide and the docs hold together: README.md stays short, links every
doc, every relative link in README.md, docs/*.md and bench/README.md names a file and heading
that exist, and every command of their ```bash blocks runs a program that exists, with the
subcommands and flags it accepts.

The commands are checked, not run: tests/test_readme.py runs the README's experiment, promotion,
prediction and serving commands word for word, tests/test_bench.py runs each benchmark in its
--quick mode and tests/test_pinning.py compares the install lines with .ci/run; the rest (the
full-data runs take an hour and more, torchrun wants GPUs, a DVC remote wants a bucket) would
cost far more than they prove here. Each command's own parser (argparse for the stages,
bertpipe's commands, the benchmarks, torchrun and DVC; click for MLflow) reads its arguments
and stops before any work, all in one Python process that imports torch, MLflow and DVC once."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
README_MAX_LINES = 250  # issue 20: a user's guide of at most about 250 lines; reference and history go to docs/
# Values for the placeholders the docs' commands use (torchrun on several nodes).
EXAMPLE_ENV = {"NODE_RANK": "0", "MASTER_HOST": "node0.example.org"}
# Programs only looked up on PATH: their commands are run by other tests or are plain shell.
ON_PATH = {"git", "cp", "cat", "curl", "pip"}
SEPARATORS = {"&&", "||", "|", ";", "&"}
REDIRECTS = {">", ">>", "<"}

# Runs in a subprocess: reads [[kind, target, argv], ...] on stdin and prints one error (or null) per
# entry. ArgumentParser.parse_args is patched to stop right after a successful parse, so a script's
# main() reads its arguments with its own parser and does nothing else.
PARSE_ONLY = r'''
import argparse, contextlib, io, json, runpy, sys

class Parsed(BaseException):  # not an Exception: run_cli and the scripts' handlers let it through
    pass

parse = argparse.ArgumentParser.parse_args

def parse_then_stop(self, args=None, namespace=None):
    parse(self, args, namespace)
    raise Parsed

def check_module(module, argv):
    sys.argv = [module, *argv]
    runpy.run_module(module, run_name="__main__", alter_sys=True)

def check_path(path, argv):
    sys.argv = [path, *argv]
    runpy.run_path(path, run_name="__main__")

def check_dvc(_, argv):
    from dvc.cli import parse_args
    from dvc.cli.parser import DvcParser

    def error(self, message, cmd_cls=None):  # DVC logs the message and prints a help page instead
        raise SystemExit(f"dvc: {message}")

    DvcParser.error = error
    parse_args(argv)  # DVC's own parse_args: it returns, or errors on a bad argument
    raise Parsed

def check_torchrun(_, argv):
    from torch.distributed.run import get_args_parser
    ns = parse(get_args_parser(), argv)
    if not ns.module:
        raise SystemExit("the docs run the train stage as a module: torchrun ... -m stages.train")
    check_module(ns.training_script, ns.training_script_args)

def check_mlflow(_, argv):
    import click
    from mlflow.cli import cli
    command, words = cli, list(argv)
    while isinstance(command, click.Group):
        name, words = words[0], words[1:]
        command = command.get_command(click.Context(command), name)
        if command is None:
            raise SystemExit(f"mlflow has no command {name!r}")
    command.make_context(command.name, words)
    raise Parsed

CHECKS = {"module": check_module, "path": check_path, "dvc": check_dvc, "torchrun": check_torchrun,
          "mlflow": check_mlflow}
argparse.ArgumentParser.parse_args = parse_then_stop
results = []
for kind, target, argv in json.load(sys.stdin):
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            CHECKS[kind](target, argv)
        results.append(f"{target} returned without reading its arguments")
    except Parsed:
        results.append(None)
    except SystemExit as exit:
        results.append(f"exit {exit.code}: {err.getvalue()[-1500:]}")
    except Exception as error:  # DVC's parser prints the usage, then raises; click raises with the message
        results.append(f"{err.getvalue()}{type(error).__name__}: {error}"[-1500:])
print(json.dumps(results), file=sys.__stdout__)
'''


def bash_commands(path: Path) -> list[str]:
    """The commands of the ```bash blocks of one file, backslash continuations joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line)
    return commands


def simple_commands(line: str) -> list[list[str]]:
    """A command line as its simple commands' words: split at && || | ; &, redirections, leading
    `time` / `nice -n N` / `NAME=value` and comments dropped, $VARS given EXAMPLE_ENV's values."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    words, commands, skip = [], [], False
    for token in list(lexer) + [";"]:
        if skip:
            skip = False
        elif token in REDIRECTS:
            skip = True
        elif token in SEPARATORS:
            if words:
                commands.append(words)
            words = []
        else:
            words.append(re.sub(r"\$(\w+)", lambda m: EXAMPLE_ENV[m.group(1)], token))
    for words in commands:
        while words[0] in ("time", "nice") or (re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]) and words[1:]):
            del words[:3 if words[:2] == ["nice", "-n"] else 1]
    return commands


def classify(words: list[str]) -> tuple[str, str, list[str]] | str | None:
    """What to check for one simple command: (kind, target, argv) for the parse-only process, an
    error message, or None when a check here is enough."""
    program, args = words[0], words[1:]
    if program == "cd":
        return None
    if program in ON_PATH:
        return None if shutil.which(program) else f"{program} is not on PATH"
    if program == "dvc":
        return ("dvc", "dvc", args)
    if program == "torchrun":
        return ("torchrun", "torchrun", args)
    if program == "mlflow":
        return ("mlflow", "mlflow", args)
    if program == "bertpipe":  # the console command: `bertpipe predict ...` is bertpipe.predict's main
        return ("module", f"bertpipe.{args[0]}", args[1:])
    if program == "bash":
        return check_script(args)
    if program == "python" and args[:1] == ["-m"]:
        module, argv = args[1], args[2:]
        if module in ("pip", "pytest"):  # installing: tests/test_pinning.py; testing: the suite itself
            missing = [f for f in re.findall(r"-r (\S+)", " ".join(argv)) if not (ROOT / f).is_file()]
            return f"{module} installs from missing files {missing}" if missing else None
        if module.split(".")[0] in ("stages", "bertpipe"):
            return ("module", module, argv)
        return f"python -m {module}: not a module of this project"
    if program == "python" and args[:1] == ["-c"]:
        try:
            compile(args[1], "<python -c>", "exec")
        except SyntaxError as err:
            return f"python -c: {err}"
        return None
    if program == "python" and args and args[0].endswith(".py"):
        script = ROOT / args[0]
        return ("path", str(script), args[1:]) if script.is_file() else f"{args[0]} does not exist"
    return f"no check for the program {program!r}: add one to tests/test_docs.py"


def check_script(args: list[str]) -> str | None:
    """`bash <script> [--option value]`: the script exists, bash parses it, and it handles each
    option and value given."""
    script = ROOT / args[0]
    if not script.is_file():
        return f"{args[0]} does not exist"
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    if syntax.returncode != 0:
        return f"bash -n {args[0]}: {syntax.stderr}"
    text = script.read_text(encoding="utf-8")
    unknown = [a for a in args[1:] if a not in text]
    return f"{args[0]} does not handle {unknown}" if unknown else None


def shown_commands() -> list[tuple[str, str, list[str]]]:
    """(file, command line, words) of every simple command in the docs' ```bash blocks."""
    return [(path.relative_to(ROOT).as_posix(), line, words)
            for path in DOCS for line in bash_commands(path) for words in simple_commands(line)]


# Commands with one mistake each: the check must catch them (the error text it must show).
WRONG = [(["python", "-m", "bertpipe.predict", "--model", "models/best", "--no-such-flag"],
          "unrecognized arguments: --no-such-flag"),
         (["torchrun", "--standalone", "-m", "stages.train", "--data", "data/tokenized"],
          "the following arguments are required: --split"),
         (["python", "bench/predict_bench.py", "--rowz", "5"], "unrecognized arguments: --rowz"),
         (["python", "bench/recipe_search.py", "pack", "--out", ".gpu"], "the following arguments are required: "
                                                                          "--split"),
         (["dvc", "exp", "runn"], "invalid choice: 'runn'"),
         (["mlflow", "models", "serv"], "no command 'serv'"),
         (["mlflow", "models", "serve", "--no-such-flag"], "No such option")]


@pytest.fixture(scope="module")
def checked() -> tuple[list[str], list[str | None]]:
    """(errors found in the docs' commands, the check's answer for each of WRONG), from one
    parse-only process for all of them."""
    errors, queued = [], []
    for file, line, words in shown_commands():
        check = classify(words)
        if isinstance(check, str):
            errors.append(f"{file}: {line}\n  {check}")
        elif check is not None:
            queued.append((f"{file}: {line}", check))
    queued += [(" ".join(words), classify(words)) for words, _ in WRONG]
    done = subprocess.run([sys.executable, "-c", PARSE_ONLY], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          input=json.dumps([check for _, check in queued]), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    errors += [f"{where}\n  {error}" for (where, _), error in zip(queued[:-len(WRONG)], results, strict=False) if error]
    return errors, results[-len(WRONG):]


def test_every_command_shown_exists_with_the_flags_given(checked):
    programs = {words[0] for _, _, words in shown_commands()}
    assert {"dvc", "python", "torchrun", "bash", "mlflow"} <= programs, programs  # the blocks were found
    errors, _ = checked
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("index", range(len(WRONG)), ids=[" ".join(w) for w, _ in WRONG])
def test_the_check_catches_a_wrong_flag_or_command(checked, index):
    _, results = checked
    assert results[index] and WRONG[index][1] in results[index], results[index]


def test_simple_commands_split_pipes_chains_and_redirections():
    assert simple_commands("cat reviews.txt | python -m bertpipe.predict --model models/best > scored.jsonl") == [
        ["cat", "reviews.txt"], ["python", "-m", "bertpipe.predict", "--model", "models/best"]]
    assert simple_commands("dvc exp apply lr-5e-5 && git commit -am \"lr 5e-5\" && dvc push   # keep") == [
        ["dvc", "exp", "apply", "lr-5e-5"], ["git", "commit", "-am", "lr 5e-5"], ["dvc", "push"]]
    assert simple_commands("nice -n 19 torchrun --node-rank $NODE_RANK") == [["torchrun", "--node-rank", "0"]]


def test_the_readme_is_a_short_guide_that_links_every_doc():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move reference or history to docs/"
    targets = {target.split("#")[0] for target in links(README)}
    for doc in DOCS[1:]:
        assert doc.relative_to(ROOT).as_posix() in targets, f"the README does not link {doc.relative_to(ROOT)}"


def links(path: Path) -> list[str]:
    """The relative link targets of a markdown file, outside code."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]


def anchors(path: Path) -> Iterator[str]:
    """GitHub's anchors for a markdown file's headings: lower case, punctuation but - and _ dropped,
    spaces as hyphens, a repeated heading suffixed -1, -2, ..."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        yield slug if seen[slug] == 0 else f"{slug}-{seen[slug]}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_names_a_file_and_heading_that_exist(doc):
    broken = []
    for target in links(doc):
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and anchor not in set(anchors(dest)):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)
