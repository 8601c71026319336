"""What the app believes of the proxies in front of it: only what the trusted ones set.

Heroku's router appends the scheme it was reached by to `X-Forwarded-Proto` and the client's address
to `X-Forwarded-For`: the rightmost value is the router's, anything to its left is whatever the client
sent. So the app takes the value TRUSTED_PROXY_HOPS from the right (werkzeug's ProxyFix), and never a
client's `X-Forwarded-Host`: the HubSpot v3 signature covers the URL, and a host the client names
would let a signature made for another URL pass. The `Host` header itself reaches the app only when
the router routed it here. The app's own redirects are relative, so no `Host` can send an operator
elsewhere.
"""

from __future__ import annotations

from typing import cast
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Response, redirect
from werkzeug.middleware.proxy_fix import ProxyFix

from crmsync.core.settings import Settings

__all__ = ["init_app"]


def init_app(app: Flask, settings: Settings) -> None:
    """Trust `settings.trusted_proxy_hops` proxies' X-Forwarded-For/-Proto; make redirects relative."""
    hops = settings.trusted_proxy_hops
    if hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0
        )
    app.after_request(relative_redirect)


def relative_redirect(response: Response) -> Response:
    """Every redirect becomes the same redirect to its path and query alone.

    The app redirects only to itself: its views use `url_for` (relative), and werkzeug's own redirects
    (`/dashboard` → `/dashboard/`) name whatever `Host` a client sent, lower-cased, without its port,
    IDNA-encoded, or empty when it is invalid (`http:///dashboard/`), so no comparison with the
    request's host can tell them apart from a foreign one. A view that ever redirects to another site
    must say so here."""
    location = response.headers.get("Location")
    if not location or not 300 <= response.status_code < 400:
        return response
    parts = urlsplit(location)
    if not parts.scheme and not parts.netloc:
        return response
    target = urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))
    relative = cast(Response, redirect(target, response.status_code))  # the app's response_class
    relative.headers.update({k: v for k, v in response.headers.items() if k.lower() not in _REBUILT})
    return relative


# Headers the rebuilt redirect sets itself.
_REBUILT = frozenset({"location", "content-type", "content-length"})
