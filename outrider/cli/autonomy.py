"""``outrider autonomy status|pause|resume|stop``: read autonomy from the control plane, change it in the cluster.

``status`` asks the control plane what the operator last reported. ``pause``, ``resume`` and ``stop`` edit the
autonomy ConfigMap (``outrider-autonomy`` in the operator's namespace) through the Kubernetes API with the
user's kubeconfig — the same switch ``kubectl edit configmap`` flips, so it works when the control plane is down
— create the ConfigMap if it is missing, read it back, and print the state the cluster now holds:

- pause:  enabled "false", mode "hold"  (no new admissions; running Jobs finish)
- stop:   enabled "false", mode "drain" (emergency stop: running Jobs and scheduler CronJobs are suspended too)
- resume: enabled "true",  mode "hold"
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import BaseModel, Field

from outrider.cli import client, options, output
from outrider.common import k8s

app = typer.Typer(help="Autonomy: see it, pause it, resume it, stop everything.", no_args_is_help=True, rich_markup_mode=None)

Namespace = Annotated[
    str | None,
    typer.Option("--namespace", "-n", envvar="OUTRIDER_NAMESPACE",
                 help="Namespace of the autonomy ConfigMap (default: the kubeconfig context's, else 'default')."),
]
ConfigMapName = Annotated[
    str,
    typer.Option("--configmap", envvar="OUTRIDER_AUTONOMY_CONFIGMAP", help="Name of the autonomy ConfigMap."),
]
Kubeconfig = Annotated[
    str | None,
    typer.Option("--kubeconfig", envvar="KUBECONFIG", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)."),
]
Context = Annotated[str | None, typer.Option("--context", help="kubeconfig context (default: the current one).")]
Reason = Annotated[str | None, typer.Option("--reason", "-r", help="Why; shown on held Runs and in the console.")]


class AutonomyConfig(BaseModel):
    """The autonomy ConfigMap as read back after a change (the JSON of pause/resume/stop)."""

    namespace: str
    name: str
    enabled: bool | None = Field(description="Null when the 'enabled' key is missing or not 'true'/'false'.")
    mode: str | None
    reason: str | None
    created: bool = Field(description="True when the ConfigMap did not exist and was created.")
    resource_version: str | None


def _api(kubeconfig: str | None, context: str | None) -> tuple[Any, str | None]:
    """A CoreV1Api for the user's kubeconfig (or in-cluster config) and the context's namespace."""
    from kubernetes import client as kube
    from kubernetes import config as kube_config

    try:
        if kubeconfig is None and context is None:
            try:
                kube_config.load_incluster_config()
                return kube.CoreV1Api(), None
            except kube_config.ConfigException:
                pass
        api_client = kube_config.new_client_from_config(config_file=kubeconfig, context=context)
        _, active = kube_config.list_kube_config_contexts(config_file=kubeconfig)
        namespace = None
        if context is not None:
            contexts, _ = kube_config.list_kube_config_contexts(config_file=kubeconfig)
            active = next((c for c in contexts if c["name"] == context), active)
        if active:
            namespace = (active.get("context") or {}).get("namespace")
        return kube.CoreV1Api(api_client), namespace
    except (kube_config.ConfigException, OSError) as exc:
        raise client.CliError(f"no usable kubeconfig: {exc}", client.EXIT_UNREACHABLE) from exc


def _bool(value: str | None) -> bool | None:
    return {"true": True, "false": False}.get((value or "").strip().lower()) if value is not None else None


def _kube_error(exc: Exception, what: str) -> client.CliError:
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return client.CliError(f"Kubernetes API refused to {what}: {exc.status} {exc.reason}", client.EXIT_UNREACHABLE)
    return client.CliError(f"cannot reach the Kubernetes API to {what}: {type(exc).__name__}: {exc}", client.EXIT_UNREACHABLE)


def apply(
    *, enabled: bool, mode: str, reason: str, namespace: str | None, name: str, kubeconfig: str | None, context: str | None
) -> AutonomyConfig:
    """Set the ConfigMap's keys (creating it when missing) and return what the API server then holds."""
    from kubernetes.client.exceptions import ApiException

    api, context_namespace = _api(kubeconfig, context)
    namespace = namespace or context_namespace or "default"
    data = {
        k8s.AUTONOMY_KEY_ENABLED: "true" if enabled else "false",
        k8s.AUTONOMY_KEY_MODE: mode,
        k8s.AUTONOMY_KEY_REASON: reason,
    }
    created = False
    try:
        try:
            api.patch_namespaced_config_map(name, namespace, {"data": data})
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}
            api.create_namespaced_config_map(namespace, body)
            created = True
        current = api.read_namespaced_config_map(name, namespace)
    except Exception as exc:  # ApiException, urllib3 connection errors: all mean "could not change it"
        raise _kube_error(exc, f"update ConfigMap {namespace}/{name}") from exc
    held = current.data or {}
    return AutonomyConfig(
        namespace=namespace,
        name=name,
        enabled=_bool(held.get(k8s.AUTONOMY_KEY_ENABLED)),
        mode=held.get(k8s.AUTONOMY_KEY_MODE),
        reason=held.get(k8s.AUTONOMY_KEY_REASON),
        created=created,
        resource_version=current.metadata.resource_version if current.metadata else None,
    )


