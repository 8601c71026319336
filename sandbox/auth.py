"""Bearer-token checks for the sandbox's endpoints."""

from __future__ import annotations

import hmac

from flask import request

_SCHEME = "Bearer "


def bearer_token_matches(expected: str) -> bool:
    """Tell whether the request's `Authorization: Bearer <token>` carries `expected`, in constant time."""
    header = request.headers.get("Authorization", "")
    if not header.startswith(_SCHEME):
        return False
    return hmac.compare_digest(header[len(_SCHEME) :].strip().encode(), expected.encode())
