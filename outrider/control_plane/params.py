"""Parsing of query parameters shared by routes: time windows (``30m``, ``24h``, ``7d``) and opaque cursors.

Cursors are base64url of a small JSON document. They are opaque to clients (only ever passed back as
``?cursor=``) so the store may change what they encode; a cursor that does not decode is a 422.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from outrider.common import events
from outrider.control_plane import errors

#: The largest position (``seq``) a cursor, ``?after=`` or ``Last-Event-ID`` may name: the store's 64-bit ids.
MAX_SEQ = 2**63 - 1

WINDOW = re.compile(r"^([1-9][0-9]{0,5})([smhdw])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_WINDOW = timedelta(days=3660)


def window(text: str) -> timedelta:
    """A window like ``30m``, ``24h``, ``7d`` (units s, m, h, d, w); 422 ``invalid_window`` otherwise."""
    match = WINDOW.match(text.strip())
    if not match:
        raise errors.APIError(
            422, "invalid_window", f"window {text!r} is not a number followed by s, m, h, d or w (e.g. 24h)"
        )
    span = timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])
    if span > MAX_WINDOW:
        raise errors.APIError(422, "invalid_window", f"window {text!r} is longer than 3660 days")
    return span


def aware(moment: datetime | None) -> datetime | None:
    """A query timestamp as aware UTC; one without an offset is taken as UTC. Moments outside the range events
    may carry (``events.EARLIEST``..``events.LATEST``) are clamped to it: no event lies beyond, and UTC
    arithmetic near year 1 or 9999 overflows (``0001-01-01T00:00:00+14:00`` is in year 0)."""
    if moment is None:
        return None
    try:
        utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        return events.EARLIEST if moment.year < 5000 else events.LATEST
    return min(max(utc, events.EARLIEST), events.LATEST)


def _not_ours() -> errors.APIError:
    return errors.APIError(422, "invalid_cursor", "the cursor is not one this API issued")


def seq(value: Any) -> int:
    """A position from a decoded cursor: an integer in 0..MAX_SEQ, else 422 ``invalid_cursor``."""
    if type(value) is not int or not 0 <= value <= MAX_SEQ:  # bool, float (1e308), str ("1 OR 1=1"), 2**70
        raise _not_ours()
    return value


def moment(value: Any) -> datetime:
    """A time from a decoded cursor, as aware UTC within the events' range; else 422 ``invalid_cursor``."""
    if not isinstance(value, str) or len(value) > 64:
        raise _not_ours()
    try:
        parsed = aware(datetime.fromisoformat(value))
    except ValueError as exc:
        raise _not_ours() from exc
    assert parsed is not None
    return parsed


def last_event_id(header: str | None) -> int | None:
    """The ``Last-Event-ID`` of a reconnecting SSE client: a seq in 0..MAX_SEQ; 422 otherwise (a 5000-digit
    header is refused before it becomes an integer)."""
    if header is None or not header.strip():
        return None
    text = header.strip()
    if len(text) > 19 or not text.isascii() or not text.isdigit() or int(text) > MAX_SEQ:
        raise errors.APIError(422, "invalid_last_event_id", f"Last-Event-ID must be an event position from 0 to {MAX_SEQ}")
    return int(text)


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *keys: str) -> dict[str, Any]:
    """The position a cursor encodes; 422 ``invalid_cursor`` when it is not one of ours. Callers check each
    value with :func:`seq` / :func:`moment` (a cursor is client input: ``{"seq": 1e308}`` decodes fine)."""
    if len(cursor) > 1024:
        raise _not_ours()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
        if not isinstance(position, dict) or any(key not in position for key in keys):
            raise ValueError("missing keys")
        return position
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _not_ours() from exc