def _report(config: AutonomyConfig, wanted_enabled: bool, wanted_mode: str, fmt: output.Format) -> None:
    confirmed = config.enabled is wanted_enabled and config.mode == wanted_mode
    if fmt == output.Format.JSON:
        output.print_json(config.model_dump(mode="json"))
    else:
        word = "enabled" if config.enabled else ("paused" if config.enabled is False else "unknown")
        mode = f" (mode {output.esc(config.mode)})"
        if config.enabled is False and config.mode == k8s.AUTONOMY_MODE_DRAIN:
            word, mode = "STOPPED", " (emergency stop: running Jobs suspended)"
        action = "created" if config.created else "updated"
        output.stdout().print(
            f"Autonomy is now [bold]{word}[/bold]{mode} — ConfigMap "
            f"{output.esc(config.namespace)}/{output.esc(config.name)} {action}"
            + (f"; reason: {output.esc(config.reason)}" if config.reason else "")
        )
        output.stderr().print("The operator applies it within seconds; check with `outrider autonomy status`.")
    if not confirmed:
        output.stderr().print("[red]error:[/red] the ConfigMap read back does not hold the requested state")
        raise typer.Exit(client.EXIT_UNREACHABLE)


def _default_reason(verb: str) -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment: say so rather than invent one
        user = "unknown user"
    return f"{verb} by {user} with `outrider autonomy` at {datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def _change(verb: str, enabled: bool, mode: str, reason: str | None, namespace: str | None, name: str,
            kubeconfig: str | None, context: str | None, fmt: output.Format) -> None:
    try:
        with output.spinner(f"Updating ConfigMap {name}…"):
            config = apply(enabled=enabled, mode=mode, reason=reason if reason is not None else _default_reason(verb),
                           namespace=namespace, name=name, kubeconfig=kubeconfig, context=context)
    except client.CliError as error:
        raise output.fail(error, fmt) from None
    _report(config, enabled, mode, fmt)


@app.command("status")
def status(
    fmt: options.FormatOpt = output.Format.TABLE,
    url: options.Url = options.DEFAULT_URL,
    token: options.Token = None,
) -> None:
    """Autonomy as the operator last reported it to the control plane."""
    document = output.fetch("autonomy", "/v1/autonomy/status", url, token, fmt)
    if fmt == output.Format.JSON:
        output.print_json(document)
        return
    enabled = document.get("enabled")
    if enabled is None:
        output.stdout().print("Autonomy: unknown — the operator has reported nothing yet.")
        return
    word = "[green]enabled[/green]" if enabled else "[yellow]paused[/yellow]"
    if enabled is False and document.get("mode") == k8s.AUTONOMY_MODE_DRAIN:
        word = "[red]stopped (drain)[/red]"
    lines = [f"Autonomy: {word}"]
    if document.get("mode"):
        lines.append(f"Mode: {output.esc(document['mode'])}")
    lines.append(f"Since: {output.stamp(document.get('since'))}")
    lines.append(f"Reason: {output.esc(document.get('reason'))}")
    lines.append(f"Reported: {output.ago(document.get('reported_at'))} (by {output.esc(document.get('source'))})")
    output.stdout().print("\n".join(lines))


@app.command("pause")
def pause(
    reason: Reason = None,
    namespace: Namespace = None,
    configmap: ConfigMapName = k8s.AUTONOMY_CONFIGMAP_DEFAULT,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    fmt: options.FormatOpt = output.Format.TABLE,
) -> None:
    """Pause autonomy: no new Runs are admitted; running Jobs finish."""
    _change("paused", False, k8s.AUTONOMY_MODE_HOLD, reason, namespace, configmap, kubeconfig, context, fmt)


@app.command("resume")
def resume(
    reason: Reason = None,
    namespace: Namespace = None,
    configmap: ConfigMapName = k8s.AUTONOMY_CONFIGMAP_DEFAULT,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    fmt: options.FormatOpt = output.Format.TABLE,
) -> None:
    """Resume autonomy: held Runs are admitted again, oldest first."""
    _change("resumed", True, k8s.AUTONOMY_MODE_HOLD, reason, namespace, configmap, kubeconfig, context, fmt)


@app.command("stop")
def stop(
    reason: Reason = None,
    namespace: Namespace = None,
    configmap: ConfigMapName = k8s.AUTONOMY_CONFIGMAP_DEFAULT,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    fmt: options.FormatOpt = output.Format.TABLE,
) -> None:
    """Emergency stop: pause autonomy AND suspend running Jobs and scheduler CronJobs (mode drain)."""
    _change("stopped", False, k8s.AUTONOMY_MODE_DRAIN, reason, namespace, configmap, kubeconfig, context, fmt)
