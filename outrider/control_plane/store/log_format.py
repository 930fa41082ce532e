"""The event log's rows: what an append writes, and how the projector and the readers of the tail read them back.

One row per accepted request (``tables.event_log``): the request's events as one JSON array, as ingestion
validated and serialised them, numbered ``seq``..``last_seq`` in body order without the duplicates (``skip``).
Why a row per request: the append then costs SQLite one row and one (source, id) key per event, about a quarter
of a row per event with the per-event indexes (docs/performance.md); the projector writes the per-event index
(``tables.events``) with the run records, in the same transaction as its checkpoint. The checkpoint only ever
moves to the end of a row (or back to 0 for a rebuild), so the rows after it are a range of the primary key:
``seq > checkpoint``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pydantic_core

from outrider.common import events

#: An event's idempotency key: (source, id).
Key = tuple[str, str]


class Encoded:
    """A request's events as the log appends them: their keys, in order, and their JSON array (text)."""

    __slots__ = ("body", "keys")

    def __init__(self, keys: list[Key], body: str) -> None:
        self.keys = keys
        self.body = body

    def __len__(self) -> int:
        return len(self.keys)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Encoded, (self.keys, self.body))


def encode(batch: Sequence[events.CloudEvent] | Encoded) -> Encoded:
    """Validated events as the log appends them (one serialisation call for the whole request)."""
    if isinstance(batch, Encoded):
        return batch
    listed = list(batch)
    return Encoded([(event.source, event.id) for event in listed], events.dump_batch_json(listed).decode())


def kept_indexes(count: int, skip: str | None) -> list[int]:
    """The body indexes a log row numbers (all but its ``skip`` ones), in order: the k-th is seq ``seq + k``."""
    if not skip:
        return list(range(count))
    skipped = set(json.loads(skip))
    return [index for index in range(count) if index not in skipped]


def explode(seq: int, body: str, skip: str | None, last_seq: int | None = None) -> list[tuple[int, Any]]:
    """(seq, event) of one log row's events, decoded, in seq order. ValueError when the body is not a JSON array,
    or (given ``last_seq``) holds another number of events than the row numbers: a damaged row."""
    items = pydantic_core.from_json(body)
    if not isinstance(items, list):
        raise ValueError("the body is not a JSON array")
    numbered = [(seq + offset, items[index]) for offset, index in enumerate(kept_indexes(len(items), skip))]
    if last_seq is not None and len(numbered) != last_seq - seq + 1:
        raise ValueError(f"the body holds {len(numbered)} events for seqs {seq}..{last_seq}")
    return numbered
