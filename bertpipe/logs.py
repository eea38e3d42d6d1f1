"""Logging set-up shared by the stage scripts: every line and uncaught error has its URLs'
credentials masked (bertpipe.redact)."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from bertpipe.redact import excepthook, redact_handlers

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper())
    redact_handlers(FORMAT, "%H:%M:%S")
    sys.excepthook = excepthook
    # Third-party chatter that says nothing about this pipeline's run.
    for noisy in ("urllib3", "alembic", "git", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*Token indices sequence length.*")
