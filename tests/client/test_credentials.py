"""Run credentials (``outrider.common.credentials``): what verifies, and every way a token must not."""

from __future__ import annotations

import base64
import json
import secrets

import pytest

from outrider.common import credentials

KEY = secrets.token_bytes(32)
OTHER = secrets.token_bytes(32)
NOW = 1_800_000_000.0


def _mint(key: bytes = KEY, ttl: int = 600) -> str:
    return credentials.mint(key, namespace="team-a", run="web-1", target="web", ttl_seconds=ttl, now=NOW)


def test_a_token_verifies_and_says_which_run() -> None:
    claims = credentials.verify([KEY], _mint(), now=NOW + 1)
    assert (claims.namespace, claims.run, claims.target) == ("team-a", "web-1", "web")
    assert claims.expires_at == int(NOW) + 600


def test_rotation_accepts_any_listed_key() -> None:
    assert credentials.verify([OTHER, KEY], _mint(), now=NOW).run == "web-1"


@pytest.mark.parametrize("case", ["wrong key", "tampered claims", "expired", "not a token", "bad signature encoding"])
def test_what_does_not_verify(case: str) -> None:
    token = _mint()
    keys, now = [KEY], NOW + 1
    if case == "wrong key":
        keys = [OTHER]
    elif case == "tampered claims":
        prefix, body, signature = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=="))
        claims["run"] = "web-2"
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        token = f"{prefix}.{forged}.{signature}"
    elif case == "expired":
        now = NOW + 601
    elif case == "not a token":
        token = "otk_abc_def"
    else:
        token = token.rsplit(".", 1)[0] + ".***"
    with pytest.raises(credentials.InvalidCredential):
        credentials.verify(keys, token, now=now)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        credentials.mint(b"short", namespace="n", run="r", target="t", ttl_seconds=60)
    with pytest.raises(ValueError, match="at least 32"):
        credentials.load_keys("# a comment\nshort\n")
    assert credentials.load_keys("\n# rotation: newest first\n" + "k" * 32 + "\n" + "j" * 40) == [b"k" * 32, b"j" * 40]
