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

from outrider.control_plane import errors

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
    """A query timestamp as aware UTC; one without an offset is taken as UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *keys: str) -> dict[str, Any]:
    """The position a cursor encodes; 422 ``invalid_cursor`` when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
        if not isinstance(position, dict) or any(key not in position for key in keys):
            raise ValueError("missing keys")
        return position
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise errors.APIError(422, "invalid_cursor", "the cursor is not one this API issued") from exc
