"""The TARA mock's authorization endpoint and login page, as TARA.md specifies them."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from kroonika.tara.mock import Misbehaviour, MockConfig, RegisteredClient, create_app

ISSUER = "https://tara.mock.test"
CLIENT_ID = "rp"
REDIRECT_URI = "https://rp.example/auth/callback"
STATE = "state-0123456789"

pytestmark = pytest.mark.asyncio


@functools.cache
def _keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


class FakeClock:
    """A settable clock."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _config(**overrides: Any) -> MockConfig:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "clients": (
            RegisteredClient(
                client_id=CLIENT_ID,
                secret=SecretStr("rp-secret-0123456789"),
                redirect_uris=(REDIRECT_URI, "https://rp.example/cb?tenant=7"),
                allowed_scopes=frozenset(
                    {"openid", "idcard", "mid", "smartid", "eidas", "eidasonly", "email"}
                ),
            ),
            RegisteredClient(
                client_id="narrow",
                secret=SecretStr("narrow-secret-0123"),
                redirect_uris=("https://narrow.example/cb",),
                allowed_scopes=frozenset({"openid", "smartid"}),
            ),
            RegisteredClient(
                client_id='rp<"&>',
                secret=SecretStr("odd-secret-0123456"),
                redirect_uris=("https://odd.example/cb",),
            ),
        ),
        "keys": _keys(),
    }
    values.update(overrides)
    return MockConfig(**values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@asynccontextmanager
async def _client(config: MockConfig) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest_asyncio.fixture
async def client(clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(_config(clock=clock)) as test_client:
        yield test_client


def _params(**overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid",
        "state": STATE,
        "nonce": "nonce-abc",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def _redirect(response: Any, base: str = REDIRECT_URI) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(base + "?"), location
    query = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in query.values())
    return {k: v[0] for k, v in query.items()}


def _tx(page: str) -> str:
    marker = 'name="tx" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


# --- requests that must never redirect --------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "nobody"},
        {"client_id": None},
        {"client_id": ""},
    ],
)
async def test_unknown_or_missing_client_gets_an_error_page(
    client: httpx.AsyncClient, overrides: dict[str, str | None]
) -> None:
    """A bad client_id shows the mock's own 400 page and never redirects."""
    response = await client.get("/oidc/authorize", params=_params(**overrides))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "client_id" in response.text


@pytest.mark.parametrize(
    "redirect_uri",
    [
        None,
        "https://evil.example/auth/callback",
        REDIRECT_URI + "/",
        REDIRECT_URI.upper(),
        REDIRECT_URI + "?x=1",
        "https://rp.example/cb",
    ],
)
async def test_unregistered_redirect_uri_gets_an_error_page(
    client: httpx.AsyncClient, redirect_uri: str | None
) -> None:
    """A redirect_uri that does not match a registered one exactly is never redirected to."""
    response = await client.get("/oidc/authorize", params=_params(redirect_uri=redirect_uri))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "redirect_uri" in response.text


async def test_redirect_uri_of_another_client_is_refused(client: httpx.AsyncClient) -> None:
    """A redirect_uri registered for a different client does not count."""
    response = await client.get(
        "/oidc/authorize", params=_params(redirect_uri="https://narrow.example/cb")
    )
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_repeated_client_id_gets_an_error_page(client: httpx.AsyncClient) -> None:
    """client_id given twice is refused without a redirect."""
    query = "client_id=rp&client_id=rp&redirect_uri=" + REDIRECT_URI
    response = await client.get("/oidc/authorize?" + query)
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_error_page_is_estonian_by_default_and_english_on_request(
    client: httpx.AsyncClient,
) -> None:
    """The error page follows ui_locales, Estonian when absent."""
    estonian = await client.get("/oidc/authorize", params=_params(client_id="nobody"))
    english = await client.get(
        "/oidc/authorize", params=_params(client_id="nobody", ui_locales="en")
    )
    assert '<html lang="et">' in estonian.text
    assert "Vigane päring" in estonian.text
    assert '<html lang="en">' in english.text
    assert "Invalid request" in english.text


# --- errors that redirect -------------------------------------------------------------------


@pytest.mark.parametrize("response_type", ["token", "id_token", "code id_token", "", None])
async def test_response_type_other_than_code_is_unsupported(
    client: httpx.AsyncClient, response_type: str | None
) -> None:
    """Only response_type=code is accepted; anything else redirects with the error and state."""
    response = await client.get("/oidc/authorize", params=_params(response_type=response_type))
    query = _redirect(response)
    assert query["error"] == "unsupported_response_type"
    assert query["state"] == STATE
    assert query["error_description"]
    assert "code" not in query


