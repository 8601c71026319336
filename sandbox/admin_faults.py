"""Admin API for fault switches, under `/admin/faults` (same token as the rest of the admin API).

- `GET /admin/faults`: the share-based fault settings in force.
- `PUT /admin/faults` with `{"unavailable_rate", "throttle_rate", "retry_after", "slow_rate",
  "slow_seconds", "lost_response_rate", "seed"}` (any subset; left out means off): replace them. Also
  clears every deterministic fault below.
- `PUT /admin/faults/purchases/<id>` with `{"fail_next": N}`: 503 for that purchase's next N erasures.
- `PUT /admin/faults/throttle/<api>` (`customers` or `personal-data`) with `{"seconds": S}` or
  `{"requests": N}`, optionally `"retry_after": R`: answer that API's requests with 429 and a
  `Retry-After` header for S seconds (Retry-After defaults to the seconds left) or for the next N
  requests (defaults to `retry_after` of the settings, 1). `DELETE` ends the window.
- `PUT /admin/faults/reject` with `{"next": N}`: refuse the next N customer mutations with payload
  errors that echo every submitted value (`Invalid value: "Jane Doe".`).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify

from sandbox.admin import is_whole_number, json_body, require_customers_token
from sandbox.faults import API_NAMES, FaultSettings, FaultSettingsError, ThrottleWindow
from sandbox.http_errors import error_response
from sandbox.state import current_state

bp = Blueprint("admin_faults", __name__, url_prefix="/admin/faults")
bp.before_request(require_customers_token)


@bp.get("")
def get_faults() -> Response:
    """Report the fault settings in force."""
    return jsonify(current_state().faults.settings.to_json())


@bp.put("")
def put_faults() -> Response:
    """Replace the fault settings; keys left out take their defaults, i.e. off."""
    try:
        settings = FaultSettings.from_json(json_body())
    except FaultSettingsError as exc:
        return error_response(400, str(exc))
    current_state().faults.configure(settings)
    return jsonify(settings.to_json())


@bp.put("/purchases/<int:purchase_id>")
def put_purchase_fault(purchase_id: int) -> Response | tuple[Response, int]:
    """Fail the next `fail_next` erasures of one purchase with 503 (until the next reset or PUT /faults)."""
    body = json_body()
    times = body.get("fail_next") if isinstance(body, dict) else None
    if not is_whole_number(times):
        return error_response(400, 'The body must be {"fail_next": <a whole number of calls>}.')
    current_state().faults.fail_purchase(purchase_id, times)
    return jsonify({"purchase_id": purchase_id, "fail_next": times})


@bp.put("/throttle/<api>")
def put_throttle(api: str) -> Response | tuple[Response, int]:
    """Answer one API's requests with 429 for a number of seconds or of requests."""
    if api not in API_NAMES:
        return error_response(404, f"Unknown API; use one of: {', '.join(API_NAMES)}.")
    body = json_body()
    window = _throttle_window(body) if isinstance(body, dict) else None
    if window is None:
        return error_response(
            400, 'The body must be {"seconds": S} or {"requests": N}, optionally with "retry_after": R.'
        )
    current_state().faults.throttle(api, window)
    return jsonify({"api": api, **body})


@bp.delete("/throttle/<api>")
def delete_throttle(api: str) -> Response | tuple[Response, int]:
    """End one API's 429 window at once."""
    if api not in API_NAMES:
        return error_response(404, f"Unknown API; use one of: {', '.join(API_NAMES)}.")
    current_state().faults.end_throttle(api)
    return jsonify({"api": api})


@bp.put("/reject")
def put_rejections() -> Response | tuple[Response, int]:
    """Refuse the next `next` customer mutations with payload errors echoing the submitted values."""
    body = json_body()
    times = body.get("next") if isinstance(body, dict) else None
    if not is_whole_number(times):
        return error_response(400, 'The body must be {"next": <a whole number of mutations>}.')
    current_state().faults.reject_mutations(times)
    return jsonify({"next": times})


def _throttle_window(body: dict[str, Any]) -> ThrottleWindow | None:
    """Build the window a PUT /throttle body asks for, or None when the body is malformed."""
    if set(body) - {"seconds", "requests", "retry_after"} or ("seconds" in body) == ("requests" in body):
        return None
    retry_after = body.get("retry_after")
    if retry_after is not None and not is_whole_number(retry_after):
        return None
    if "requests" in body:
        requests = body["requests"]
        return (
            ThrottleWindow(requests_left=requests, retry_after=retry_after)
            if is_whole_number(requests)
            else None
        )
    seconds = body["seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        return None
    return ThrottleWindow(until=time.monotonic() + seconds, retry_after=retry_after)
