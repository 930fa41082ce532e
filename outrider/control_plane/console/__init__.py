"""The web console: server-rendered pages (Jinja2) over the store, a little plain JS for live updates."""
