"""``outrider store …``: maintenance of the control plane's database, run beside it (it opens the database named
by OUTRIDER_DATABASE_URL directly, as ``outrider control-plane`` does; no API call)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

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


@app.command("backup")
def backup(
    directory: Annotated[Path, typer.Argument(help="Where to write the copies (created if needed; an existing copy is never overwritten).")],
) -> None:
    """Copy a SQLite store, the event log and its projections file, into DIRECTORY as a consistent pair, while the
    control plane runs (PostgreSQL: use pg_dump). Restore by putting both files back together."""
    import sqlite3

    from outrider.control_plane import settings
    from outrider.control_plane.store import backup as backup_module

    database = settings.get_settings().sqlite_path()
    if database is None:
        output.stderr().print("[red]error:[/red] the store is not a SQLite file; back up PostgreSQL with pg_dump")
        raise typer.Exit(1)
    try:
        made = backup_module.backup_sqlite(database, directory)
    except (OSError, sqlite3.Error) as exc:
        output.stderr().print(f"[red]error:[/red] {output.esc(str(exc))}")
        raise typer.Exit(1) from exc
    head = "—" if made.head is None else made.head
    typer.echo(f"backed up the event log (last seq {head}) to {made.log}")
    if made.projections is not None:
        checkpoint = "no checkpoint: a database from before the projections file" if made.position is None else f"checkpoint at seq {made.position}"
        typer.echo(f"backed up its projections ({checkpoint}) to {made.projections}")
    typer.echo(f"in {made.seconds:.1f} s; restore both files together, with the control plane stopped")


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
