"""Logging set-up shared by the stage scripts, and the one way every command-line entry point
turns an error into what a person reads. Every log line, error line and traceback has its
URLs' credentials masked (bertpipe.redact)."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable

from bertpipe.errors import BertpipeError
from bertpipe.redact import excepthook, mask_text, redact_handlers, traceback_hook

DEBUG_ENV = "BERTPIPE_DEBUG"  # =1: show the traceback of every error, as --verbose does
VERBOSE_FLAG = "--verbose"
# Errors whose message is the whole story: this project's own (bad params, data, inputs, a
# refusal, a server that does not answer) and a missing input file.
EXPECTED = (BertpipeError, FileNotFoundError)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper())
    redact_handlers(FORMAT, "%H:%M:%S")
    sys.excepthook = excepthook
    # Third-party chatter that says nothing about this pipeline's run.
    for noisy in ("urllib3", "alembic", "git", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*Token indices sequence length.*")


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a command's main(): a BertpipeError or a missing file prints one `error: <message>` line
    on stderr and exits 1; --verbose (taken out of sys.argv here) or BERTPIPE_DEBUG=1 shows its
    traceback too. Any other error is a bug and always shows its traceback."""
    verbose = VERBOSE_FLAG in sys.argv[1:] or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a != VERBOSE_FLAG)]
    setup_logging()
    if verbose:
        sys.excepthook = traceback_hook
    try:
        code = main()
    except EXPECTED as err:
        if verbose:
            raise
        print(mask_text(f"error: {err}"), file=sys.stderr)
        sys.exit(1)
    sys.exit(code or 0)
