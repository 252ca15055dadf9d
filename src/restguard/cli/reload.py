"""Reloading a running server's configuration: ``SIGHUP`` (``restguard reload`` sends it).

On ``SIGHUP`` every process of ``restguard serve`` (the workers too) reads its configuration
file again. A file that does not load, or whose routes this build cannot serve, is refused: the
error is logged and the old configuration keeps serving. Otherwise what can change while
serving changes at once -- the policy (``[[routes]]``), ``trusted_proxies``, the size limits,
the slow-client timeouts, ``failed_attempts``, ``max_connections`` -- for every request decided
from then on; a request already decided finishes under the old policy, and no connection is
dropped -- and a renewed TLS certificate and key serve new connections. What needs a restart
(listeners, turning TLS on or off, database, upstream, master key, audit file, public URL) is
named in a warning and keeps its old value. The audit log is reopened (logrotate).

``restguard reload`` checks the file first (as ``restguard check`` reads settings and routes)
and refuses to signal a server with a broken one; it finds the server through the pid file
``serve`` writes next to the configuration (``restguard.pid`` for ``restguard.toml``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
from pathlib import Path

import click

from restguard.authz.policy import Policy
from restguard.cli.context import config_option, given_config, json_option
from restguard.cli.output import emit_json, success
from restguard.config import ConfigError, Settings, config_path, load, validate
from restguard.gateway.server import Gateway
from restguard.wiring import Runtime, check_routes_servable

_log = logging.getLogger("restguard.reload")
# [server] settings a running gateway takes over as they are (read per request or connection).
_LIVE_SERVER = frozenset(
    {
        "trusted_proxies",
        "max_body_bytes",
        "max_header_bytes",
        "failed_attempts",
        "client_header_timeout",
        "keepalive_timeout",
        "client_body_timeout",
        "client_body_min_rate",
        "client_send_timeout",
        "send_buffer_bytes",
        "max_connections",
        "body_buffer_bytes",
        "shutdown_grace",
        "tls_cert",  # (the listener's context takes the new pair: gateway.reload_tls)
        "tls_key",
    }
)


def reload_settings(runtime: Runtime, gateway: Gateway | None) -> bool:
    """Read the configuration file again and apply what can change while serving; False (and
    the old configuration in force) when the file is refused. Never raises."""
    old = runtime.settings
    try:
        new = load(old.file)
        check_routes_servable(new)
        if gateway is not None:  # a renewed certificate (a broken pair refuses it all)
            gateway.reload_tls(new)
    except ConfigError as exc:
        _log.error("reload refused, the old configuration keeps serving: %s", exc)
        return False
    except Exception:  # a bug must not take the server down
        _log.exception("reload refused, the old configuration keeps serving")
        return False
    server = dataclasses.replace(
        old.server, **{name: getattr(new.server, name) for name in _LIVE_SERVER}
    )
    applied = dataclasses.replace(old, server=server, routes=new.routes, lines=new.lines)
    restart = _needs_restart(applied, new)
    runtime.guard.policy = Policy(list(new.routes))
    runtime.guard.failed_attempts = server.failed_attempts
    runtime.settings = applied
    if gateway is not None:
        gateway.apply_limits(server)
    if restart:
        _log.warning(
            "reload: %s changed; that takes a restart (the old value stays in force)",
            ", ".join(restart),
        )
    _log.warning("reload: %d routes from %s in force", len(new.routes), old.file)
    return True


def _needs_restart(applied: Settings, new: Settings) -> list[str]:
    """The settings that differ between what is in force and the file, by name."""
    changed: list[str] = []
    for section in dataclasses.fields(new):
        name = section.name
        if name in ("file", "lines", "routes", "processes"):
            continue
        before, after = getattr(applied, name), getattr(new, name)
        if before == after:
            continue
        if dataclasses.is_dataclass(after) and not isinstance(after, type):
            changed += [
                f"{name}.{f.name}"
                for f in dataclasses.fields(after)
                if getattr(before, f.name) != getattr(after, f.name)
            ]
        else:
            changed.append(name)
    return changed


# --- the pid file ---------------------------------------------------------------------------------


def pid_path(settings: Settings) -> Path:
    """``<config>.pid`` next to the configuration (``restguard.toml`` -> ``restguard.pid``):
    one per configuration file, so servers of two files in one directory stay apart."""
    return settings.file.with_suffix(".pid")


def write_pid_file(settings: Settings) -> Path:
    """Note this process as the server of ``settings`` (for ``restguard reload``)."""
    path = pid_path(settings)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    return path


def remove_pid_file(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()


def _server_pid(settings: Settings) -> int:
    path = pid_path(settings)
    try:
        pid = int(path.read_text().strip())
    except FileNotFoundError:
        raise click.ClickException(
            f"no running server for {settings.file} ({path} is missing): start 'restguard serve'"
        ) from None
    except (OSError, ValueError):
        raise click.ClickException(f"{path} does not hold a process id") from None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        raise click.ClickException(
            f"no running server for {settings.file} (process {pid} from {path} is gone)"
        ) from None
    if not _is_server_of(cmdline, settings):  # a reused pid: never signal a stranger
        raise click.ClickException(
            f"process {pid} from {path} is not 'restguard serve' for {settings.file}"
        )
    return pid


def _is_server_of(cmdline: bytes, settings: Settings) -> bool:
    """Whether a process's command line is ``restguard serve`` (however started) for this
    configuration: its own file by --config, or none given (then $RESTGUARD_CONFIG or the
    default, which led to the same pid file)."""
    args = [a.decode("utf-8", "replace") for a in cmdline.split(b"\0") if a]
    if "serve" not in args:
        return False
    names = [Path(a).name for a in args[: args.index("serve")]]  # (python -m restguard.cli)
    if not any(n == "restguard" or n.startswith("restguard.") for n in names):
        return False
    configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    configs += [a.partition("=")[2] for a in args if a.startswith("--config=")]
    return all(_same_file(c, settings.file) for c in configs)


def _same_file(given: str, file: Path) -> bool:
    try:
        return Path(given).resolve() == file.resolve() or Path(given).samefile(file)
    except OSError:
        return False


@click.command()
@config_option
@json_option
def reload(config: str | None, as_json: bool) -> None:
    """Reload the running server's configuration (the same as sending it SIGHUP).

    The file is checked first: a broken one is refused here (exit 1, every problem listed) and
    the server keeps its configuration. The new policy applies to every request decided from
    then on, with no connection dropped; settings that need a restart are named in the
    server's log.
    """
    result = validate(config_path(given_config(config)))
    problems = list(result.problems)
    if result.settings is not None and not problems:
        try:
            check_routes_servable(result.settings)  # (what the server checks as well)
        except ConfigError as exc:
            problems.append(exc)
    if result.settings is None or problems:
        for problem in problems:
            click.echo(str(problem), err=True)
        raise click.ClickException("the configuration has problems: the server was not signalled")
    settings = result.settings
    pid = _server_pid(settings)
    os.kill(pid, signal.SIGHUP)
    if as_json:
        emit_json({"pid": pid, "config": str(settings.file), "routes": len(settings.routes)})
    else:
        success(f"reload sent to restguard (pid {pid}): {len(settings.routes)} routes")