async def test_missing_state_is_invalid_state(client: httpx.AsyncClient) -> None:
    """Without state the redirect carries invalid_state and no state."""
    query = _redirect(await client.get("/oidc/authorize", params=_params(state=None)))
    assert query["error"] == "invalid_state"
    assert "state" not in query


@pytest.mark.parametrize("state", ["", "1234567"])
async def test_short_state_is_invalid_state(client: httpx.AsyncClient, state: str) -> None:
    """A state shorter than 8 characters is refused with invalid_state."""
    query = _redirect(await client.get("/oidc/authorize", params=_params(state=state)))
    assert query["error"] == "invalid_state"


async def test_state_of_exactly_eight_characters_is_accepted(client: httpx.AsyncClient) -> None:
    """Eight characters are enough for state."""
    response = await client.get("/oidc/authorize", params=_params(state="12345678"))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("scope", "client_id", "redirect_uri"),
    [
        ("idcard", CLIENT_ID, REDIRECT_URI),
        ("", CLIENT_ID, REDIRECT_URI),
        ("openid profile", CLIENT_ID, REDIRECT_URI),
        ("openid OPENID", CLIENT_ID, REDIRECT_URI),
        ("openid phone", CLIENT_ID, REDIRECT_URI),
        ("openid idcard", "narrow", "https://narrow.example/cb"),
        ("openid eidas:country:ca", CLIENT_ID, REDIRECT_URI),
        ("openid eidasonly eidas:country:CA", CLIENT_ID, REDIRECT_URI),
        ("openid eidasonly eidas:country:cat", CLIENT_ID, REDIRECT_URI),
    ],
)
async def test_bad_scope_is_invalid_scope(
    client: httpx.AsyncClient, scope: str, client_id: str, redirect_uri: str
) -> None:
    """Missing openid, an unknown scope, or one the client may not ask for gives invalid_scope."""
    response = await client.get(
        "/oidc/authorize",
        params=_params(scope=scope, client_id=client_id, redirect_uri=redirect_uri),
    )
    query = _redirect(response, base=redirect_uri)
    assert query["error"] == "invalid_scope"
    assert query["state"] == STATE


async def test_eidas_country_scope_with_eidasonly_is_accepted(client: httpx.AsyncClient) -> None:
    """eidas:country:xx in lower case is accepted together with eidasonly."""
    response = await client.get(
        "/oidc/authorize", params=_params(scope="openid eidasonly eidas:country:ca")
    )
    assert response.status_code == 200
    assert "JAAK-KRISTJAN" not in response.text  # eidasonly: no domestic identities offered


@pytest.mark.parametrize("acr", ["", "medium", "HIGH", "low substantial"])
async def test_unknown_acr_value_is_invalid_request(client: httpx.AsyncClient, acr: str) -> None:
    """acr_values other than low, substantial or high is refused."""
    query = _redirect(await client.get("/oidc/authorize", params=_params(acr_values=acr)))
    assert query["error"] == "invalid_request"


async def test_repeated_parameter_is_invalid_request(client: httpx.AsyncClient) -> None:
    """A parameter given twice redirects with invalid_request."""
    params = [*_params().items(), ("scope", "openid idcard")]
    query = _redirect(await client.get("/oidc/authorize", params=params))
    assert query["error"] == "invalid_request"
    assert "scope" in query["error_description"]


async def test_error_redirect_keeps_the_registered_query(client: httpx.AsyncClient) -> None:
    """A registered redirect_uri with a query gets the error parameters appended with &."""
    response = await client.get(
        "/oidc/authorize",
        params=_params(redirect_uri="https://rp.example/cb?tenant=7", response_type="token"),
    )
    location = response.headers["location"]
    assert location.startswith("https://rp.example/cb?tenant=7&")
    assert parse_qs(urlsplit(location).query)["tenant"] == ["7"]


async def test_post_to_authorize_is_not_allowed(client: httpx.AsyncClient) -> None:
    """The authorization endpoint is GET only."""
    assert (await client.post("/oidc/authorize", data=_params())).status_code == 405


# --- the login page ---------------------------------------------------------------------------


