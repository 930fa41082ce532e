"""``outrider events``: the event history (``GET /v1/events``) and, with ``--follow``, the live stream.

``--format json`` prints one ``StoredEvent`` per line (NDJSON: ``seq``, ``received_at``, ``event``), so a
follower can be piped into ``jq`` line by line; lines from the live stream have no ``received_at`` (the stream
sends the CloudEvent itself, with its ``seq`` as the SSE id). ``--follow`` first prints the matching history, then keeps
reading ``GET /v1/events/stream`` from the last ``seq`` seen (``Last-Event-ID``; from "now" when nothing matched
yet), reconnecting after a drop, until Ctrl-C.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import pydantic
import typer

from outrider.cli import client, options, output
from outrider.common import events
from outrider.control_plane import status

#: Reconnection attempts in a row before --follow gives up (exit 3); a successful read resets the count.
FOLLOW_RETRIES = 5


def describe(stored: dict[str, Any]) -> str:
    """One human sentence for any event (activity types share the console's wording)."""
    event = stored["event"]
    data = event.get("data") or {}
    kind = event.get("type")
    if kind in status.ACTIVITY_TYPES:
        try:
            return status.describe_event(events.CloudEvent.model_validate(event))
        except pydantic.ValidationError:
            return str(kind)
    if kind in ("run.stage.started", "run.stage.completed"):
        return f"stage {data.get('stage')} {kind.rsplit('.', 1)[1]}"
    if kind == "run.progress":
        bound = f"/{data['max_iterations']}" if data.get("max_iterations") is not None else ""
        return f"stage {data.get('stage')} iteration {data.get('iteration')}{bound}"
    if kind == "run.log":
        return f"[{data.get('level')}] {str(data.get('message', '')).splitlines()[0] if data.get('message') else ''}"
    if kind == "run.llm_usage":
        cost = f", ${data['cost_usd']:.4f}" if data.get("cost_usd") is not None else ""
        return f"{data.get('provider')}/{data.get('model')} {data.get('input_tokens')}→{data.get('output_tokens')} tokens{cost}"
    if kind == "target.status":
        return f"health {data.get('health')}, breaker {data.get('breaker_state')}"
    if kind == "operator.heartbeat":
        return f"operator alive, autonomy {'enabled' if data.get('autonomy_enabled') else 'paused'}"
    return str(kind)


def _print(stored: dict[str, Any], fmt: output.Format) -> None:
    if fmt == output.Format.JSON:
        output.print_json_line(stored)
        return
    event = stored["event"]
    output.stdout().print(
        f"{output.stamp(event.get('time'))}  [bold]{output.esc(event.get('type'))}[/bold]  "
        f"{output.esc(event.get('target'))}  {output.esc(event.get('runid'))}  {output.esc(describe(stored))}"
    )


def _matches(stored: dict[str, Any], run: str | None, target: str | None, kind: str | None) -> bool:
    event = stored["event"]
    return (
        (run is None or event.get("runid") == run)
        and (target is None or event.get("target") == target)
        and (kind is None or event.get("type") == kind)
    )


def register(app: typer.Typer) -> None:
    @app.command("events")
    def events_command(
        run: Annotated[str | None, typer.Option("--run", "-r", help="Only events of this run.")] = None,
        target: Annotated[str | None, typer.Option("--target", "-t", help="Only events of this target.")] = None,
        type_: Annotated[str | None, typer.Option("--type", help="Only events of this type, e.g. run.failed.")] = None,
        since: Annotated[str | None, typer.Option("--since", help="Only events after this (24h, 30m or RFC 3339).")] = None,
        limit: Annotated[int, typer.Option("--limit", min=1, help="Most history events to print before following.")] = 1000,
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events as they arrive (Ctrl-C ends).")] = False,
        namespace: options.Namespace = None,
        fmt: options.FormatOpt = output.Format.TABLE,
        url: options.Url = options.DEFAULT_URL,
        token: options.Token = None,
    ) -> None:
        """Print events (oldest first); --follow keeps streaming new ones."""
        after = options.since(since)
        params = {"run_id": run, "target": target, "type": type_, "since": after.isoformat() if after else None,
                  "namespace": namespace}
        try:
            with client.Client(url, token) as api:
                with output.spinner("Fetching events…"):
                    items, _ = api.pages("/v1/events", params, limit)
                last_seq: int | None = None
                for stored in items:
                    _print(stored, fmt)
                    # With --since the history comes in event-time order: resume the stream after the highest seq.
                    last_seq = stored["seq"] if last_seq is None else max(last_seq, stored["seq"])
                if not follow:
                    return
                failures = 0
                while True:
                    try:
                        for event_id, event in api.stream("/v1/events/stream", params,
                                                          last_event_id=str(last_seq) if last_seq is not None else None):
                            failures = 0
                            if event_id is None or not event_id.isdigit() or not isinstance(event, dict) or "type" not in event:
                                continue  # the stream's own notices (dropped, shutdown) carry no event
                            last_seq = int(event_id)
                            stored = {"seq": last_seq, "event": event}  # SSE data is the CloudEvent; id its seq
                            if _matches(stored, run, target, type_):
                                _print(stored, fmt)
                    except client.CliError:
                        failures += 1
                        if failures > FOLLOW_RETRIES:
                            raise
                    time.sleep(min(5.0, 0.2 * 2**failures))
        except client.CliError as error:
            raise output.fail(error, fmt) from None
        except KeyboardInterrupt:
            raise typer.Exit(client.EXIT_OK) from None

