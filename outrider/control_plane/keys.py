"""API keys: created with a role and optional tenant bounds, stored hashed, revocable at once, listed without secrets.

A key reads ``otk_<key_id>_<secret>``: the id finds the row, and the SHA-256 of the whole key is compared in
constant time with the stored hash. A fast hash is right here (unlike for passwords): the secret is 256
random bits, so there is nothing to guess that a slow hash would protect. The key itself is shown once, when
created, and never stored.

Lookups are cached per process for ``key_cache_seconds`` so the ingest hot path reads no table per request;
a revocation clears this process's cache at once (other replicas follow within the cache time, documented).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from outrider.control_plane import tables
from outrider.control_plane.principals import KEY_ROLES, Principal, Role

PREFIX = "otk_"


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def looks_like_key(token: str) -> bool:
    return token.startswith(PREFIX)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as listed: everything but its secret."""

    key_id: str
    name: str | None
    role: Role
    namespaces: list[str] | None
    targets: list[str] | None
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    revoked_at: datetime | None

    def principal(self) -> Principal:
        return Principal(
            key_id=self.key_id, role=self.role,
            namespaces=frozenset(self.namespaces) if self.namespaces is not None else None,
            targets=frozenset(self.targets) if self.targets is not None else None,
            expires_at=self.expires_at,
        )

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def _record(row: Any) -> KeyRecord:
    return KeyRecord(
        key_id=row.key_id, name=row.name, role=Role(row.role),
        namespaces=json.loads(row.namespaces) if row.namespaces is not None else None,
        targets=json.loads(row.targets) if row.targets is not None else None,
        created_at=_utc(row.created_at) or datetime.now(UTC), created_by=row.created_by,
        expires_at=_utc(row.expires_at), revoked_at=_utc(row.revoked_at),
    )


class KeyStore:
    """Keys in the store's database (the server process writes them directly: they are rare)."""

    def __init__(self, engine: sa.Engine, cache_seconds: float) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, str | None, KeyRecord | None]] = {}
        self._lock = threading.Lock()

    def create(self, role: Role, *, name: str | None = None, namespaces: Iterable[str] | None = None,
               targets: Iterable[str] | None = None, expires_at: datetime | None = None,
               created_by: str | None = None) -> tuple[KeyRecord, str]:
        """A new key and its secret (shown once)."""
        if role not in KEY_ROLES:
            raise ValueError(f"keys cannot have role {role.value}")
        key_id = secrets.token_hex(8)
        secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = datetime.now(UTC)
        values = {
            "key_id": key_id, "name": name, "secret_sha256": digest(secret), "role": role.value,
            "namespaces": json.dumps(sorted(set(namespaces))) if namespaces is not None else None,
            "targets": json.dumps(sorted(set(targets))) if targets is not None else None,
            "created_at": now, "created_by": created_by, "expires_at": expires_at, "revoked_at": None,
        }
        with self.engine.begin() as conn:
            conn.execute(sa.insert(tables.api_keys).values(**values))
        return _record(_Values(values)), secret

    def list(self) -> list[KeyRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(tables.api_keys).order_by(tables.api_keys.c.created_at)).all()
        return [_record(row) for row in rows]

    def get(self, key_id: str) -> KeyRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(tables.api_keys).where(tables.api_keys.c.key_id == key_id)).first()
        return _record(row) if row is not None else None

    def revoke(self, key_id: str) -> KeyRecord | None:
        """Revoke a key (idempotent); None when there is no such key. Clears this process's cache at once."""
        keys = tables.api_keys
        with self.engine.begin() as conn:
            conn.execute(sa.update(keys).where(keys.c.key_id == key_id, keys.c.revoked_at.is_(None))
                         .values(revoked_at=datetime.now(UTC)))
            row = conn.execute(sa.select(keys).where(keys.c.key_id == key_id)).first()
        with self._lock:
            self._cache.pop(key_id, None)
        return _record(row) if row is not None else None

    def needs_read(self, presented: str) -> bool:
        """Whether resolving ``presented`` reads the table (no fresh cache entry): callers in an event loop then
        resolve in a thread."""
        parts = presented.split("_", 2)
        if len(parts) != 3:
            return False
        with self._lock:
            cached = self._cache.get(parts[1])
        return cached is None or time.monotonic() - cached[0] > self.cache_seconds

    def resolve(self, presented: str) -> Principal | None:
        """The principal of a presented key, or None when it is unknown, wrong, revoked or expired."""
        parts = presented.split("_", 2)
        if len(parts) != 3 or not parts[1]:
            return None
        key_id = parts[1]
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is None or now - cached[0] > self.cache_seconds:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(tables.api_keys).where(tables.api_keys.c.key_id == key_id)).first()
            cached = (now, row.secret_sha256 if row is not None else None, _record(row) if row is not None else None)
            with self._lock:
                if len(self._cache) > 10_000:  # a flood of made-up ids must not grow memory without bound
                    self._cache.clear()
                self._cache[key_id] = cached
        _, stored_hash, record = cached
        if stored_hash is None or record is None:
            return None
        if not hmac.compare_digest(digest(presented), stored_hash):
            return None
        if not record.usable(datetime.now(UTC)):
            return None
        return record.principal()


class _Values:
    """Attribute access to a dict of column values (what a fetched row gives), for a key just inserted."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
