"""The ``outrider`` Typer application; each group of commands lives in its own module and is added here."""

from __future__ import annotations

import typer

from outrider.cli import servers

app = typer.Typer(
    name="outrider",
    help="Outrider: observe and control autonomous AI-agent runs on Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Outrider: observe and control autonomous AI-agent runs on Kubernetes."""


servers.register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
