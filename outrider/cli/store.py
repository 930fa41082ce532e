"""``outrider store …``: maintenance of the control plane's database, run beside it (it opens the database named
by OUTRIDER_DATABASE_URL directly, as ``outrider control-plane`` does; no API call)."""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from outrider.cli import output

app = typer.Typer(help="Maintain the control plane's store (needs OUTRIDER_DATABASE_URL, as the control plane).", no_args_is_help=True, rich_markup_mode=None)


def _open() -> Any:
    """The store of OUTRIDER_DATABASE_URL, migrated, without its writer or projector (imported here: the other
    commands never load the control plane)."""
    from outrider.control_plane import settings
    from outrider.control_plane import store as store_module

    the_store = store_module.Store(settings.get_settings())
    try:
        store_module.migrate(the_store.engine)
    except store_module.ProjectionsMismatch as exc:
        output.stderr().print(f"[red]error:[/red] {output.esc(str(exc))}")
        raise typer.Exit(1) from exc
    return the_store


@app.command("rebuild")
def rebuild(
    force: bool = typer.Option(False, "--force", help="Rebuild even though a retention sweep deleted part of the log (their runs and totals are lost)."),
) -> None:
    """Replay the whole event log into fresh projections (run records, /metrics counters, rollups).

    Gives the same records and rollups as incremental projection. Running control planes keep serving; their
    reads show the projection refilling (GET /v1/projection) and their projector takes over when this ends."""
    from outrider.control_plane import store as store_module

    the_store = _open()
    started = time.monotonic()
    try:
        projected = the_store.rebuild(force=force)
    except store_module.RebuildRefused as exc:
        output.stderr().print(f"[red]error:[/red] {output.esc(str(exc))}")
        raise typer.Exit(1) from exc
    finally:
        the_store.engine.dispose()
    typer.echo(f"rebuilt the projections from {projected} log events in {time.monotonic() - started:.1f} s")


@app.command("status")
def status(format_: str = typer.Option("table", "--format", help="table or json.")) -> None:
    """Where the projection stands against the event log (position, head, lag, lease holder)."""
    the_store = _open()
    try:
        found = the_store.projection_status()
    finally:
        the_store.engine.dispose()
    if format_ == "json":
        typer.echo(json.dumps(found))
        return
    for key, value in found.items():
        typer.echo(f"{key:24} {'—' if value is None else value}")
