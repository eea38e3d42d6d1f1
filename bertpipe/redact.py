"""Keep credentials out of everything this project prints or records.

URLs can carry secrets in two places: the user info (`https://user:token@host`) and the query
(`?token=...`, a presigned `X-Amz-Signature=...`). `mask_url` replaces both with `***`;
`mask_text` does it for every URL inside a longer text (a log line, an error, a traceback).
`setup_logging` (bertpipe.logs) installs `RedactingFormatter` and `excepthook`, so a log line
or an uncaught error is masked even when the code that made it forgot to.

Run as a filter, for the output of other programs (ci/retrain.sh pipes dvc through it):
    dvc push 2>&1 | bertpipe redact          (or: python -m bertpipe.redact)
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import traceback
import urllib.parse

from bertpipe.errors import BertpipeError

MASK = "***"
# scheme://[userinfo@]rest, up to whitespace or a quote; schemes such as s3, gs, ssh, https, postgresql+psycopg.
URL_RE = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^\s'\"<>`]+)")
# The URLs URL_RE finds in a text, found in linear time. URL_RE itself, searched through a text,
# starts again at every letter of a run of scheme characters and scans the run to its end each
# time: quadratic on a dotted run ("a." * 8000: 0.3 s, 4x per doubling). This one tries a run
# once, from its start: a run of scheme characters (group 1, kept as it is) with "://" and a
# character of the rest after it (the lookahead, one scan), then the scheme from the run's first
# letter at a word boundary, as URL_RE's leftmost match would start (":" ends every run, so a
# run holds one candidate "://"); a run without one is passed over in one step per character.
_URL_IN_TEXT = re.compile(r"(?<![a-zA-Z0-9+.-])(?=[a-zA-Z0-9+.-]*://[^\s'\"<>`])"
                          r"([a-zA-Z0-9+.-]*?)\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^\s'\"<>`]+)")


# The old name of bertpipe.errors.BertpipeError, kept for code that imports it from here.
PlainError = BertpipeError


def mask_url(url: str) -> str:
    """url with its user info and the values of its query parameters replaced by ***.

    Never raises: a string that does not parse as a URL is masked by pattern instead.
    """
    match = URL_RE.fullmatch(url.strip())
    if not match:
        return url
    return match.group(1) + _mask_rest(match.group(2))


def _mask_rest(rest: str) -> str:
    """The part after scheme://, masked: the user info before the host, the query's values."""
    cut = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        authority = MASK + "@" + authority.rsplit("@", 1)[1]
    path, qsep, query = tail.partition("?")
    if not qsep:
        return authority + tail
    query, hsep, fragment = query.partition("#")
    return authority + path + "?" + "&".join(_mask_pair(pair) for pair in query.split("&")) + hsep + fragment


# Query keys whose values are never secret: the MLflow UI's own link parameters
# (bertpipe.tracking.runs_link), which a masked link would break.
PLAIN_QUERY_KEYS = frozenset({"workflowType", "viewStateShareKey"})


def _mask_pair(pair: str) -> str:
    key, eq, value = pair.partition("=")
    return f"{key}={MASK}" if eq and value and key not in PLAIN_QUERY_KEYS else pair


# Query parameter names that carry a credential, compared by their last word (split at -, _, .
# and camelCase): token, access_token, X-Amz-Security-Token, api_key, apiKey, sig (Azure SAS),
# X-Amz-Signature, X-Goog-Credential, password, client_secret ...
CREDENTIAL_WORDS = frozenset({"token", "key", "apikey", "sig", "signature", "credential", "credentials",
                              "password", "passwd", "pwd", "secret", "auth", "authorization"})
_NAME_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def url_credential(url: str) -> str | None:
    """What in url looks like a credential ('user info', or "query parameter 'token'"), or None."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # not a URL: the download names what is wrong with it
        return None
    if "@" in parts.netloc:
        return "user info"
    for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        words = _NAME_WORDS.findall(name)
        if words and words[-1].lower() in CREDENTIAL_WORDS:
            return f"query parameter {name!r}"
    return None


def mask_text(text: str) -> str:
    """text with every URL in it masked (mask_url); linear in the text's length."""
    return _URL_IN_TEXT.sub(lambda m: m.group(1) + m.group(2) + _mask_rest(m.group(3)), text)


def mask_mapping(values: dict) -> dict:
    """A copy of values (MLflow params or tags) with URLs in string values masked; nested dicts too."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out[key] = mask_mapping(value)
        elif isinstance(value, str):
            out[key] = mask_text(value)
        else:
            out[key] = value
    return out


def parse_url(url: str, what: str) -> urllib.parse.SplitResult:
    """url split into parts, or a BertpipeError naming `what` (masked) when it cannot be a URL."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in 0-65535
    except ValueError as err:
        raise BertpipeError(f"{what}={mask_url(url)!r} is not a valid URL ({err}); expected "
                         "scheme://host[:port][/path], such as https://mlflow.example.org") from None
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise BertpipeError(f"{what}={mask_url(url)!r} is not a valid URL: no host name; expected "
                         f"{parts.scheme}://host[:port][/path]")
    return parts


class RedactingFormatter(logging.Formatter):
    """Formats as `inner` (or as a plain Formatter with these arguments), then masks the URLs
    in the whole output: message, arguments and traceback alike."""

    def __init__(self, *args, inner: logging.Formatter | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(self.inner.format(record) if self.inner else super().format(record))


def redact_handlers(fmt: str, datefmt: str) -> None:
    """Mask the output of every handler now configured: the root logger's (given fmt), and
    those libraries such as MLflow attached to their own loggers (their format kept)."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(fmt, datefmt=datefmt))
    for logger in list(logging.Logger.manager.loggerDict.values()):
        for handler in getattr(logger, "handlers", []):
            if not isinstance(handler.formatter, RedactingFormatter):
                handler.setFormatter(RedactingFormatter(inner=handler.formatter or logging.Formatter()))


def excepthook(kind, err, tb) -> None:
    """sys.excepthook: a BertpipeError as one line; any other error as its traceback; both masked."""
    if isinstance(err, BertpipeError):
        sys.stderr.write(mask_text(f"error: {err}\n"))
    else:
        traceback_hook(kind, err, tb)


def traceback_hook(kind, err, tb) -> None:
    """sys.excepthook for --verbose: every error as its traceback, masked."""
    sys.stderr.write(mask_text("".join(traceback.format_exception(kind, err, tb))))


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    for line in sys.stdin:
        sys.stdout.write(mask_text(line))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
