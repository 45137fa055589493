"""The web service: ``create_app(settings)`` builds the FastAPI app with everything on
``app.state.services`` (:class:`Services`).

Extension points for other packages (e.g. the tokens service):

- ``app.include_router(router)`` for their routes; ``ServicesDep`` gives handlers the services.
- ``app.state.services.post_login``: :class:`PostLoginHook` callables run after a session is
  created in ``/auth/callback`` (mint a session token, set a cookie on the redirect).
- ``app.state.services.on_sessions_ended``: :class:`LogoutHook` callables run after logout,
  end-one and end-all (revoke what belonged to those sessions).
"""

from kroonika.web._app import create_app
from kroonika.web._auth import current_session
from kroonika.web._context import RequestInfo, TrustedProxies, current_request
from kroonika.web._services import (
    CookieConfig,
    LogoutHook,
    PostLoginHook,
    Services,
    ServicesDep,
    get_services,
    request_context,
)

__all__ = [
    "CookieConfig",
    "LogoutHook",
    "PostLoginHook",
    "RequestInfo",
    "Services",
    "ServicesDep",
    "TrustedProxies",
    "create_app",
    "current_request",
    "current_session",
    "get_services",
    "request_context",
]
