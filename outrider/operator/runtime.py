"""Everything one running operator shares between its kopf handlers: API client, autonomy, wake-ups, events.

kopf calls handlers per object; what lies between objects lives here, created at startup and closed at
cleanup: the Kubernetes client, the current autonomy decision (from a namespaced watch on the autonomy
ConfigMap — one object, so the operator needs no cluster-wide ConfigMap access), one wake-up event per Target
(the Target's reconcile daemon sleeps on it instead of polling), the control-plane event sender, the
heartbeat, and the metrics server. It acts on nothing by itself: every write to the cluster happens in a kopf
handler or daemon, which kopf pauses on a replica that is not the active peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from outrider.common import events
from outrider.operator import autonomy as autonomy_mod
from outrider.operator import control_plane_client, events_client, kube, kube_events, metrics, run_credentials
from outrider.operator import settings as settings_mod

logger = logging.getLogger("outrider.operator")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Runtime:
    def __init__(self, settings: settings_mod.OperatorSettings, client: kube.Client,
                 *, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.settings = settings
        self.client = client
        self.clock = clock
        self.autonomy = autonomy_mod.parse(None, namespace=settings.namespace, name=settings.autonomy_configmap)
        self.autonomy_known = False  # False until the ConfigMap was read once (held Runs wait for it)
        self.autonomy_since: dt.datetime | None = None
        self.autonomy_version = 0
        self.swept_version = -1  # the autonomy_version scheduler CronJobs were last swept for
        self._wakes: dict[tuple[str, str], asyncio.Event] = {}
        #: uids of Targets seen DELETED whose daemon has not stopped yet (it removes its own uid).
        self.deleted: set[str] = set()
        self.sender = events_client.EventSender(settings.url, settings.token, buffer_max=settings.events_buffer_max,
                                                batch_max=settings.events_batch_max)
        self.budgets = control_plane_client.BudgetClient(settings.url, settings.token, timeout=settings.budget_timeout_seconds,
                                         cache_seconds=settings.budget_cache_seconds)
        self.activity = control_plane_client.ActivityClient(settings.url, settings.token, timeout=settings.budget_timeout_seconds,
                                        cache_seconds=settings.watchdog_cache_seconds)
        self.kube_events = kube_events.Recorder(
            client, queue_max=settings.kube_events_queue_max, burst=settings.kube_events_burst,
            qps=settings.kube_events_qps, dedup_seconds=settings.kube_events_dedup_seconds,
            instance=settings_mod.pod_name(), default_namespace=client.config.default_namespace or "default")
        self.view = metrics.View(events_dropped=lambda: self.sender.dropped, events_buffered=lambda: self.sender.buffered,
                                 kube_events_dropped=lambda: self.kube_events.dropped,
                                 kube_events_queued=lambda: self.kube_events.queued)
        self.registry = metrics.registry_for(self.view)
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics_server: Any = None
        #: Signs each admitted Run's credential (run_credentials); None: Jobs get none.
        self.signing_key = run_credentials.load_signing_key(settings.run_signing_key_file)

    # --- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.sender.start()
        self.kube_events.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._watch_autonomy(), name="outrider-autonomy-watch"))
        self._tasks.append(loop.create_task(self._heartbeat(), name="outrider-heartbeat"))
        if self.settings.metrics_port:
            from prometheus_client import start_http_server

            self._metrics_server = start_http_server(self.settings.metrics_port, addr=self.settings.metrics_host,
                                                     registry=self.registry)
            logger.info("metrics on http://%s:%d/metrics", self.settings.metrics_host, self.settings.metrics_port)

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``work`` in the background for as long as the runtime runs (:meth:`stop` cancels it)."""
        self._tasks.append(asyncio.get_running_loop().create_task(work, name=name))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):  # shutting down
                await task
        self._tasks.clear()
        await self.sender.stop()
        await self.kube_events.stop()
        if self._metrics_server is not None:
            server, thread = self._metrics_server
            server.shutdown()
            server.server_close()
            thread.join(timeout=2)
            self._metrics_server = None
        await self.client.close()

    # --- wake-ups -------------------------------------------------------------------------------------
    def wake_event(self, namespace: str, target: str) -> asyncio.Event:
        return self._wakes.setdefault((namespace, target), asyncio.Event())

    def wake(self, namespace: str, target: str | None) -> None:
        """Ask the Target's daemon to reconcile soon (coalesced: many wakes, one pass)."""
        if target:
            self.wake_event(namespace, target).set()

    def wake_all(self) -> None:
        for event in self._wakes.values():
            event.set()

    def forget(self, namespace: str, target: str, uid: str = "") -> None:
        """The Target is gone: its daemon (which holds no finalizer) is woken to see ``uid`` in :attr:`deleted` and
        stop itself."""
        if uid:
            self.deleted.add(uid)
        event = self._wakes.pop((namespace, target), None)
        if event is not None:
            event.set()
        self.view.targets.pop((namespace, target), None)

    # --- autonomy -------------------------------------------------------------------------------------
    async def set_autonomy(self, configmap: dict[str, Any] | None, *, why: str | None = None) -> None:
        new = autonomy_mod.parse(configmap, namespace=self.settings.namespace, name=self.settings.autonomy_configmap)
        if why and configmap is None:
            new = autonomy_mod.Autonomy(False, new.mode, new.reason, f"{new.message} ({why})")
        first = not self.autonomy_known
        self.autonomy_known = True
        self.view.autonomy_enabled = new.enabled
        if not first and new == self.autonomy:
            return
        old, self.autonomy = self.autonomy, new
        self.autonomy_since = self.clock()
        level = logging.INFO if new.enabled else logging.WARNING
        logger.log(level, "autonomy %s (mode %s, reason %s): %s", "enabled" if new.enabled else "PAUSED",
                   new.mode, new.reason or "-", new.message or "-")
        if first or (old.enabled, old.mode, old.reason, old.message) != (new.enabled, new.mode, new.reason, new.message):
            meta = (configmap or {}).get("metadata") or {}
            self.emit(events_client.build(
                events.EventType.AUTONOMY_CHANGED,
                id_parts=(self.settings.namespace, self.settings.autonomy_configmap, str(meta.get("uid")),
                          str(meta.get("resourceVersion")), new.reason, str(new.enabled), new.mode),
                time=self.autonomy_since,
                subject=f"configmaps/{self.settings.namespace}/{self.settings.autonomy_configmap}",
                data={"enabled": new.enabled, "reason": (new.message or new.reason or None), "mode": new.mode,
                      "hold_reason": new.reason or None},
            ))
        self.autonomy_version += 1
        self.wake_all()

    async def _watch_autonomy(self) -> None:
        """GET the ConfigMap, then watch it; on any error read it again. Unreadable → paused (fail closed)."""
        ns, name = self.settings.namespace, self.settings.autonomy_configmap
        delay = 0.2
        while True:
            try:
                current = await self.client.get(kube.configmaps(ns, name))
                await self.set_autonomy(current)
                delay = 0.2
                async for kind, obj in self.client.watch(kube.configmaps(ns), field_selector=f"metadata.name={name}"):
                    if (obj.get("metadata") or {}).get("name") != name:
                        continue  # a server that ignores fieldSelector
                    await self.set_autonomy(None if kind == "DELETED" else obj)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure to read means "unknown": fail closed
                logger.warning("cannot read the autonomy ConfigMap %s/%s: %r", ns, name, exc)
                if isinstance(exc, kube.ApiError) or not self.autonomy_known:
                    await self.set_autonomy(None, why=f"unreadable: {exc}")
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)

    async def _heartbeat(self) -> None:
        source = settings_mod.pod_name()
        while True:
            now = self.clock()
            if self.autonomy_known:
                self.emit(events_client.build(
                    events.EventType.OPERATOR_HEARTBEAT,
                    id_parts=(source, now.isoformat()),
                    time=now,
                    subject=f"operator/{source}",
                    data={"autonomy_enabled": self.autonomy.enabled,
                          "autonomy_mode": self.autonomy.mode,
                          "autonomy_reason": self.autonomy.message or self.autonomy.reason or None,
                          "autonomy_since": self.autonomy_since.isoformat() if self.autonomy_since else None,
                          "heartbeat_seconds": self.settings.heartbeat_seconds,
                          "budget_usd_per_hour": self.autonomy.budget_usd_per_hour,
                          "budget_usd_per_day": self.autonomy.budget_usd_per_day},
                ))
                await asyncio.sleep(self.settings.heartbeat_seconds)
            else:
                await asyncio.sleep(0.1)

    # --- events ---------------------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        self.sender.emit(event)