async def test_login_page_is_estonian_by_default(client: httpx.AsyncClient) -> None:
    """The page is in Estonian with the back-to-service-provider button."""
    response = await client.get("/oidc/authorize", params=_params())
    assert response.status_code == 200
    assert '<html lang="et">' in response.text
    assert "Tagasi teenusepakkuja juurde" in response.text
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("ui_locales", "lang", "back"),
    [
        ("en", "en", "Back to service provider"),
        ("fr en et", "en", "Back to service provider"),
        ("ru", "ru", "Вернуться к поставщику услуг"),
        ("fr de", "et", "Tagasi teenusepakkuja juurde"),
    ],
)
async def test_first_supported_ui_locale_wins(
    client: httpx.AsyncClient, ui_locales: str, lang: str, back: str
) -> None:
    """ui_locales picks the first supported language, else Estonian."""
    response = await client.get("/oidc/authorize", params=_params(ui_locales=ui_locales))
    assert f'<html lang="{lang}">' in response.text
    assert back in response.text


async def test_language_link_switches_the_page_language(client: httpx.AsyncClient) -> None:
    """The language link re-renders the same login in English."""
    page = (await client.get("/oidc/authorize", params=_params())).text
    assert f'href="login?tx={_tx(page)}&amp;lang=en"' in page
    english = await client.get("/oidc/login", params={"tx": _tx(page), "lang": "en"})
    assert english.status_code == 200
    assert "Back to service provider" in english.text
    assert _tx(english.text) == _tx(page)


async def test_page_offers_only_identities_of_the_requested_methods(
    client: httpx.AsyncClient,
) -> None:
    """Asking for idcard shows only the ID-card test identity."""
    page = (await client.get("/oidc/authorize", params=_params(scope="openid idcard"))).text
    assert "JAAK-KRISTJAN JÕEORG" in page
    assert "MARY ÄNN" not in page
    assert 'value="idcard"' in page
    assert 'value="mID"' not in page


async def test_page_offers_the_client_methods_when_none_is_asked(client: httpx.AsyncClient) -> None:
    """Without method scopes, all methods the client may use are offered."""
    page = (
        await client.get(
            "/oidc/authorize",
            params=_params(client_id="narrow", redirect_uri="https://narrow.example/cb"),
        )
    ).text
    assert "OK TESTNUMBER" in page
    assert "JAAK-KRISTJAN" not in page


async def test_page_escapes_what_it_shows() -> None:
    """A client id with markup characters is escaped on the page."""
    async with _client(_config()) as test_client:
        page = (
            await test_client.get(
                "/oidc/authorize",
                params=_params(client_id='rp<"&>', redirect_uri="https://odd.example/cb"),
            )
        ).text
    assert 'rp<"&>' not in page
    assert "rp&lt;&#34;&amp;&gt;" in page


async def test_picking_a_test_identity_redirects_with_code_state_and_scope(
    client: httpx.AsyncClient,
) -> None:
    """Choosing a public identity ends in a 302 to redirect_uri with code, state and scope."""
    page = (await client.get("/oidc/authorize", params=_params(scope="openid mid"))).text
    response = await client.post(
        "/oidc/login", data={"tx": _tx(page), "identity": "60001019906", "action": "login"}
    )
    query = _redirect(response)
    assert set(query) == {"code", "state", "scope"}
    assert query["state"] == STATE
    assert query["scope"] == "openid mid"
    assert len(query["code"]) >= 32
    assert response.headers["cache-control"] == "no-store"


async def test_cancel_redirects_with_user_cancel(client: httpx.AsyncClient) -> None:
    """'Tagasi teenusepakkuja juurde' answers error=user_cancel with the state."""
    page = (await client.get("/oidc/authorize", params=_params())).text
    query = _redirect(await client.post("/oidc/login", data={"tx": _tx(page), "action": "cancel"}))
    assert query["error"] == "user_cancel"
    assert query["state"] == STATE
    assert "code" not in query


