"""Secret redaction: the one place text passes through before an error is printed, stored or audited.

Two layers, because a secret reaches an error message in two ways:

1. **Known secrets.** Every value read from a `*_env` variable is registered (`register_secret`), with
   the parts of it that are credentials on their own: a URL's userinfo and password, its query values,
   its path segments that look like tokens (Slack's `/services/T…/B…/…`). Any occurrence of them in any
   text is replaced, whatever shape the text has (an error body echoing the request, a traceback).
   `redacted_output` applies this layer to everything a command writes to stdout and stderr.
2. **Shapes of secrets**, for text carrying one that was never registered (a literal URL in the
   configuration, a credential in a broker's reply): URL userinfo, query strings and token-like path
   segments, `user:password@host` without a scheme, Authorization-style headers, and JSON fields named
   like secrets (`routing_key`, `token`, `password`…).

What remains of a URL is its scheme, host, port and the path segments that are plain words: enough to
tell which sink or line is meant.
"""

from __future__ import annotations

import re
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

REDACTED = "[redacted]"
# Shorter fragments would redact ordinary words; registered secrets are long anyway.
_MIN_SECRET_LENGTH = 6
_MIN_TOKEN_SEGMENT = 8

_known: set[str] = set()

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")
_USERINFO = re.compile(r"(?<![\w/:@.\[-])[^\s/@:'\"=]+:[^\s/@'\"]+@(?=[\w\[])")
_SLACK_PATH = re.compile(r"/services/[^\s'\"?#]+")
_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|x-api-key|api-key|x-auth-token)(\s*[:=]\s*)"
    r"(?:(?:bearer|basic|token)\s+)?[^\s,;'\"]+"
)
_SECRET_FIELD = re.compile(
    r"(?i)(\"(?:routing_key|integration_key|token|access_token|password|secret|api_key|webhook_url|url)\""
    r"\s*:\s*\")[^\"]*(\")"
)


def _looks_like_token(segment: str) -> bool:
    """A path segment that is a credential rather than a word: long, with digits or mixed case."""
    return len(segment) >= _MIN_TOKEN_SEGMENT and (
        any(char.isdigit() for char in segment) or (segment.lower() != segment and segment.upper() != segment)
    )


def register_secret(value: str) -> None:
    """Remember a secret (and its credential parts) so that `redact` removes it from any text."""
    if not value:
        return
    parts = {value}
    try:
        split = urllib.parse.urlsplit(value)
    except ValueError:
        split = None
    if split is not None and split.scheme and split.netloc:
        userinfo = split.netloc.rpartition("@")[0]
        parts |= {userinfo, userinfo.partition(":")[2]}
        parts |= {query_value for _, query_value in urllib.parse.parse_qsl(split.query)}
        parts |= {segment for segment in split.path.split("/") if _looks_like_token(segment)}
        if "/services/" in split.path:
            parts.add(split.path.partition("/services/")[2])
        parts.add(split.query)
    _known.update(part for part in parts if len(part) >= _MIN_SECRET_LENGTH)


def redact_url(url: str) -> str:
    """scheme://host[:port]/path-words, without userinfo, query, fragment or token-like segments."""
    try:
        split = urllib.parse.urlsplit(url)
    except ValueError:
        return REDACTED
    host = split.netloc.rpartition("@")[2]
    if "/services/" in split.path:
        path = split.path.partition("/services/")[0] + "/services/" + REDACTED
    else:
        path = "/".join(
            REDACTED if _looks_like_token(segment) else segment for segment in split.path.split("/")
        )
    query = f"?{REDACTED}" if split.query else ""
    return f"{split.scheme}://{host}{path}{query}" if split.scheme else REDACTED


def redact_known(text: str) -> str:
    """Layer 1 only: every registered secret replaced (cheap when none is registered)."""
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact(text: object) -> str:
    """`text` (an error, a message, a response body) with every secret it may carry replaced."""
    text = redact_known(str(text))
    text = _URL.sub(lambda match: redact_url(match.group()), text)
    text = _SLACK_PATH.sub("/services/" + REDACTED, text)
    text = _USERINFO.sub(REDACTED + "@", text)
    text = _HEADER.sub(lambda match: match.group(1) + match.group(2) + REDACTED, text)
    return _SECRET_FIELD.sub(lambda match: match.group(1) + REDACTED + match.group(2), text)


class _RedactingStream:
    """A text stream that writes through `redact_known`; everything else is the wrapped stream's."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact_known(text) if _known else text)
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextmanager
def redacted_output() -> Iterator[None]:
    """stdout and stderr carry no registered secret while the block runs (a command's whole run)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _RedactingStream(sys.stdout), _RedactingStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
