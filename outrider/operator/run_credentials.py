"""Per-run credentials: when the operator admits a Run, its Job gets a token for that run only.

The token (``outrider.common.credentials``, signed with the key in ``OUTRIDER_RUN_SIGNING_KEY_FILE``) lets the
Job's workers write ``run.*``/``pr.*`` events of that run, in its namespace and target, and nothing else; it
ends when the run finishes (plus the control plane's grace period) or expires. It lives in a Secret of the
Run's own (``<run>-outrider-token``, owned by the Run so it goes with it), mounted read-only into every
container of the Job at ``/var/run/secrets/outrider/token`` (``OUTRIDER_TOKEN_FILE``), where the worker SDK
finds it. No shared secret is ever written into a Job or pod spec. Without a signing key nothing changes:
Jobs get no credential (logged once at start).
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

from outrider.common import credentials, k8s
from outrider.operator import kube

log = logging.getLogger(__name__)

VOLUME = "outrider-run-credential"
SECRET_KEY = "token"
#: Added to a Run's activeDeadlineSeconds for its credential's lifetime: the worker's last events still arrive.
DEADLINE_MARGIN_SECONDS = 600


def secret_name(run_name: str) -> str:
    return f"{run_name}-outrider-token"[:253]


def load_signing_key(path: Path | None) -> bytes | None:
    """The signing key (the file's first key), or None when none is configured; a bad key stops the operator."""
    if path is None:
        log.info("no run signing key (OUTRIDER_RUN_SIGNING_KEY_FILE): Jobs get no per-run credential")
        return None
    keys = credentials.load_keys(path.read_text(encoding="utf-8"))
    if not keys:
        raise ValueError(f"{path} holds no run signing key")
    return keys[0]


def mount(pod_spec: dict[str, Any], run_name: str) -> None:
    """Mount the run's credential Secret into every container (read-only) and point OUTRIDER_TOKEN_FILE at it."""
    volumes = pod_spec.setdefault("volumes", [])
    if not any(volume.get("name") == VOLUME for volume in volumes):
        volumes.append({"name": VOLUME, "secret": {"secretName": secret_name(run_name), "defaultMode": 0o440,
                                                    "items": [{"key": SECRET_KEY, "path": "token"}]}})
    for container in pod_spec.get("containers") or []:
        mounts = container.setdefault("volumeMounts", [])
        if not any(m.get("name") == VOLUME for m in mounts):
            mounts.append({"name": VOLUME, "mountPath": credentials.TOKEN_MOUNT_DIR, "readOnly": True})
        env = container.setdefault("env", [])
        if not any(item.get("name") == credentials.TOKEN_FILE_ENV for item in env):
            env.append({"name": credentials.TOKEN_FILE_ENV, "value": credentials.TOKEN_FILE})


def ttl_seconds(default: int, active_deadline_seconds: int | None) -> int:
    if active_deadline_seconds is None:
        return default
    return min(default, int(active_deadline_seconds) + DEADLINE_MARGIN_SECONDS)


def secret_for(key: bytes, *, namespace: str, run_name: str, run_uid: str, target: str, ttl: int) -> dict[str, Any]:
    """The Secret holding a fresh credential for one run, owned by the Run (deleted with it)."""
    token = credentials.mint(key, namespace=namespace, run=run_name, target=target, ttl_seconds=ttl)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(run_name),
            "namespace": namespace,
            "labels": {k8s.LABEL_RUN: run_name, k8s.LABEL_TARGET: target},
            "ownerReferences": [{"apiVersion": k8s.API_VERSION, "kind": k8s.RUN_KIND, "name": run_name, "uid": run_uid,
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "data": {SECRET_KEY: base64.b64encode(token.encode("ascii")).decode("ascii")},
    }


async def issue(client: kube.Client, key: bytes, *, namespace: str, run_name: str, run_uid: str, target: str, ttl: int) -> None:
    """Create the run's credential Secret. One that exists already (a re-admission after a drain) is kept: its
    token still holds for this run. The operator may only *create* Secrets (RBAC): it can neither read nor
    change anyone else's, so a Secret is never overwritten."""
    secret = secret_for(key, namespace=namespace, run_name=run_name, run_uid=run_uid, target=target, ttl=ttl)
    try:
        await client.create(kube.secrets(namespace), secret)
    except kube.Conflict:
        log.debug("the credential Secret of Run %s/%s exists already; kept", namespace, run_name)
