"""OTLP export: each finished run becomes one OpenTelemetry trace, sent to ``OUTRIDER_OTLP_ENDPOINT``.

Teams that already look at traces (Jaeger, Tempo, Honeycomb, an OpenTelemetry Collector) see Outrider's
runs there too. When a terminal event (``run.succeeded``, ``run.failed``, ``run.cancelled``) is committed,
:func:`watch` — a background task of the app's lifespan, fed by ``Store.subscribe()``, so never on the
ingest path — reads the run record and its ``run.llm_usage`` events and :class:`RunExporter` emits:

- a root span ``run <run_id>`` from ``started_at`` (else ``created_at``) to ``completed_at``, with
  ``outrider.run_id``, ``outrider.target``, ``outrider.status``, the run's token totals
  (``gen_ai.usage.input_tokens``/``output_tokens``) and ``outrider.cost_usd``; status ERROR with the error
  summary when the run failed;
- a child span ``stage <name>`` per phase timing (an unfinished stage ends with the run and carries
  ``outrider.stage.completed=false``);
- a child span ``chat <model>`` per LLM call, under its phase's stage span (else the root), ending at the
  event's time and lasting its ``latency_s``, with ``gen_ai.provider.name``, ``gen_ai.request.model``,
  ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens`` and ``outrider.cost_usd``.

The trace id is derived from the run id (the first 128 bits of its SHA-256) and span ids from the run id
and the span's position, so exporting a run again yields the same ids. LLM usage that arrives after the
terminal event is not in the exported trace. Needs the ``otel`` extra (opentelemetry-sdk and
opentelemetry-exporter-otlp-proto-http).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk import resources
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import export, id_generator

from outrider.control_plane import store

log = logging.getLogger(__name__)

TERMINAL = frozenset({"run.succeeded", "run.failed", "run.cancelled"})
MAX_CALLS = 10_000


def trace_id(run_id: str) -> int:
    """The run's trace id: the first 128 bits of SHA-256(run id) (never 0)."""
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:16], "big") or 1


class _RunIds(id_generator.IdGenerator):
    """Ids of the run being exported: its trace id, and span ids from (run id, position)."""

    def __init__(self) -> None:
        self.run_id = ""
        self.position = 0

    def start(self, run_id: str) -> None:
        self.run_id, self.position = run_id, 0

    def generate_trace_id(self) -> int:
        return trace_id(self.run_id)

    def generate_span_id(self) -> int:
        self.position += 1
        digest = hashlib.sha256(f"{self.run_id}\x00{self.position}".encode()).digest()
        return int.from_bytes(digest[:8], "big") or 1


def _ns(moment: Any) -> int | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1e9)


class _Collect(sdk_trace.SpanProcessor):
    """Keeps the ended spans of the run being exported, so its whole trace leaves in one export call."""

    def __init__(self) -> None:
        self.spans: list[sdk_trace.ReadableSpan] = []

    def on_end(self, span: sdk_trace.ReadableSpan) -> None:
        self.spans.append(span)


