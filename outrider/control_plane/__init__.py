"""The control plane: ingests events, keeps the durable history, serves the API, console and metrics."""
