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

    @app.command("operator")
    def operator(
        namespace: str | None = typer.Option(
            None, "--namespace", help="Watch only this namespace (default: all namespaces)."),
        liveness: str | None = typer.Option(
            "http://0.0.0.0:8080/healthz", "--liveness", help="kopf's liveness endpoint URL; empty to disable."),
        metrics_port: int = typer.Option(
            9090, "--metrics-port", envvar="OUTRIDER_METRICS_PORT", help="Prometheus /metrics port; 0 disables."),
        peering: str | None = typer.Option(
            None, "--peering", help="kopf peering name: with 2+ replicas only one acts (needs the KopfPeering CRDs)."),
        standalone: bool = typer.Option(False, "--standalone", help="No peering: the only replica."),
        priority: int | None = typer.Option(
            None, "--priority", help="Peering priority (highest acts); default random, so replicas never tie."),
    ) -> None:
        """Run the operator (kopf on outrider.operator.handlers, in-process): Run admission, breakers, health, autonomy."""
        import os

        from outrider.operator import main as operator_main

        if peering and standalone:
            raise typer.BadParameter("--peering and --standalone exclude each other")
        os.environ["OUTRIDER_METRICS_PORT"] = str(metrics_port)
        operator_main.run(namespace=namespace, liveness=liveness or None, peering=peering, standalone=standalone,
                          priority=priority)