class RunExporter:
    """Turns run records into traces on ``span_exporter`` (the OTLP/HTTP exporter, or an in-memory one in tests)."""

    def __init__(self, span_exporter: export.SpanExporter, service_name: str = "outrider-control-plane") -> None:
        self.ids = _RunIds()
        self.span_exporter = span_exporter
        self.collected = _Collect()
        self.provider = sdk_trace.TracerProvider(
            resource=resources.Resource.create({"service.name": service_name}), id_generator=self.ids
        )
        self.provider.add_span_processor(self.collected)
        self.tracer = self.provider.get_tracer("outrider.control_plane")

    def shutdown(self) -> None:
        self.provider.shutdown()
        self.span_exporter.shutdown()

    def export(self, record: dict[str, Any], calls: list[dict[str, Any]]) -> bool:
        """Emit the trace of one finished run (``record`` as GET /v1/runs/{id}, ``calls`` its run.llm_usage events)."""
        begin = _ns(record.get("started_at")) or _ns(record.get("created_at"))
        end = _ns(record.get("completed_at"))
        if begin is None or end is None:
            log.info("otlp export: run %s has no start or end time; not exported", record.get("run_id"))
            return False
        end = max(end, begin)
        self.ids.start(str(record["run_id"]))
        root = self.tracer.start_span(f"run {record['run_id']}", start_time=begin, kind=trace.SpanKind.INTERNAL)
        root.set_attribute("outrider.run_id", str(record["run_id"]))
        if record.get("target"):
            root.set_attribute("outrider.target", str(record["target"]))
        root.set_attribute("outrider.status", str(record.get("status")))
        usage = (record.get("llm_usage") or {}).get("total")
        if usage:
            root.set_attribute("gen_ai.usage.input_tokens", int(usage["input_tokens"]))
            root.set_attribute("gen_ai.usage.output_tokens", int(usage["output_tokens"]))
            if usage.get("cost_usd") is not None:
                root.set_attribute("outrider.cost_usd", float(usage["cost_usd"]))
        if record.get("status") == "failed":
            root.set_status(trace.Status(trace.StatusCode.ERROR, record.get("error_summary") or "run failed"))
        root_context = trace.set_span_in_context(root)
        stage_contexts: dict[str, Any] = {}
        timings = (record.get("metrics") or {}).get("phase_timings") or {}
        for stage, timing in sorted(timings.items(), key=lambda item: str(item[1].get("started_at"))):
            started = _ns(timing.get("started_at"))
            if started is None:
                continue
            duration = timing.get("duration_seconds")
            span = self.tracer.start_span(f"stage {stage}", context=root_context, start_time=started)
            span.set_attribute("outrider.stage", stage)
            span.set_attribute("outrider.stage.completed", duration is not None)
            stage_contexts[stage] = (trace.set_span_in_context(span), span,
                                     started + int(duration * 1e9) if duration is not None else end)
        for call in calls:
            data = call.get("data") or {}
            finished = _ns(call.get("time"))
            if finished is None:
                continue
            latency = data.get("latency_s")
            started = finished - int(latency * 1e9) if isinstance(latency, int | float) else finished
            parent = stage_contexts.get(data.get("phase") or "", (root_context,))[0]
            span = self.tracer.start_span(f"chat {data.get('model')}", context=parent, start_time=started,
                                          kind=trace.SpanKind.CLIENT)
            span.set_attribute("gen_ai.provider.name", str(data.get("provider")))
            span.set_attribute("gen_ai.request.model", str(data.get("model")))
            span.set_attribute("gen_ai.usage.input_tokens", int(data.get("input_tokens") or 0))
            span.set_attribute("gen_ai.usage.output_tokens", int(data.get("output_tokens") or 0))
            if data.get("cost_usd") is not None:
                span.set_attribute("outrider.cost_usd", float(data["cost_usd"]))
            if data.get("phase"):
                span.set_attribute("outrider.phase", str(data["phase"]))
            if data.get("error"):
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(data["error"])))
            span.end(end_time=finished)
        for _, span, stage_end in stage_contexts.values():
            span.end(end_time=stage_end)
        root.end(end_time=end)
        spans, self.collected.spans = self.collected.spans, []
        result = self.span_exporter.export(spans)  # one request per run
        if result is not export.SpanExportResult.SUCCESS:
            raise RuntimeError(f"the span exporter answered {result.name}")
        return True

    def export_run(self, the_store: store.Store, run_id: str) -> bool:
        """Read run ``run_id`` and its LLM calls from the store and export its trace (blocking: call in a thread)."""
        record = the_store.get_run(run_id)
        if record is None:
            return False
        calls = [item["event"] for item in the_store.list_events(run_id=run_id, type="run.llm_usage", limit=MAX_CALLS)]
        return self.export(record, calls)


def otlp_exporter(endpoint: str) -> RunExporter:
    """A RunExporter posting OTLP/HTTP protobuf to ``endpoint`` (the full traces URL, e.g. http://collector:4318/v1/traces)."""
    from opentelemetry.exporter.otlp.proto.http import trace_exporter

    return RunExporter(trace_exporter.OTLPSpanExporter(endpoint=endpoint))


async def watch(the_store: store.Store, exporter: RunExporter, poll_seconds: float = 5.0) -> None:
    """Export every run whose terminal event is committed from now on, until cancelled or the store stops;
    then shut ``exporter`` down."""
    subscription = the_store.subscribe()
    try:
        while True:
            try:
                batch = await subscription.next(timeout=poll_seconds)
            except store.SubscriberDropped:
                log.warning("otlp export fell behind the event stream; some finished runs were not exported")
                the_store.unsubscribe(subscription)
                subscription = the_store.subscribe()
                continue
            except store.SubscriptionEnded:
                return
            finished = dict.fromkeys(
                item["event"].get("runid") for item in batch
                if item["event"].get("type") in TERMINAL and item["event"].get("runid")
            )
            if finished:  # the trace is built from the run record: wait until the projection holds these events
                await asyncio.to_thread(the_store.wait_projected, max(int(item["seq"]) for item in batch), 60.0)
            for run_id in finished:
                try:
                    await asyncio.to_thread(exporter.export_run, the_store, str(run_id))
                except Exception:  # an exporter failure must never stop the watcher
                    log.warning("otlp export of run %s failed", run_id, exc_info=True)
    finally:
        the_store.unsubscribe(subscription)
        exporter.shutdown()
