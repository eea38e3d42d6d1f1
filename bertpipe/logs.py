"""Logging set-up shared by the stage scripts, and the one way every command-line entry point
turns an error into what a person reads. Every log line, error line and traceback has its
URLs' credentials masked (bertpipe.redact)."""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from bertpipe.redact import PlainError, excepthook, mask_text, redact_handlers

DEBUG_ENV = "BERTPIPE_DEBUG"  # =1: show the traceback of every error, as --verbose does
VERBOSE_FLAG = "--verbose"
# Our own code: a ValueError raised here is a deliberate message (bad params, data or files).
_OWN_CODE = tuple(str(Path(__file__).resolve().parents[1] / name) + os.sep for name in ("bertpipe", "stages"))
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper())
    redact_handlers(FORMAT, "%H:%M:%S")
    sys.excepthook = excepthook
    # Third-party chatter that says nothing about this pipeline's run.
    for noisy in ("urllib3", "alembic", "git", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*Token indices sequence length.*")


def is_expected(err: BaseException) -> bool:
    """Errors whose message is the whole story: a missing input file, a server that does not
    answer, or a ValueError with a message raised by this project's own code (ParamsError,
    SourceError, ContractError and the checks in the stages are all ValueErrors)."""
    if isinstance(err, (FileNotFoundError, ConnectionError, PlainError)):
        return True
    if not isinstance(err, ValueError) or not str(err):
        return False
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and str(Path(frames[-1].filename).resolve()).startswith(_OWN_CODE)


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a command's main(): an expected error prints one `error: <message>` line on stderr and
    exits 1; --verbose (taken out of sys.argv here) or BERTPIPE_DEBUG=1 shows its traceback too.
    Unexpected errors always show theirs."""
    verbose = VERBOSE_FLAG in sys.argv[1:] or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a != VERBOSE_FLAG)]
    setup_logging()
    try:
        code = main()
    except Exception as err:
        if verbose or not is_expected(err):
            raise
        print(mask_text(f"error: {err}"), file=sys.stderr)
        sys.exit(1)
    sys.exit(code or 0)
