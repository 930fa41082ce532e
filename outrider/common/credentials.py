"""Per-run credentials: short-lived tokens the operator mints for one admitted Run, the control plane verifies.

Why a signed token and not Kubernetes ServiceAccount tokens with TokenReview: a ServiceAccount belongs to a
namespace, not to a run, so it cannot say "this run, this target, until it ends"; checking it needs a
TokenReview call to the API server per new token (and RBAC for it in the control plane); and off-cluster
control planes could not check it at all. A token signed with a key that only the operator and the control
plane hold (a Secret mounted in those two pods, never in a Job) carries the run's identity itself, is
checked offline in microseconds, and expires on its own. See docs/concepts/security.md.

Format (``ort1`` = Outrider run token, version 1)::

    ort1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(key, "ort1." + claims part))>

Claims: ``ns`` (namespace), ``run`` (the Run's name), ``tgt`` (its target), ``iat`` and ``exp`` (Unix seconds).
Verification accepts any of several keys (rotation: sign with the first, accept all).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

PREFIX = "ort1"
#: Where the operator mounts the run's token in its Job's containers, and the variable naming that file.
TOKEN_FILE_ENV = "OUTRIDER_TOKEN_FILE"
TOKEN_MOUNT_DIR = "/var/run/secrets/outrider"
TOKEN_FILE = f"{TOKEN_MOUNT_DIR}/token"
#: The environment variable naming the Run's namespace inside its Job (the token says it too).
RUN_NAMESPACE_ENV = "OUTRIDER_RUN_NAMESPACE"
#: The shortest signing key accepted (bytes): HMAC-SHA256 keys shorter than this are guessable.
MIN_KEY_BYTES = 32


class InvalidCredential(Exception):
    """A run token that is malformed, forged, or expired; the message says which (for logs, not for clients)."""


@dataclass(frozen=True, slots=True)
class RunClaims:
    """What a valid run token says: the one run it may write for, and until when."""

    namespace: str
    run: str
    target: str
    issued_at: int
    expires_at: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, signed: str) -> bytes:
    return hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest()


def looks_like_run_token(token: str) -> bool:
    """Whether ``token`` has the run-token shape (cheap; says nothing of its validity)."""
    return token.startswith(PREFIX + ".")


def mint(key: bytes, *, namespace: str, run: str, target: str, ttl_seconds: int, now: float | None = None) -> str:
    """A token for one run, valid for ``ttl_seconds`` from ``now``."""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the signing key has {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
    issued = int(time.time() if now is None else now)
    claims = {"ns": namespace, "run": run, "tgt": target, "iat": issued, "exp": issued + int(ttl_seconds)}
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    signed = f"{PREFIX}.{body}"
    return f"{signed}.{_b64(_signature(key, signed))}"


def verify(keys: Sequence[bytes], token: str, now: float | None = None) -> RunClaims:
    """The claims of a token signed by one of ``keys`` and not expired at ``now``; else :class:`InvalidCredential`."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise InvalidCredential("not a run token")
    signed = f"{parts[0]}.{parts[1]}"
    try:
        given = _unb64(parts[2])
    except ValueError as exc:
        raise InvalidCredential("malformed signature") from exc
    if not any(hmac.compare_digest(given, _signature(key, signed)) for key in keys):
        raise InvalidCredential("bad signature")
    try:
        claims = json.loads(_unb64(parts[1]))
        result = RunClaims(
            namespace=str(claims["ns"]), run=str(claims["run"]), target=str(claims["tgt"]),
            issued_at=int(claims["iat"]), expires_at=int(claims["exp"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidCredential("malformed claims") from exc
    if (time.time() if now is None else now) >= result.expires_at:
        raise InvalidCredential("expired")
    return result


def load_keys(text: str) -> list[bytes]:
    """Signing keys from a file's or variable's text: one per line, blank lines and # comments ignored."""
    keys = [line.strip().encode("utf-8") for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    short = [key for key in keys if len(key) < MIN_KEY_BYTES]
    if short:
        raise ValueError(f"a run signing key must be at least {MIN_KEY_BYTES} bytes")
    return keys
