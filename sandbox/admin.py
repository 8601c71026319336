"""Admin API for tests and local development: reset, seed, counters, request rates and latency.

Every endpoint takes the customers API's token (`Authorization: Bearer <token>`) and answers JSON.
Fault switches live in `sandbox.admin_faults`, under `/admin/faults`.

- `POST /admin/reset`: forget customers, purchases, counters and request rates; faults off; latency back
  to the configured value. Answers the stats.
- `GET /admin/stats`: mutation counters, erasures per purchase, collection sizes, injected faults.
- `DELETE /admin/stats`: zero the mutation and fault counters, keeping the data. Answers the stats.
- `POST /admin/purchases` with a JSON list of purchases: add them (all or none).
- `POST /admin/customers` with `{"customers": [...]}` or `{"generate": {...}}` (see `sandbox.seeding`):
  add customers, system ones and ones without externalId included, without counting mutations.
- `POST /admin/customers/reissue` with `{"external_ids": [...]}`: out of band, delete each of those
  customers and create it again with the same values under a new id (a client's cached ids go stale).
- `GET /admin/rates`: requests each API received since the last reset: `total`, `max_per_second`
  (per wall-clock second), `max_in_sliding_second`, `per_second` `{"<epoch second>": count}`.
- `DELETE /admin/rates`: start counting requests again from zero.
- `GET|PUT /admin/latency` with `{"api_latency_ms": N}`: the latency every GraphQL call answers after.
"""

from __future__ import annotations

import json
from typing import Any, TypeGuard

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest

from sandbox.auth import bearer_token_matches
from sandbox.customers import InvalidCustomer
from sandbox.faults import FaultSettings
from sandbox.http_errors import error_response
from sandbox.purchases import InvalidPurchase
from sandbox.seeding import customers_to_seed
from sandbox.state import current_state

bp = Blueprint("admin", __name__, url_prefix="/admin")


def require_customers_token() -> Response | None:
    """Let only callers holding the customers API's token use the admin API."""
    if not bearer_token_matches(current_state().config.customers_token):
        return error_response(401, "Missing or invalid bearer token.")
    return None


bp.before_request(require_customers_token)


@bp.post("/reset")
def reset() -> Response:
    """Forget customers, purchases, counters and rates, switch every fault off, restore the latency."""
    state = current_state()
    state.store.reset()
    state.faults.configure(FaultSettings())
    state.faults.latency_ms = state.config.api_latency_ms
    state.rates.reset()
    return jsonify(_stats())


@bp.post("/purchases")
def seed_purchases() -> tuple[Response, int] | Response:
    """Add the purchases in the body, a JSON list in the schema's Purchase shape."""
    purchases = json_body()
    if not isinstance(purchases, list):
        return error_response(400, "The body must be a JSON list of purchases.")
    try:
        seeded = current_state().store.seed_purchases(purchases)
    except InvalidPurchase as exc:
        return error_response(400, str(exc))
    return jsonify({"seeded": seeded}), 201


@bp.post("/customers")
def seed_customers() -> tuple[Response, int] | Response:
    """Add customers in bulk, all or none, bypassing the API and its mutation counters."""
    store = current_state().store
    try:
        seeded = store.seed_customers(customers_to_seed(json_body()))
    except InvalidCustomer as exc:
        return error_response(400, str(exc))
    return jsonify({"seeded": seeded, "customers": store.stats()["customers"]}), 201


@bp.post("/customers/reissue")
def reissue_customers() -> tuple[Response, int] | Response:
    """Out of band, delete each customer of `external_ids` and create it again with the same values
    under a new id (a client's cached ids go stale), bypassing the API and its counters."""
    body = json_body()
    external_ids = body.get("external_ids") if isinstance(body, dict) else None
    if not isinstance(external_ids, list) or not all(isinstance(item, str) for item in external_ids):
        return error_response(400, 'The body must be {"external_ids": [strings]}.')
    return jsonify({"reissued": current_state().store.reissue_customers(external_ids)})


@bp.get("/stats")
def stats() -> Response:
    """Report how many times each mutation ran and how many faults were injected."""
    return jsonify(_stats())


@bp.delete("/stats")
def reset_stats() -> Response:
    """Zero the mutation and fault counters, keeping customers, purchases and fault settings."""
    state = current_state()
    state.store.reset_counters()
    state.faults.reset_counts()
    return jsonify(_stats())


@bp.get("/rates")
def rates() -> Response:
    """Report the requests each API received: total, per wall-clock second, and the maxima."""
    return jsonify(current_state().rates.to_json())


@bp.delete("/rates")
def reset_rates() -> Response:
    """Start counting each API's requests again from zero."""
    state = current_state()
    state.rates.reset()
    return jsonify(state.rates.to_json())


@bp.get("/latency")
def get_latency() -> Response:
    """Report the latency every GraphQL call answers after."""
    return jsonify({"api_latency_ms": current_state().faults.latency_ms})


@bp.put("/latency")
def put_latency() -> Response | tuple[Response, int]:
    """Set the latency every GraphQL call answers after, until the next reset."""
    body = json_body()
    latency = body.get("api_latency_ms") if isinstance(body, dict) else None
    if not is_whole_number(latency):
        return error_response(400, 'The body must be {"api_latency_ms": <a whole number of ms>}.')
    current_state().faults.latency_ms = latency
    return jsonify({"api_latency_ms": latency})


def json_body() -> Any:
    """Decode the request body as JSON, or abort with 400."""
    try:
        return json.loads(request.get_data())
    except ValueError:
        raise BadRequest("The request body must be JSON.") from None


def is_whole_number(value: Any) -> TypeGuard[int]:
    """Tell a non-negative JSON integer from other values, booleans included."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _stats() -> dict[str, Any]:
    """Combine the store's counters with the injected-fault counters."""
    state = current_state()
    return {**state.store.stats(), "faults": state.faults.counts()}
