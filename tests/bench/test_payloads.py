"""The bench's event traffic: random-id events are the same events with UUIDv4 ids, each id new."""

from __future__ import annotations

import itertools
import json
import uuid

from bench import payloads
from outrider.common import events


def test_random_ids_are_fresh_uuid4_and_change_nothing_else() -> None:
    structured = [json.loads(body) for body in itertools.islice(payloads.event_stream("p"), 2500)]
    random = [json.loads(body) for body in itertools.islice(payloads.event_stream("p", random_ids=True), 2500)]
    ids = [uuid.UUID(event["id"]) for event in random]
    assert {each.version for each in ids} == {4} and {each.variant for each in ids} == {uuid.RFC_4122}
    assert len(set(ids)) == len(ids)  # past one draw of the generator (1,000 ids), still all new
    assert [event["id"] for event in random] == [str(each) for each in ids]  # canonical text
    for plain, randomised in zip(structured, random, strict=True):
        assert {**randomised, "id": plain["id"], "time": plain["time"]} == plain
    assert events.validate_json_fast(b"[" + b",".join(itertools.islice(payloads.event_stream("q", random_ids=True), 100)) + b"]",
                                     array=True) is not None
