"""The `bertpipe` command: one name for the commands a person runs beside the pipeline.

    bertpipe predict --model models/best "A wonderful film."
    bertpipe promote --run-file models/run.json --split data/split --dry-run
    bertpipe recipes --json
    dvc push 2>&1 | bertpipe redact

Each command is a module's main(), run through bertpipe.logs.run_cli (one `error:` line for an
error whose message is the whole story, a traceback for a bug); `python -m bertpipe.<command>`
runs the same code. The module is imported only when its command runs, so `bertpipe --help`
answers at once. The pipeline's stages are DVC's to run (`dvc repro`), not listed here.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from typing import NamedTuple

from bertpipe.logs import VERBOSE_FLAG, run_cli


class Command(NamedTuple):
    module: str
    summary: str  # the line `bertpipe --help` shows


COMMANDS = {
    "predict": Command("bertpipe.predict", "classify texts with a checkpoint or an MLflow model"),
    "promote": Command("bertpipe.promote", "the promotion gate: train's model against the champion"),
    "recipes": Command("bertpipe.recipes", "each recipe's runs over seeds: mean, spread, interval"),
    "redact": Command("bertpipe.redact", "mask the credentials in URLs of stdin (a filter)"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bertpipe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"`bertpipe <command> --help` lists a command's options. {VERBOSE_FLAG} (or BERTPIPE_DEBUG=1)\n"
               "shows the traceback of an error too.")
    p.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('bertpipe')}")
    commands = p.add_subparsers(dest="command", metavar="<command>", required=True)
    for name, command in COMMANDS.items():
        commands.add_parser(name, help=command.summary, add_help=False)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    words = [a for a in argv if a != VERBOSE_FLAG]
    # Only the command's name is ours (or --help, --version); the rest is the command's to parse.
    parser().parse_args(words[:1])
    name, rest = words[0], words[1:]
    sys.argv = [f"bertpipe {name}", *rest, *([VERBOSE_FLAG] if VERBOSE_FLAG in argv else [])]
    run_cli(importlib.import_module(COMMANDS[name].module).main)


if __name__ == "__main__":
    main()
