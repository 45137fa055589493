"""HTML pages of the mock: the login page and the error page, in Estonian, English or Russian.

Jinja2 with autoescaping on for everything; every value that reaches a page is data.
"""

from __future__ import annotations

from typing import Any

import jinja2
from starlette.responses import HTMLResponse

LOCALES = ("et", "en", "ru")
DEFAULT_LOCALE = "et"

TEXTS: dict[str, dict[str, str]] = {
    "et": {
        "title": "TARA mock — autentimine",
        "error_title": "Viga",
        "requests": "Teenusepakkuja {client} soovib sinu isikut tuvastada.",
        "requested_acr": "Nõutud tagatistase",
        "pick": "Vali testisik",
        "or_type": "Või sisesta isikukood ja nimed",
        "custom": "Sisestatud isik",
        "code": "Isikukood",
        "given_name": "Eesnimi",
        "family_name": "Perekonnanimi",
        "method": "Autentimisvahend",
        "acr": "Tagatistase",
        "continue": "Jätka",
        "cancel": "Tagasi teenusepakkuja juurde",
        "idcard": "ID-kaart",
        "mID": "Mobiil-ID",
        "smartid": "Smart-ID",
        "eidas": "Piiriülene (eIDAS)",
        "bad_code": "Isikukood ei ole korrektne: {reason}",
        "names_required": "Sisesta eesnimi ja perekonnanimi.",
        "bad_name": "Nimes võivad olla ainult tähed, tühikud, sidekriipsud ja ülakomad.",
        "method_not_allowed": "See autentimisvahend ei ole selle päringu jaoks lubatud.",
        "acr_too_low": "Isiku tagatistase ({acr}) on nõutust ({requested}) madalam.",
        "choose": "Vali testisik või sisesta isikukood.",
        "unknown_identity": "Tundmatu testisik.",
        "login_expired": "Sisselogimise seanss on aegunud või tundmatu. Alusta uuesti.",
        "unknown_client": "Vigane päring: tundmatu või puuduv client_id.",
        "bad_redirect_uri": "Vigane päring: redirect_uri ei ole sellele kliendile registreeritud.",
        "duplicate_parameter": "Vigane päring: parameeter {name} on mitu korda.",
        "autologin_disabled": "Automaatne sisselogimine on välja lülitatud.",
        "autologin_failed": "Automaatne sisselogimine ebaõnnestus: {reason}",
        "form_content_type": "Vigane päring: sisselogimisvorm saadetakse kujul "
        "application/x-www-form-urlencoded.",
        "form_too_large": "Vigane päring: sisselogimisvorm on suurem kui {limit} baiti.",
        "form_not_utf8": "Vigane päring: sisselogimisvorm ei ole UTF-8.",
        "form_too_many_fields": "Vigane päring: sisselogimisvormis on üle {fields} välja.",
    },
    "en": {
        "title": "TARA mock — authentication",
        "error_title": "Error",
        "requests": "The service provider {client} requests to authenticate you.",
        "requested_acr": "Requested level of assurance",
        "pick": "Choose a test identity",
        "or_type": "Or enter a personal code and names",
        "custom": "Entered person",
        "code": "Personal code",
        "given_name": "Given name",
        "family_name": "Family name",
        "method": "Authentication method",
        "acr": "Level of assurance",
        "continue": "Continue",
        "cancel": "Back to service provider",
        "idcard": "ID card",
        "mID": "Mobile-ID",
        "smartid": "Smart-ID",
        "eidas": "Cross-border (eIDAS)",
        "bad_code": "The personal code is not valid: {reason}",
        "names_required": "Enter the given name and the family name.",
        "bad_name": "Names may contain only letters, spaces, hyphens and apostrophes.",
        "method_not_allowed": "This authentication method is not allowed for this request.",
        "acr_too_low": "The identity's level of assurance ({acr}) is below the requested "
        "one ({requested}).",
        "choose": "Choose a test identity or enter a personal code.",
        "unknown_identity": "Unknown test identity.",
        "login_expired": "The login session has expired or is unknown. Start again.",
        "unknown_client": "Invalid request: unknown or missing client_id.",
        "bad_redirect_uri": "Invalid request: redirect_uri is not registered for this client.",
        "duplicate_parameter": "Invalid request: parameter {name} occurs more than once.",
        "autologin_disabled": "Automatic login is switched off.",
        "autologin_failed": "Automatic login failed: {reason}",
        "form_content_type": "Invalid request: the login form is sent as "
        "application/x-www-form-urlencoded.",
        "form_too_large": "Invalid request: the login form is larger than {limit} bytes.",
        "form_not_utf8": "Invalid request: the login form is not UTF-8.",
        "form_too_many_fields": "Invalid request: the login form has more than {fields} fields.",
    },
    "ru": {
        "title": "TARA mock — аутентификация",
        "error_title": "Ошибка",
        "requests": "Поставщик услуг {client} запрашивает вашу аутентификацию.",
        "requested_acr": "Требуемый уровень доверия",
        "pick": "Выберите тестовое лицо",
        "or_type": "Или введите личный код и имена",
        "custom": "Введённое лицо",
        "code": "Личный код",
        "given_name": "Имя",
        "family_name": "Фамилия",
        "method": "Средство аутентификации",
        "acr": "Уровень доверия",
        "continue": "Продолжить",
        "cancel": "Вернуться к поставщику услуг",
        "idcard": "ID-карта",
        "mID": "Mobiil-ID",
        "smartid": "Smart-ID",
        "eidas": "Трансграничная (eIDAS)",
        "bad_code": "Личный код неверен: {reason}",
        "names_required": "Введите имя и фамилию.",
        "bad_name": "Имена могут содержать только буквы, пробелы, дефисы и апострофы.",
        "method_not_allowed": "Это средство аутентификации не разрешено для этого запроса.",
        "acr_too_low": "Уровень доверия лица ({acr}) ниже требуемого ({requested}).",
        "choose": "Выберите тестовое лицо или введите личный код.",
        "unknown_identity": "Неизвестное тестовое лицо.",
        "login_expired": "Сеанс входа истёк или неизвестен. Начните заново.",
        "unknown_client": "Неверный запрос: неизвестный или отсутствующий client_id.",
        "bad_redirect_uri": "Неверный запрос: redirect_uri не зарегистрирован для этого клиента.",
        "duplicate_parameter": "Неверный запрос: параметр {name} повторяется.",
        "autologin_disabled": "Автоматический вход отключён.",
        "autologin_failed": "Автоматический вход не удался: {reason}",
        "form_content_type": "Неверный запрос: форма входа отправляется как "
        "application/x-www-form-urlencoded.",
        "form_too_large": "Неверный запрос: форма входа больше {limit} байт.",
        "form_not_utf8": "Неверный запрос: форма входа не в UTF-8.",
        "form_too_many_fields": "Неверный запрос: в форме входа больше {fields} полей.",
    },
}

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def pick_locale(ui_locales: str | None) -> str:
    """The first supported locale in a space-separated ``ui_locales``, else Estonian."""
    for tag in (ui_locales or "").split():
        primary = tag.split("-")[0].lower()
        if primary in LOCALES:
            return primary
    return DEFAULT_LOCALE


def text(locale: str, key: str, **values: str) -> str:
    """A translated message with ``values`` filled in (escaping happens in the template)."""
    return TEXTS.get(locale, TEXTS[DEFAULT_LOCALE])[key].format(**values)


class Pages:
    """Renders the mock's HTML pages."""

    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("kroonika.tara.mock", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        # Load now, so a broken template fails at startup rather than on the first request.
        self._login = self._env.get_template("login.html")
        self._error = self._env.get_template("error.html")

    def login(self, locale: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        """The login page."""
        body = self._login.render(locale=locale, t=TEXTS[locale], locales=LOCALES, **context)
        return HTMLResponse(body, status_code=status_code, headers=_SECURITY_HEADERS)

    def error(self, locale: str, message: str, status_code: int = 400) -> HTMLResponse:
        """TARA's own error page: shown instead of redirecting to an untrusted redirect URI."""
        body = self._error.render(locale=locale, t=TEXTS[locale], message=message)
        return HTMLResponse(body, status_code=status_code, headers=_SECURITY_HEADERS)