async def test_typed_code_with_a_bad_check_digit_is_refused_on_the_page(
    client: httpx.AsyncClient,
) -> None:
    """A typed personal code with a wrong check digit shows a clear error and no redirect."""
    page = (await client.get("/oidc/authorize", params=_params(ui_locales="en"))).text
    response = await client.post(
        "/oidc/login",
        data={
            "tx": _tx(page),
            "identity": "custom",
            "personal_code": "38001085719",
            "given_name": "Jaan",
            "family_name": "Tamm",
            "method": "smartid",
            "lang": "en",
        },
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "wrong check digit: expected 8, got 9" in response.text
    assert 'value="38001085719"' in response.text


async def test_typed_identity_logs_in_with_upper_case_names(client: httpx.AsyncClient) -> None:
    """A typed valid code and names (with ’ and hyphens) log in; the form keeps going."""
    page = (await client.get("/oidc/authorize", params=_params())).text
    response = await client.post(
        "/oidc/login",
        data={
            "tx": _tx(page),
            "identity": "custom",
            "personal_code": "38001085718",
            "given_name": "Mari-Liis",
            "family_name": "O’Connež-Šuslik",
            "method": "smartid",
        },
    )
    assert "code" in _redirect(response)


@pytest.mark.parametrize(
    ("given", "family"),
    [("", "Tamm"), ("Jaan", " "), ("<script>", "Tamm"), ("Jaan1", "Tamm"), ("J" * 101, "T")],
)
async def test_typed_names_are_checked(client: httpx.AsyncClient, given: str, family: str) -> None:
    """Empty names, digits or markup in names are refused on the page."""
    page = (await client.get("/oidc/authorize", params=_params())).text
    response = await client.post(
        "/oidc/login",
        data={
            "tx": _tx(page),
            "identity": "custom",
            "personal_code": "38001085718",
            "given_name": given,
            "family_name": family,
            "method": "smartid",
        },
    )
    assert response.status_code == 400
    assert "<script>" not in response.text


async def test_method_outside_the_request_is_refused(client: httpx.AsyncClient) -> None:
    """A typed method that the scopes do not allow is refused."""
    page = (await client.get("/oidc/authorize", params=_params(scope="openid smartid"))).text
    response = await client.post(
        "/oidc/login",
        data={
            "tx": _tx(page),
            "identity": "custom",
            "personal_code": "38001085718",
            "given_name": "Jaan",
            "family_name": "Tamm",
            "method": "idcard",
        },
    )
    assert response.status_code == 400
    assert "ei ole selle päringu jaoks lubatud" in response.text


async def test_identity_below_the_requested_acr_is_refused(client: httpx.AsyncClient) -> None:
    """MARI-LIIS MÄNNIK (acr low) cannot log in when substantial is asked."""
    page = (await client.get("/oidc/authorize", params=_params())).text
    response = await client.post("/oidc/login", data={"tx": _tx(page), "identity": "47101010033"})
    assert response.status_code == 400
    assert "madalam" in response.text


async def test_nothing_chosen_is_refused(client: httpx.AsyncClient) -> None:
    """Submitting without an identity asks to choose one."""
    page = (await client.get("/oidc/authorize", params=_params())).text
    response = await client.post("/oidc/login", data={"tx": _tx(page), "action": "login"})
    assert response.status_code == 400
    assert "Vali testisik" in response.text


async def test_unknown_login_transaction_gets_an_error_page(client: httpx.AsyncClient) -> None:
    """A forged or unknown tx is refused without redirect."""
    response = await client.post("/oidc/login", data={"tx": "forged", "identity": "38001085718"})
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_login_transaction_is_single_use(client: httpx.AsyncClient) -> None:
    """After a completed login, the same page cannot log in again."""
    tx = _tx((await client.get("/oidc/authorize", params=_params())).text)
    first = await client.post("/oidc/login", data={"tx": tx, "identity": "38001085718"})
    second = await client.post("/oidc/login", data={"tx": tx, "identity": "38001085718"})
    assert first.status_code == 302
    assert second.status_code == 400


async def test_login_transaction_expires(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """A login page older than login_ttl_seconds no longer logs in."""
    tx = _tx((await client.get("/oidc/authorize", params=_params())).text)
    clock.now += 1801
    response = await client.post("/oidc/login", data={"tx": tx, "identity": "38001085718"})
    assert response.status_code == 400
    assert "aegunud" in response.text


# --- autologin --------------------------------------------------------------------------------


async def test_autologin_with_a_test_identity_skips_the_page(client: httpx.AsyncClient) -> None:
    """autologin=<personal code> redirects straight back with a code."""
    query = _redirect(await client.get("/oidc/authorize", params=_params(autologin="38001085718")))
    assert set(query) == {"code", "state", "scope"}


async def test_autologin_still_validates_the_request(client: httpx.AsyncClient) -> None:
    """autologin does not bypass the request checks."""
    response = await client.get(
        "/oidc/authorize", params=_params(autologin="38001085718", state="x")
    )
    assert _redirect(response)["error"] == "invalid_state"


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"autologin": "38001085719"}, "wrong check digit"),
        ({"autologin": "abc"}, "11 digits"),
        ({"autologin": "38001085718", "scope": "openid smartid", "autologin_method": "idcard"}, ""),
        ({"autologin": "38001085718", "scope": "openid idcard", "autologin_method": "xx"}, ""),
        ({"autologin": "47101010033"}, "(low)"),
        ({"autologin": "38001085718", "autologin_acr": "medium"}, ""),
        ({"autologin": "38001085711", "autologin_given_name": "Jaan"}, ""),
    ],
)
async def test_bad_autologin_gets_an_error_page(
    client: httpx.AsyncClient, params: dict[str, str], reason: str
) -> None:
    """An autologin that cannot complete shows an error page with the reason, no redirect."""
    response = await client.get("/oidc/authorize", params=_params(ui_locales="en", **params))
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert "Automatic login failed" in response.text
    assert reason in response.text


