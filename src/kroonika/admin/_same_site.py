"""Routes that take the session cookie only on a request this site started.

The session cookie is ``SameSite=Lax``: a top-level navigation from another site (a
link, a redirect) carries it. A route of :class:`SameSiteOnlyRoute` refuses such a
request when the browser says another site started it (``Sec-Fetch-Site:
cross-site``) and it carries the session cookie and no ``Authorization`` header,
before anything else runs: no dependency, so no session lookup, no ``last_seen_at``
touched, no lapsed session ended on another site's behalf. Same-origin, same-site,
``none`` (a bookmark, a typed address) and no header at all (not a browser) are taken.

The route class is the one source of "guarded": the check runs in the handler it
builds, and :func:`same_site_only` (the login's landing, which must not send the
browser back from TARA straight into a refusal) asks the routes themselves, so a new
guarded area cannot have one without the other (decision 0037, 2026-11-28 review dash).
A route that reads another of the person's cookies (the session's access token) names
it in :meth:`SameSiteOnlyRoute.guarded_cookies`; a route may answer with something
other than a refusal (the citizen's page is shown without the session; decision 0037,
2026-11-28 review crosssite2).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any
from urllib.parse import unquote

from fastapi import Request, Response
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute, compile_path

#: The error code (admin and audit API) and the violation reason of a request with the
#: session cookie that the browser says another site started (decision 0037).
CROSS_SITE = "cross_site_request"


def cross_site_with_session(request: Request, cookies: Iterable[str] | None = None) -> bool:
    """Whether another site started ``request`` (``Sec-Fetch-Site: cross-site``) and it
    carries one of ``cookies`` (default: the session cookie) and no ``Authorization``
    header (an API key or a bearer token is sent on purpose by its holder, never by a
    browser on another site's behalf)."""
    if request.headers.get("sec-fetch-site") != "cross-site":
        return False
    if "authorization" in request.headers:
        return False
    if cookies is None:
        cookies = (request.app.state.services.cookies.session_name,)
    return any(request.cookies.get(name) for name in cookies)


class SameSiteOnlyRoute(APIRoute):
    """A route that refuses the session cookie on a request another site started (see
    the module docstring) with :meth:`refuse_cross_site`, before its dependencies run."""

    async def refuse_cross_site(self, request: Request) -> Response:
        """The answer to a refused request (records what must be recorded); may raise."""
        raise NotImplementedError

    def guarded_cookies(self, request: Request) -> Iterable[str]:
        """The cookies this route must not take from another site's request: the
        session cookie (a route that reads another cookie of the person's names it)."""
        return (request.app.state.services.cookies.session_name,)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        refuse, guarded = self.refuse_cross_site, self.guarded_cookies

        async def handler(request: Request) -> Response:
            if cross_site_with_session(request, guarded(request)):
                return await refuse(request)
            return await original(request)

        return handler


def same_site_only(routes: Iterable[BaseRoute], path: str) -> bool:
    """Whether a browser sent to ``path`` (this service's path, percent-encoded as in a
    URL; a query is ignored) reaches a :class:`SameSiteOnlyRoute` of ``routes`` (an
    app's: included routers are followed, with their prefixes)."""
    target = unquote(path.split("?", 1)[0])
    for context in iter_route_contexts(list(routes)):
        if isinstance(context.original_route, SameSiteOnlyRoute) and context.path:
            regex, _, _ = compile_path(context.path)
            if regex.match(target):
                return True
    return False
