"""``outrider keys create|list|revoke`` and ``outrider audit``: API keys and the audit log (an admin's key).

``keys create --format json`` prints the new key with its ``secret`` (shown this once); ``keys list`` never
shows secrets. ``audit --format json`` prints a ``Page[AuditEntry]``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from rich.table import Table

from outrider.cli import client, options, output

app = typer.Typer(help="API keys: create (role, namespaces, targets, expiry), list, revoke.", no_args_is_help=True, rich_markup_mode=None)

DURATION = re.compile(r"^([1-9][0-9]{0,5})([smhdw])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
ROLES = ("ingest", "read", "operator", "admin")


def _seconds(text: str | None) -> int | None:
    if text is None:
        return None
    match = DURATION.match(text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration like 30d, 12h or 90m", param_hint="--expires")
    return int(match.group(1)) * UNITS[match.group(2)]


def _list(values: list[str] | None) -> str:
    return ", ".join(values) if values else "all"


@app.command("create")
def create(
    role: Annotated[str, typer.Option("--role", help="ingest (write run events), read (API, console, streams), operator, admin.")],
    namespace: Annotated[list[str] | None, typer.Option("--namespace", help="A namespace the key is bound to (repeatable); none: all.")] = None,
    target: Annotated[list[str] | None, typer.Option("--target", help="A target the key is bound to (repeatable); none: all.")] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime, e.g. 30d, 12h; none: no expiry.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="What the key is for (shown in listings and the audit log).")] = None,
    fmt: options.FormatOpt = output.Format.TABLE,
    url: options.Url = options.DEFAULT_URL,
    token: options.Token = None,
) -> None:
    """Create a key and print its secret once (it is stored only as a hash)."""
    if role not in ROLES:
        raise typer.BadParameter(f"{role!r} is not one of {', '.join(ROLES)}", param_hint="--role")
    body: dict[str, Any] = {"role": role, "name": name, "namespaces": namespace or None, "targets": target or None,
                            "expires_in_seconds": _seconds(expires)}
    try:
        with client.Client(url, token) as api:
            created = api.send("POST", "/v1/keys", body)
    except client.CliError as error:
        raise output.fail(error, fmt) from None
    if fmt == output.Format.JSON:
        output.print_json(created)
        return
    console = output.stdout()
    console.print(f"Created key [bold]{output.esc(created['id'])}[/bold] (role {created['role']}, namespaces "
                  f"{output.esc(_list(created['namespaces']))}, targets {output.esc(_list(created['targets']))}, "
                  f"expires {output.stamp(created['expires_at']) if created['expires_at'] else 'never'}).")
    console.print("Its secret, shown this once:")
    console.print(created["secret"], markup=False, highlight=False, soft_wrap=True)


@app.command("list")
def list_keys(
    fmt: options.FormatOpt = output.Format.TABLE,
    url: options.Url = options.DEFAULT_URL,
    token: options.Token = None,
) -> None:
    """Every key, without its secret."""
    found = output.fetch("keys", "/v1/keys", url, token, fmt)
    if fmt == output.Format.JSON:
        output.print_json(found)
        return
    table = Table(title=f"API keys ({len(found)})", title_justify="left")
    for column in ("ID", "NAME", "ROLE", "NAMESPACES", "TARGETS", "CREATED", "EXPIRES", "REVOKED"):
        table.add_column(column, no_wrap=column in ("ID", "ROLE"), overflow="fold")
    for key in found:
        table.add_row(output.esc(key["id"]), output.esc(key.get("name")), key["role"], output.esc(_list(key["namespaces"])),
                      output.esc(_list(key["targets"])), output.stamp(key["created_at"]),
                      output.stamp(key["expires_at"]) if key["expires_at"] else "never",
                      output.stamp(key["revoked_at"]) if key["revoked_at"] else output.DASH)
    output.stdout().print(table if found else "No keys yet (configured tokens are not listed).")


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (outrider keys list).")],
    fmt: options.FormatOpt = output.Format.TABLE,
    url: options.Url = options.DEFAULT_URL,
    token: options.Token = None,
) -> None:
    """Revoke a key at once; the console sessions it opened end too."""
    try:
        with client.Client(url, token) as api:
            revoked = api.send("DELETE", f"/v1/keys/{key_id}")
    except client.CliError as error:
        raise output.fail(error, fmt) from None
    if fmt == output.Format.JSON:
        output.print_json(revoked)
    else:
        output.stdout().print(f"Revoked key {output.esc(revoked['id'])} at {output.stamp(revoked['revoked_at'])}.")


def audit(
    action: Annotated[str | None, typer.Option("--action", help="Only this action (key.created, write.refused, login.failed, …).")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this key id (or token, operator-token).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100_000, help="Most entries to list (oldest first).")] = 100,
    fmt: options.FormatOpt = output.Format.TABLE,
    url: options.Url = options.DEFAULT_URL,
    token: options.Token = None,
) -> None:
    """The audit log: keys created and revoked, control events, refused writes, logins (an admin's key)."""
    try:
        with output.spinner("Fetching the audit log…"), client.Client(url, token) as api:
            items, cursor = api.pages("/v1/audit", {"action": action, "actor": actor}, limit)
    except client.CliError as error:
        raise output.fail(error, fmt) from None
    if fmt == output.Format.JSON:
        output.print_json({"items": items, "next_cursor": cursor})
        return
    table = Table(title=f"Audit ({len(items)}{'+' if cursor else ''})", title_justify="left")
    for column in ("TIME", "ACTOR", "ROLE", "ACTION", "OBJECT", "OUTCOME", "FROM"):
        table.add_column(column, overflow="fold")
    for entry in items:
        table.add_row(output.stamp(entry["time"]), output.esc(entry.get("actor")), output.esc(entry.get("role")),
                      output.esc(entry["action"]), output.esc(entry.get("object")), output.styled(entry["outcome"]),
                      output.esc(entry.get("remote")))
    output.stdout().print(table if items else "The audit log is empty.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="keys")
    root.command("audit")(audit)