async def test_autologin_of_a_low_identity_works_when_low_is_asked(
    client: httpx.AsyncClient,
) -> None:
    """MARI-LIIS MÄNNIK logs in when acr_values=low."""
    response = await client.get(
        "/oidc/authorize", params=_params(autologin="47101010033", acr_values="low")
    )
    assert "code" in _redirect(response)


async def test_autologin_cancel_answers_user_cancel(client: httpx.AsyncClient) -> None:
    """autologin=cancel behaves as the back button."""
    query = _redirect(await client.get("/oidc/authorize", params=_params(autologin="cancel")))
    assert query == {
        "error": "user_cancel",
        "error_description": query["error_description"],
        "state": STATE,
    }


async def test_user_cancel_switch_cancels_every_login() -> None:
    """With the user_cancel switch on, a completed login answers user_cancel."""
    config = _config(misbehaviour=Misbehaviour(user_cancel=True))
    async with _client(config) as test_client:
        response = await test_client.get("/oidc/authorize", params=_params(autologin="38001085718"))
    assert _redirect(response)["error"] == "user_cancel"


async def test_autologin_can_be_switched_off() -> None:
    """allow_autologin=False refuses the autologin parameter."""
    async with _client(_config(allow_autologin=False)) as test_client:
        response = await test_client.get("/oidc/authorize", params=_params(autologin="38001085718"))
    assert response.status_code == 400
    assert "location" not in response.headers


# --- bounds on what the authorization request may carry --------------------------------------


@pytest.mark.parametrize("length", [8, 43, 256])
async def test_state_up_to_256_characters_is_accepted(
    client: httpx.AsyncClient, length: int
) -> None:
    """A state of 8 to 256 characters is taken (Kroonika sends 43; its callback takes 256)."""
    state = ("s" * length)[:length]
    response = await client.get(
        "/oidc/authorize", params=_params(state=state, autologin="38001085718")
    )
    assert _redirect(response)["state"] == state


async def test_state_over_256_characters_is_invalid_state_and_not_echoed(
    client: httpx.AsyncClient,
) -> None:
    """A state of 257 characters is invalid_state, and the redirect does not carry it back."""
    long_state = "s" * 257
    response = await client.get("/oidc/authorize", params=_params(state=long_state))
    query = _redirect(response)
    assert query["error"] == "invalid_state"
    assert "256" in query["error_description"]
    assert "state" not in query
    assert long_state not in response.headers["location"]


async def test_an_over_long_state_is_not_echoed_by_earlier_refusals(
    client: httpx.AsyncClient,
) -> None:
    """A refusal found before the state check (response_type) does not echo a long state."""
    params = _params(state="s" * 5000, response_type="token")
    query = _redirect(await client.get("/oidc/authorize", params=params))
    assert query["error"] == "unsupported_response_type"
    assert "state" not in query


async def test_nonce_up_to_256_characters_reaches_the_login(client: httpx.AsyncClient) -> None:
    """A nonce of 256 characters is accepted."""
    response = await client.get(
        "/oidc/authorize", params=_params(nonce="n" * 256, autologin="38001085718")
    )
    assert "code" in _redirect(response)


