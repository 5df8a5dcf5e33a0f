"""The `archive` command: up, serve, status, down."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Final, cast

from services import catalog
from tools.launcher.errors import (
    EXIT_FAILED,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    Interrupted,
    LaunchError,
)
from tools.launcher.layout import Layout, reap_leftovers, running_record, write_pid_file
from tools.launcher.provision import Provisioner, env_values
from tools.launcher.supervisor import STOP_TIMEOUT, Supervisor

log = logging.getLogger("archive.launcher")

LAUNCHER: Final = "launcher"


# ---------------------------------------------------------------- archive serve NAME


def servable() -> dict[str, tuple[str, int]]:
    """What `archive serve` runs: {name: (module, default port)}."""
    table = {e.name: (e.module, e.default_port) for e in catalog.SERVICES}
    table[catalog.GATEWAY] = ("services.gateway.main", catalog.GATEWAY_DEFAULT_PORT)
    return table


def cmd_serve(name: str, environ: Mapping[str, str] = os.environ) -> int:
    from archive.config import ConfigError, Settings
    from archive.telemetry import configure_logging

    table = servable()
    if name not in table:
        print(
            f"archive serve: unknown service {name!r}; available: {', '.join(table)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    module_name, default_port = table[name]
    if importlib.util.find_spec(module_name) is None:
        print(f"archive serve {name}: {module_name} is not installed", file=sys.stderr)
        return EXIT_FAILED
    env = dict(environ)
    if not env.get("ARCHIVE_GRPC_PORT", "").strip():
        env["ARCHIVE_GRPC_PORT"] = str(default_port)
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        print(f"archive serve {name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level)
    run = getattr(importlib.import_module(module_name), "run", None)
    if not callable(run):
        print(f"archive serve {name}: {module_name} has no run(settings)", file=sys.stderr)
        return EXIT_FAILED
    try:
        asyncio.run(cast(Callable[[Settings], Coroutine[Any, Any, None]], run)(settings))
    except ConfigError as exc:  # settings a service reads itself (e.g. the gateway's backends)
        print(f"archive serve {name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # a second Ctrl-C while draining
        return 130
    return EXIT_OK


# ---------------------------------------------------------------- archive up


def cmd_up(environ: Mapping[str, str] = os.environ) -> int:
    from archive.telemetry import configure_logging

    level = (environ.get("ARCHIVE_LOG_LEVEL") or "INFO").strip().upper()
    configure_logging(level if level in logging.getLevelNamesMapping() else "INFO")
    layout = Layout.from_env(environ)
    supervisor = Supervisor(layout, environ)
    try:
        supervisor.check()
    except LaunchError as exc:
        log.error("%s", exc)
        return exc.exit_code
    layout.create()
    launcher_pid = layout.pid_file(LAUNCHER)
    running = running_record(launcher_pid)
    if running is not None and running.pid != os.getpid():
        print(
            f"archive up: already running from {layout.shown(layout.root)} "
            f"(pid {running.pid}); stop it with `archive down` or Ctrl-C in its terminal",
            file=sys.stderr,
        )
        return EXIT_FAILED

    os.close(layout.open_log(LAUNCHER))  # created 0600 before logging appends to it
    file_log = logging.FileHandler(layout.log_file(LAUNCHER))
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(file_log)
    # From here on a signal only asks the supervisor to stop: cleanup always runs.
    previous = {
        signum: signal.signal(signum, supervisor.on_signal)
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    code = EXIT_OK
    try:
        reap_leftovers(layout, STOP_TIMEOUT)
        write_pid_file(launcher_pid, os.getpid(), [sys.executable, *sys.argv])
        supervisor.plan()
        supervisor.start_all()
        gateway = supervisor.gateway
        assert gateway is not None
        Provisioner(
            layout,
            supervisor.endpoint,
            supervisor.operator_token,
            gateway.grpc_channel,
            supervisor.stop_requested,
        ).provision()
        _banner(supervisor)
        supervisor.supervise()
        log.info("stopping")
    except Interrupted:
        log.info("interrupted while starting; stopping")
    except LaunchError as exc:
        log.error("%s", exc)
        code = exc.exit_code
    except Exception:
        log.exception("archive up failed")
        code = EXIT_FAILED
    finally:
        supervisor.stop_all()
        with contextlib.suppress(FileNotFoundError):
            launcher_pid.unlink()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        logging.getLogger().removeHandler(file_log)
        file_log.close()
    return code


def _banner(supervisor: Supervisor) -> None:
    layout = supervisor.layout
    env_file = layout.shown(layout.env_file)
    names = ", ".join(c.name for c in supervisor.services)
    print(
        "\n"
        f"  archive is up: {names} behind the gateway\n"
        f"  endpoint  {supervisor.endpoint}  (gRPC)\n"
        f"  env file  {env_file}  (load it with: set -a; . {env_file}; set +a)\n"
        f"  logs      {layout.shown(layout.logs_dir)}/\n"
        f"  stop      Ctrl-C here, or `archive down` (pid {os.getpid()})\n",
        flush=True,
    )


# ---------------------------------------------------------------- archive status, down


def cmd_status(environ: Mapping[str, str] = os.environ) -> int:
    layout = Layout.from_env(environ)
    pid_files = sorted(layout.run_dir.glob("*.pid")) if layout.run_dir.is_dir() else []
    launcher = running_record(layout.pid_file(LAUNCHER))
    print(f"data directory  {layout.shown(layout.root)}")
    print(f"archive up      {f'running (pid {launcher.pid})' if launcher else 'not running'}")
    for path in pid_files:
        if path.stem == LAUNCHER:
            continue
        record = running_record(path)
        state = f"pid {record.pid}  running" if record else "not running (stale pid file)"
        print(f"  {path.stem:<12} {state}")
    endpoint = env_values(layout).get("ARCHIVE_ENDPOINT")
    if launcher and endpoint:
        print(f"endpoint        {endpoint}  (env file {layout.shown(layout.env_file)})")
    return EXIT_OK if launcher else EXIT_NOT_RUNNING


def cmd_down(environ: Mapping[str, str] = os.environ, timeout: float = 60.0) -> int:
    layout = Layout.from_env(environ)
    launcher = running_record(layout.pid_file(LAUNCHER))
    if launcher is None:
        print(f"archive down: nothing runs from {layout.shown(layout.root)}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    os.kill(launcher.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while launcher.is_running():
        if time.monotonic() > deadline:
            print(
                f"archive down: pid {launcher.pid} still running after {timeout:.0f}s",
                file=sys.stderr,
            )
            return EXIT_FAILED
        time.sleep(0.1)
    print("archive stopped")
    return EXIT_OK


# ---------------------------------------------------------------- arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archive", description="Run the trusted archive platform."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("up", help="start everything and supervise it (Ctrl-C stops)")
    serve = commands.add_parser("serve", help="run one service in this process")
    serve.add_argument("service", help=", ".join(servable()))
    commands.add_parser("status", help="what runs from ARCHIVE_DATA_DIR (default ./var)")
    commands.add_parser("down", help="stop the `archive up` of ARCHIVE_DATA_DIR")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return cmd_serve(args.service)
    if args.command == "up":
        return cmd_up()
    if args.command == "status":
        return cmd_status()
    return cmd_down()
