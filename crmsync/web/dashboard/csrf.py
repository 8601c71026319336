"""CSRF protection for the dashboard's state changes, without a server-side session.

Browsers resend Basic credentials on any request to the site, including one a hostile page makes,
so every POST also needs a token that only a page from this site can have read: an HMAC over the
user and the time it was issued, with a key derived from the dashboard's secret. POSTs whose Origin
(or, lacking it, Referer) names another site are refused too.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

from crmsync.core.parsing import ascii_int
from crmsync.core.settings import Settings

__all__ = ["issue_token", "token_is_valid", "same_origin", "TOKEN_LIFETIME_SECONDS"]

TOKEN_LIFETIME_SECONDS = 12 * 3600
# Unix seconds have 10 digits until the year 2286; a longer `issued` is forged.
ISSUED_MAX_DIGITS = 12


def _key(settings: Settings) -> bytes:
    secret = settings.dashboard_secret_key or settings.dashboard_password
    return hmac.new(secret.encode(), b"crmsync dashboard csrf", hashlib.sha256).digest()


def _signature(settings: Settings, user: str, issued: int) -> str:
    return hmac.new(_key(settings), f"{user}|{issued}".encode(), hashlib.sha256).hexdigest()


def issue_token(settings: Settings, user: str, now: float | None = None) -> str:
    """A token for `user`'s forms and API calls, valid TOKEN_LIFETIME_SECONDS."""
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_signature(settings, user, issued)}"


def token_is_valid(settings: Settings, user: str, token: str | None, now: float | None = None) -> bool:
    issued_text, _, signature = (token or "").partition(".")
    issued = ascii_int(issued_text, ISSUED_MAX_DIGITS)
    if issued is None or not signature:
        return False
    age = (time.time() if now is None else now) - issued
    expected = _signature(settings, user, issued)
    return hmac.compare_digest(signature.encode(), expected.encode()) and 0 <= age <= TOKEN_LIFETIME_SECONDS


def same_origin(host_url: str, origin: str | None, referer: str | None) -> bool:
    """Whether the request came from this site's pages (true when the browser sent neither header)."""
    if origin == "null":
        return False  # sent by sandboxed frames and privacy-sensitive redirects: never trusted
    source = origin or referer
    if not source:
        return True  # the token alone decides (e.g. a script or the CLI calling the JSON API)
    ours, theirs = urlsplit(host_url), urlsplit(source)
    return (theirs.scheme, theirs.netloc) == (ours.scheme, ours.netloc)
