"""``outrider control-plane`` and ``outrider operator``: the two long-running processes the image runs."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("control-plane")
    def control_plane(
        host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 in a container)."),
        port: int = typer.Option(8000, help="TCP port."),
    ) -> None:
        """Serve the control plane (API, console, /metrics) on the configured store (SQLite ./outrider.db by default)."""
        from outrider.control_plane import server

        server.serve(host=host, port=port)