async def test_nonce_over_256_characters_is_invalid_request(client: httpx.AsyncClient) -> None:
    """A nonce of 257 characters redirects with invalid_request and the state."""
    response = await client.get("/oidc/authorize", params=_params(nonce="n" * 257))
    query = _redirect(response)
    assert query["error"] == "invalid_request"
    assert "nonce" in query["error_description"]
    assert "256" in query["error_description"]
    assert query["state"] == STATE
    assert "n" * 257 not in response.headers["location"]


async def test_ui_locales_over_64_characters_is_invalid_request(
    client: httpx.AsyncClient,
) -> None:
    """ui_locales of 65 characters is refused; 64 are read as usual."""
    ok = await client.get("/oidc/authorize", params=_params(ui_locales="en " + "x" * 61))
    assert ok.status_code == 200
    assert '<html lang="en">' in ok.text
    query = _redirect(
        await client.get("/oidc/authorize", params=_params(ui_locales="en " + "x" * 62))
    )
    assert query["error"] == "invalid_request"
    assert "ui_locales" in query["error_description"]


async def test_an_over_long_ui_locales_does_not_pick_the_error_page_language(
    client: httpx.AsyncClient,
) -> None:
    """Before the client is known, an over-long ui_locales is not read: the page is Estonian."""
    params = _params(client_id="nobody", ui_locales="x" * 100 + " en")
    response = await client.get("/oidc/authorize", params=params)
    assert response.status_code == 400
    assert '<html lang="et">' in response.text


async def test_scope_over_1024_characters_is_invalid_scope(client: httpx.AsyncClient) -> None:
    """A scope of more than 1,024 characters (the longest sensible one is under 100) is
    invalid_scope, whatever it holds."""
    scope = "openid" + " idcard" * 200
    query = _redirect(await client.get("/oidc/authorize", params=_params(scope=scope)))
    assert query["error"] == "invalid_scope"
    assert "1024" in query["error_description"]
    assert query["state"] == STATE


# --- bodies the login form refuses ------------------------------------------------------------


async def _login_post(
    client: httpx.AsyncClient, content: bytes, content_type: str | None
) -> httpx.Response:
    headers = {} if content_type is None else {"content-type": content_type}
    return await client.post("/oidc/login", content=content, headers=headers)


def _assert_mock_page(response: httpx.Response, status: int, message: str) -> None:
    """The mock's own HTML error page (its security headers, no redirect), saying ``message``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert "location" not in response.headers
    assert message in response.text


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",  # no boundary: was Starlette's plain-text 400
        "multipart/form-data; boundary=xyz",
        "application/json",
        "text/plain",
        None,
    ],
)
async def test_a_login_form_of_another_content_type_is_the_mock_page_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    """Only application/x-www-form-urlencoded (what the page sends) is read; anything else is
    the mock's HTML page, 415, and the login stays open."""
    tx = _tx((await client.get("/oidc/authorize", params=_params())).text)
    body = f"tx={tx}&identity=38001085718".encode()
    response = await _login_post(client, body, content_type)
    _assert_mock_page(response, 415, "application/x-www-form-urlencoded")
    form = "application/x-www-form-urlencoded"
    assert (await _login_post(client, body, form)).status_code == 302


@pytest.mark.parametrize(
    "body",
    [
        b"identity=custom&personal_code=38001085718&family_name=X&given_name=\xff\xfe",
        b"identity=custom&personal_code=38001085718&family_name=X&given_name=%ff%fe",
        b"identity=custom&personal_code=38001085718&family_name=X&given_name=%C3",
    ],
    ids=["raw", "percent-encoded", "truncated"],
)
async def test_a_login_form_that_is_not_utf8_is_refused(
    client: httpx.AsyncClient, body: bytes
) -> None:
    """Bytes that are not UTF-8 are refused (400, the mock's page) instead of being read as
    Latin-1 (a raw 0xFF 0xFE logged in as the given name 'ŸÞ') or replaced."""
    tx = _tx((await client.get("/oidc/authorize", params=_params())).text)
    response = await _login_post(
        client, f"tx={tx}&".encode() + body, "application/x-www-form-urlencoded"
    )
    _assert_mock_page(response, 400, "UTF-8")


async def test_raw_utf8_in_a_login_form_is_read_as_utf8(client: httpx.AsyncClient) -> None:
    """Unencoded UTF-8 (as curl -d sends it) is read as UTF-8, not Latin-1."""
    tx = _tx((await client.get("/oidc/authorize", params=_params(scope="openid idcard"))).text)
    body = (
        f"tx={tx}&identity=custom&personal_code=38001085718&given_name=Jõe&family_name=Ülo"
    ).encode()
    response = await _login_post(client, body, "application/x-www-form-urlencoded")
    assert "code" in _redirect(response)


