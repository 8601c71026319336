"""Gunicorn settings for the web process (`gunicorn --config python:crmsync.server.gunicorn_conf ...`).

Everything comes from the environment, as on Heroku: PORT, WEB_CONCURRENCY, WEB_THREADS.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

from crmsync.core.logs import configure
from crmsync.core.settings import Settings, SettingsError, web_processes
from crmsync.server.access_log import JsonAccessLogger, with_request_facts
from crmsync.server.buffering_worker import stop_header_deadline
from webhooks.mappings import DEFAULT_MAPPINGS, MappingError, Mappings, load_mappings
from webhooks.sources import registry


def _process_settings() -> tuple[int, int]:
    """WEB_CONCURRENCY and WEB_THREADS, checked before gunicorn reads them: refuse to start, with one
    clear line, rather than with gunicorn's traceback (or workers that fail to boot, over and over)."""
    try:
        return web_processes(os.environ)
    except SettingsError as exc:
        sys.exit(f"crmsync: configuration error: {exc}")


# Threads (gthread, see BufferingThreadWorker) let a worker process take the next request while one
# waits for its Redis round trip, and keep connections alive (sync workers close every one); see
# docs/benchmarks.md. Checked before the metrics directory below is made, which an exit would leave.
workers, threads = _process_settings()

# prometheus-client picks its multiprocess mode when first imported, so the directory must be in the
# environment before any gunicorn worker imports the app. Heroku dynos have a private /tmp.
_OWN_MULTIPROC_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_MULTIPROC_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="crmsync-prometheus-")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# With gthread, `timeout` restarts a worker process whose main loop stopped answering; it does not
# end a slow request in a thread. BufferingThreadWorker gives a request to a thread only once it has
# arrived whole, and answers 408 to one still incomplete BODY_TIMEOUT_SECONDS after its first byte.
# A restart lets in-flight requests finish within Heroku's 30 s window.
worker_class = "crmsync.server.buffering_worker.BufferingThreadWorker"
timeout = 20
graceful_timeout = 25
keepalive = 5
errorlog = "-"
# gunicorn trusts no client's X-Forwarded-* (a `*` here took a client's leftmost X-Forwarded-Proto as
# the scheme): the app trusts what TRUSTED_PROXY_HOPS proxies set, and only that (crmsync/web/proxies.py).
forwarded_allow_ips = ""
# gunicorn 25+ opens a control socket at one fixed path per user by default, which two gunicorns on
# one machine (a dev run next to the tests) would take from each other; crmsync does not use it.
control_socket_disable = True
# One line per request (crmsync/server/access_log.py).
accesslog = "-"
logger_class = JsonAccessLogger


def on_starting(server: Any) -> None:
    """Refuse to start, with one clear line, when a setting is missing or malformed."""
    try:
        settings = Settings.from_env(role="web")
        mappings = load_mappings(settings.mappings_file) if settings.mappings_file else DEFAULT_MAPPINGS
        # What create_app checks in each worker, once here: every source's settings, at least one.
        served = list(registry.build_sources(registry.from_env(), mappings))
    except (SettingsError, MappingError) as exc:
        on_exit(server)  # gunicorn calls it only after a start
        sys.exit(f"crmsync: configuration error: {exc}")
    _warn_if_redis_is_unreachable(server, settings.redis_url)
    _warn_of_shared_ids(server, served, mappings)
    # Counters left by a previous run of this master would be summed into this one's.
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def _warn_if_redis_is_unreachable(server: Any, url: str) -> None:
    """Start anyway (Redis may come first or later; /readyz answers 503 meanwhile), but say so: every
    webhook is refused until Redis answers."""
    from redis.exceptions import RedisError

    from crmsync.core.redis_conn import connect, redact_url

    client = connect(url)
    try:
        client.ping()
    except RedisError as exc:
        server.log.warning(
            f"Redis at {redact_url(url)} is not reachable ({type(exc).__name__}): webhooks are answered "
            "503 until it is (GET /readyz)"
        )
    finally:
        client.close()


def _warn_of_shared_ids(server: Any, served: list[str], mappings: Mappings) -> None:
    """Once per start (here, in the master): CRM sources whose ids can name the same customer."""
    shared = registry.sources_sharing_ids(served, mappings)
    if shared:
        server.log.warning(
            "CRM sources share external ids: set external_id_prefix on each source's mapping",
            extra={"event": "external_ids_may_collide", "sources": shared},
        )


def on_exit(server: Any) -> None:
    """Remove the metrics directory this master made itself (not one given in the environment)."""
    if _OWN_MULTIPROC_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server: Any, worker: Any) -> None:
    """A worker process ended: its live gauges are dropped (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def pre_request(worker: Any, req: Any) -> None:
    """The headers are in: the time to send them is no longer counted (the body has its own)."""
    stop_header_deadline()


def post_worker_init(worker: Any) -> None:
    """Application logs as JSON lines on stdout, like the worker's; views may add fields to their
    request's access log line (ACCESS_LOG_FIELDS) instead of logging a line of their own."""
    configure(os.environ.get("LOG_LEVEL", "INFO"))
    worker.wsgi = with_request_facts(worker.wsgi)
