"""Admin API for tests and local development: reset, seed purchases, read counters, switch faults."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest

from sandbox.auth import bearer_token_matches
from sandbox.faults import FaultSettings, FaultSettingsError
from sandbox.http_errors import error_response
from sandbox.purchases import InvalidPurchase
from sandbox.state import current_state

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def require_customers_token() -> Response | None:
    """Let only callers holding the customers API's token use the admin API."""
    if not bearer_token_matches(current_state().config.customers_token):
        return error_response(401, "Missing or invalid bearer token.")
    return None


@bp.post("/reset")
def reset() -> Response:
    """Forget customers, purchases and counters, and switch every fault off."""
    state = current_state()
    state.store.reset()
    state.faults.configure(FaultSettings())
    return jsonify(_stats())


@bp.post("/purchases")
def seed_purchases() -> tuple[Response, int] | Response:
    """Add the purchases in the body, a JSON list in the schema's Purchase shape."""
    purchases = _json_body()
    if not isinstance(purchases, list):
        return error_response(400, "The body must be a JSON list of purchases.")
    try:
        seeded = current_state().store.seed_purchases(purchases)
    except InvalidPurchase as exc:
        return error_response(400, str(exc))
    return jsonify({"seeded": seeded}), 201


@bp.get("/stats")
def stats() -> Response:
    """Report how many times each mutation ran and how many faults were injected."""
    return jsonify(_stats())


@bp.get("/faults")
def get_faults() -> Response:
    """Report the fault settings in force."""
    return jsonify(current_state().faults.settings.to_json())


@bp.put("/faults")
def put_faults() -> Response:
    """Replace the fault settings; keys left out take their defaults, i.e. off."""
    try:
        settings = FaultSettings.from_json(_json_body())
    except FaultSettingsError as exc:
        return error_response(400, str(exc))
    current_state().faults.configure(settings)
    return jsonify(settings.to_json())


@bp.put("/faults/purchases/<int:purchase_id>")
def put_purchase_fault(purchase_id: int) -> Response | tuple[Response, int]:
    """Fail the next `fail_next` erasures of one purchase with 503 (until the next reset or PUT /faults)."""
    body = _json_body()
    times = body.get("fail_next") if isinstance(body, dict) else None
    if not isinstance(times, int) or isinstance(times, bool) or times < 0:
        return error_response(400, 'The body must be {"fail_next": <a whole number of calls>}.')
    current_state().faults.fail_purchase(purchase_id, times)
    return jsonify({"purchase_id": purchase_id, "fail_next": times})


def _json_body() -> Any:
    """Decode the request body as JSON, or abort with 400."""
    try:
        return json.loads(request.get_data())
    except ValueError:
        raise BadRequest("The request body must be JSON.") from None


def _stats() -> dict[str, Any]:
    """Combine the store's counters with the injected-fault counters."""
    state = current_state()
    return {**state.store.stats(), "faults": state.faults.counts()}
