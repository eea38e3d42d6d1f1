"""Logging set-up shared by the stage scripts."""

from __future__ import annotations

import logging
import os
import warnings


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Third-party chatter that says nothing about this pipeline's run.
    for noisy in ("urllib3", "alembic", "git", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*Token indices sequence length.*")
