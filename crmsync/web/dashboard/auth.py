"""HTTP Basic authentication for the dashboard, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac

from crmsync.core.settings import Settings

__all__ = ["authenticated_user"]


def authenticated_user(settings: Settings, authorization: str | None) -> str | None:
    """The user named in a valid `Authorization: Basic ...` header, else None."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    # Both compared, always: the time taken says nothing about which one was wrong.
    user_ok = hmac.compare_digest(user.encode(), settings.dashboard_user.encode())
    password_ok = hmac.compare_digest(password.encode(), settings.dashboard_password.encode())
    return user if sep and user_ok and password_ok else None
