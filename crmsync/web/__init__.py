"""The web process: `create_app()` assembles the receiving side (webhooks), health, `/metrics` and the
operators' dashboard into one Flask app."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from crmsync.core.redis_conn import connect
from crmsync.core.settings import Settings
from webhooks import errors, receive
from webhooks.connection import CloseConnection
from webhooks.intake import Intake
from webhooks.mappings import DEFAULT_MAPPINGS, load_mappings
from webhooks.metrics import count_unexpected_errors_from_zero, record_unexpected_error
from webhooks.sources import registry

from . import dashboard, health, metrics, proxies

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None, *, environ: Mapping[str, str] | None = None, **flask_config: Any
) -> Flask:
    """Assemble the web app; settings come from the environment unless given (tests, tools). Every
    webhook source reads its own settings from `environ` (os.environ by default): the registry's
    (webhooks/sources/registry.py) and the secrets of those declared in the mappings file. A mistake
    in any of them, or no source at all, stops the process (SettingsError, MappingError)."""
    app = Flask(__name__)
    app.config.update(flask_config)
    settings = settings or Settings.from_env(role="web")
    app.config["CRMSYNC_SETTINGS"] = settings
    # The client connects lazily: building the app never touches Redis.
    redis = connect(settings.redis_url)
    app.extensions["crmsync_redis"] = redis
    app.extensions["crmsync_intake"] = Intake(redis, settings)
    # The mappings file is read once, here: a mistake in it stops the process (MappingError).
    mappings = load_mappings(settings.mappings_file) if settings.mappings_file else DEFAULT_MAPPINGS
    app.extensions["crmsync_mappings"] = mappings
    app.extensions["crmsync_sources"] = registry.build_sources(registry.from_env(environ), mappings, environ)
    errors.init_app(app, count_unexpected=record_unexpected_error)
    app.register_blueprint(health.bp)
    app.register_blueprint(receive.bp)
    app.register_blueprint(metrics.bp)
    dashboard.init_app(app)
    proxies.init_app(app, settings)
    count_unexpected_errors_from_zero([*app.view_functions, "unknown"])
    app.wsgi_app = CloseConnection(app.wsgi_app)  # type: ignore[method-assign]
    return app
