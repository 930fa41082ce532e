"""The ``outrider`` Typer application; each group of commands lives in its own module and is added here."""

from __future__ import annotations

import typer

from outrider.cli import autonomy, events, insights, keys, runs, servers, status, store

app = typer.Typer(
    name="outrider",
    help="Outrider: observe and control autonomous AI-agent runs on Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    # Plain help (click's): flags read as flags (typer's rich help prints a type, <bool>, even for them).
    rich_markup_mode=None,
)


@app.callback()
def main() -> None:
    """Outrider: observe and control autonomous AI-agent runs on Kubernetes."""


servers.register(app)
app.add_typer(runs.app, name="runs")
events.register(app)
status.register(app)
insights.register(app)
app.add_typer(autonomy.app, name="autonomy")
keys.register(app)
app.add_typer(store.app, name="store")


if __name__ == "__main__":  # pragma: no cover
    app()
