"""The operators' dashboard under `/dashboard`: what failed and why, replay or discard it; and the
GDPR erasure audit trail, failed and overdue erasures flagged.

Server-rendered pages (Jinja, autoescaped, no script at all) and a JSON API under `/dashboard/api`,
both behind HTTP Basic auth and, for every state change, a POST with a CSRF token. Without
DASHBOARD_PASSWORD the whole dashboard answers 404. Pages show identifiers and redacted failure
messages only, never a job's arguments (they hold customer data).

To add a page: a view in a module of this package, a template extending `dashboard/base.html`, and
an entry in NAV.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response, abort, current_app, g, render_template, request
from markupsafe import Markup
from redis.exceptions import RedisError

from crmsync.core.display import printable
from crmsync.core.settings import Settings
from webhooks.errors import error_response

from .auth import authenticated_user
from .csrf import same_origin, token_is_valid

__all__ = ["bp", "init_app", "NAV"]

log = logging.getLogger("crmsync.web")
API_PREFIX = "/dashboard/api/"

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
)

# (endpoint, label) of each page in the navigation bar, in order.
NAV: list[tuple[str, str]] = [
    ("dashboard.overview", "Overview"),
    ("dashboard.failed", "Failed jobs"),
    ("dashboard.replays", "Replays"),
    ("dashboard.discarded", "Discarded"),
    ("dashboard.erasures", "Erasures"),
    ("dashboard.customer", "Customer"),
    ("dashboard.reconcile_runs", "Reconcile"),
    ("dashboard.sources", "CRM sources"),
]

SECURITY_HEADERS = {
    # No script runs on these pages at all; styles come from our own static file.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@bp.before_request
def require_operator() -> Response | tuple[Response, int] | None:
    settings: Settings = current_app.config["CRMSYNC_SETTINGS"]
    if not settings.dashboard_password:
        abort(404)  # Off unless configured: never open.
    user = authenticated_user(settings, request.headers.get("Authorization"))
    if user is None:
        response, status = error_response(401, "unauthorized", "Log in with the dashboard's credentials.")
        response.headers["WWW-Authenticate"] = 'Basic realm="crmsync dashboard", charset="UTF-8"'
        return response, status
    g.dashboard_user = user
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        token = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token")
        if not same_origin(request.host_url, request.headers.get("Origin"), request.headers.get("Referer")):
            return error_response(403, "cross_origin", "State changes must come from the dashboard itself.")
        if not token_is_valid(settings, user, token):
            return error_response(403, "csrf_token_invalid", "A valid CSRF token is required.")
    return None


@bp.errorhandler(RedisError)
def redis_unavailable(exc: RedisError) -> tuple[Response | str, int]:
    """Redis is down: a page (or, under the API, JSON) saying so with 503, as /readyz does; not a 500."""
    log.warning("redis unavailable", extra={"event": "dashboard_unavailable", "path": request.path})
    if request.path.startswith(API_PREFIX):
        return error_response(503, "redis_unavailable", "Redis is not reachable; retry later.")
    return render_template("dashboard/unavailable.html"), 503


@bp.after_request
def add_security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def init_app(app: Flask) -> None:
    """Mount the dashboard (it stays 404 until DASHBOARD_PASSWORD is set)."""
    from . import api, pages  # noqa: F401  (registers their views on bp)

    # Every `{{ value }}` of every page passes here before autoescaping: control characters in text a
    # sender chose (ids, types, reasons) are shown escaped, as the CLI shows them.
    app.jinja_env.finalize = shown
    app.register_blueprint(bp)


def shown(value: object) -> object:
    """What a page shows for `value`: text with its control characters escaped; markup the app built
    itself (the charts) as it is."""
    return printable(value) if isinstance(value, str) and not isinstance(value, Markup) else value