async def test_a_huge_login_form_is_413_before_it_is_read(client: httpx.AsyncClient) -> None:
    """A body over 16 KiB is the mock's page, 413, whether its length is declared or not."""
    tx = _tx((await client.get("/oidc/authorize", params=_params())).text)
    body = f"tx={tx}&given_name=".encode() + b"A" * (16 * 1024)
    form = "application/x-www-form-urlencoded"
    _assert_mock_page(await _login_post(client, body, form), 413, "16384")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for _ in range(64):
            yield b"A" * 1024

    response = await client.post("/oidc/login", content=chunks(), headers={"content-type": form})
    _assert_mock_page(response, 413, "16384")


async def test_a_login_form_with_too_many_fields_is_refused(client: httpx.AsyncClient) -> None:
    """More than 32 fields is the mock's page, 400."""
    tx = _tx((await client.get("/oidc/authorize", params=_params())).text)
    body = f"tx={tx}&" + "&".join(f"f{i}=x" for i in range(40))
    response = await _login_post(client, body.encode(), "application/x-www-form-urlencoded")
    _assert_mock_page(response, 400, "32")


async def test_a_flooder_cycling_through_its_ipv6_64_is_one_holder() -> None:
    """Every address of a /64 counts as one client for the pending logins' fair share:
    a flood from 60 addresses of one /64 pushes out its own logins, not another's."""
    app = create_app(_config(max_pending_logins=10))

    async def open_login(host: str) -> str:
        transport = httpx.ASGITransport(app=app, client=(host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return _tx((await c.get("/oidc/authorize", params=_params())).text)

    mine = await open_login("2001:db8:1::1")
    flood = [await open_login(f"2001:db8:2::{i:x}") for i in range(60)]
    transport = httpx.ASGITransport(app=app, client=("2001:db8:1::1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for tx, status in ((mine, 302), (flood[0], 400), (flood[-1], 302)):
            response = await client.post("/oidc/login", data={"tx": tx, "identity": "38001085718"})
            assert response.status_code == status, response.text


def _action(page: str) -> str:
    """Where the login page's form posts to, relative to /oidc/."""
    marker = '<form method="post" action="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)].replace("&amp;", "&")


@pytest.mark.parametrize(
    ("ui_locales", "switch_to", "lang", "message"),
    [
        ("en", None, "en", "Invalid request: the login form is larger than 16384 bytes."),
        ("ru ee", None, "ru", "Неверный запрос: форма входа больше 16384 байт."),
        ("et", "en", "en", "Invalid request: the login form is larger than 16384 bytes."),
        (None, None, "et", "Vigane päring: sisselogimisvorm on suurem kui 16384 baiti."),
    ],
    ids=["ui_locales-en", "ui_locales-ru", "switched-to-en", "default-et"],
)
async def test_a_refused_login_form_is_answered_in_the_pages_language(
    client: httpx.AsyncClient,
    ui_locales: str | None,
    switch_to: str | None,
    lang: str,
    message: str,
) -> None:
    """A body the form cannot read is refused in the language the login page was shown
    in (from ui_locales, or the language links), which its form posts along in the URL."""
    page = (await client.get("/oidc/authorize", params=_params(ui_locales=ui_locales))).text
    if switch_to is not None:
        page = (await client.get("/oidc/login", params={"tx": _tx(page), "lang": switch_to})).text
    body = f"tx={_tx(page)}&given_name=".encode() + b"A" * (16 * 1024)
    response = await client.post(
        "/oidc/" + _action(page),
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    _assert_mock_page(response, 413, message)
    assert f'<html lang="{lang}">' in response.text


@pytest.mark.parametrize("query", ["", "?lang=xx", "?lang=" + "en" * 40])
async def test_a_refused_login_form_without_a_known_language_is_estonian(
    client: httpx.AsyncClient, query: str
) -> None:
    """Posted without a language the mock speaks, a refused form is Estonian, TARA's
    default."""
    response = await client.post(
        "/oidc/login" + query, content=b"tx=x", headers={"content-type": "text/plain"}
    )
    _assert_mock_page(response, 415, "Vigane päring: sisselogimisvorm saadetakse kujul")
    assert '<html lang="et">' in response.text
