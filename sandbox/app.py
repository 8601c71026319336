"""Assembly of the sandbox: one Flask app serving both GraphQL APIs, the admin API and a health check."""

from __future__ import annotations

import json

from flask import Flask, Response, jsonify

from sandbox import admin, admin_faults, graphql_views, http_errors
from sandbox.config import ConfigError, SandboxConfig
from sandbox.graphql_api import SCHEMA_NAMES, load_schema
from sandbox.purchases import InvalidPurchase
from sandbox.state import SandboxState

__all__ = ["SandboxConfig", "create_sandbox_app"]


def create_sandbox_app(config: SandboxConfig | None = None) -> Flask:
    """Build a sandbox app; without `config`, settings come from the environment."""
    config = config or SandboxConfig.from_env()
    # Building the schemas here makes a broken SDL file fail at start-up, not on the first request.
    for name in SCHEMA_NAMES:
        load_schema(name)
    state = SandboxState.build(config)
    if config.purchases_file is not None:
        _seed_from_file(state, config)
    app = Flask(__name__)
    state.init_app(app)
    http_errors.init_app(app)
    app.register_blueprint(graphql_views.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(admin_faults.bp)
    app.add_url_rule("/healthz", "healthz", _healthz)
    return app


def _healthz() -> Response:
    """Tell a load balancer or test harness that the sandbox is up."""
    return jsonify({"status": "ok"})


def _seed_from_file(state: SandboxState, config: SandboxConfig) -> None:
    """Load the purchases file named by SANDBOX_PURCHASES_FILE, or raise ConfigError."""
    path = config.purchases_file
    assert path is not None
    try:
        purchases = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(purchases, list):
            raise InvalidPurchase("The file must hold a JSON list of purchases.")
        state.store.seed_purchases(purchases)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"SANDBOX_PURCHASES_FILE ({path}) cannot be loaded: {exc}") from exc
