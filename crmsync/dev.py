"""`crmsync dev`: the whole service on one machine — Redis, the sandbox API, web and worker.

This is the one explicit development mode: it makes up a webhook secret and API tokens for this
run (unless given in the environment), and starts an embedded Redis when REDIS_URL is unset.
"""

from __future__ import annotations

import base64
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import click
import requests

from crmsync.embedded_redis import EmbeddedRedis, start_embedded_redis

__all__ = ["dev_command", "wait_ready", "NotReady"]

FIXTURES = Path(__file__).resolve().parent.parent / "sandbox" / "fixtures" / "purchases.json"


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
    """Run web, worker, the sandbox API and (without REDIS_URL) an embedded Redis, until Ctrl-C."""
    redis: EmbeddedRedis | None = None
    if not os.environ.get("REDIS_URL"):
        redis = start_embedded_redis()
    env = _environment(port, sandbox_port, redis.url if redis else os.environ["REDIS_URL"])
    python = [sys.executable, "-m"]
    processes = {
        "sandbox": subprocess.Popen([*python, "crmsync", "sandbox", "--port", str(sandbox_port)], env=env),
        "web": subprocess.Popen(
            [*python, "gunicorn", "--config", "python:crmsync.gunicorn_conf", "crmsync.web:create_app()"],
            env=env,
        ),
        "worker": subprocess.Popen([*python, "crmsync", "worker"], env=env),
    }
    try:
        _wait_ready(f"http://127.0.0.1:{sandbox_port}/healthz", processes)
        _wait_ready(f"http://127.0.0.1:{port}/readyz", processes)
        _print_banner(env, port, sandbox_port, redis)
        if smoke:
            _smoke(env, port)
            return
        while all(process.poll() is None for process in processes.values()):
            time.sleep(0.5)
        stopped = [name for name, process in processes.items() if process.poll() is not None]
        raise click.ClickException(f"{', '.join(stopped)} stopped; shutting down")
    except KeyboardInterrupt:
        click.echo("\nstopping...")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                process.kill()
        if redis:
            redis.stop()


def _environment(port: int, sandbox_port: int, redis_url: str) -> dict[str, str]:
    customers_token = os.environ.get("SANDBOX_CUSTOMERS_TOKEN") or secrets.token_urlsafe(24)
    personal_data_token = os.environ.get("SANDBOX_PERSONAL_DATA_TOKEN") or secrets.token_urlsafe(24)
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    defaults = {
        "WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "CUSTOMERS_API_URL": f"{sandbox}/customers/graphql",
        "CUSTOMERS_API_TOKEN": customers_token,
        "PERSONAL_DATA_API_URL": f"{sandbox}/personal-data/graphql",
        "PERSONAL_DATA_API_TOKEN": personal_data_token,
        "SANDBOX_PURCHASES_FILE": str(FIXTURES),
        "WEB_CONCURRENCY": "2",
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


def _wait_ready(url: str, processes: Mapping[str, subprocess.Popen[bytes]]) -> None:
    try:
        wait_ready(url, processes)
    except NotReady as exc:
        raise click.ClickException(str(exc)) from None


def _print_banner(env: dict[str, str], port: int, sandbox_port: int, redis: EmbeddedRedis | None) -> None:
    crmsync = Path(sys.executable).with_name("crmsync")
    command = shlex.join([str(crmsync), "send-sample", f"http://127.0.0.1:{port}/webhooks/crm"])
    query = '{"query":"{ customers(isSystem: false) { nodes { name externalId labels } } }"}'
    look = shlex.join([
        "curl", "-s", "-H", f"Authorization: Bearer {env['CUSTOMERS_API_TOKEN']}",
        "-H", "Content-Type: application/json", "-d", query, env["CUSTOMERS_API_URL"],
    ])  # fmt: skip
    click.echo(
        "\ncrmsync is running (Ctrl-C stops everything):\n"
        f"  webhooks   POST http://127.0.0.1:{port}/webhooks/crm\n"
        f"  sandbox    {env['CUSTOMERS_API_URL']}\n"
        f"             {env['PERSONAL_DATA_API_URL']}\n"
        f"  redis      {'embedded, ' if redis else ''}{env['REDIS_URL']}\n\n"
        "Send a signed sample webhook:\n"
        f"  WEBHOOK_SECRET={env['WEBHOOK_SECRET']} {command}\n\n"
        "Then see the customer in the sandbox:\n"
        f"  {look}\n",
    )


def _smoke(env: dict[str, str], port: int) -> None:
    """Send the sample webhook and wait until the sandbox has the customer (for tests and CI)."""
    from crmsync.core.settings import parse_secrets
    from crmsync.sender import sample_event, send_event

    response = send_event(
        f"http://127.0.0.1:{port}/webhooks/crm", parse_secrets(env["WEBHOOK_SECRET"])[0], sample_event()
    )
    click.echo(f"sample webhook: HTTP {response.status_code} {response.text.strip()}")
    query = {"query": '{ customers(externalId: "crm-0001", isSystem: false) { nodes { name } } }'}
    headers = {"Authorization": f"Bearer {env['CUSTOMERS_API_TOKEN']}"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        nodes = requests.post(env["CUSTOMERS_API_URL"], json=query, headers=headers, timeout=5).json()[
            "data"
        ]["customers"]["nodes"]
        if nodes:
            click.echo(f"sandbox now has customer crm-0001: {nodes[0]['name']}")
            return
        time.sleep(0.2)
    raise click.ClickException("the sample event did not reach the sandbox within 30 s")
