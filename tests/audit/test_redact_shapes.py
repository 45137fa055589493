"""redact: the secret shapes it finds, the ordinary values it leaves, and its quick pre-check."""

from __future__ import annotations

import base64
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kroonika.audit import Actor, ActorType, Correlation, Counters, Source, Target, events
from kroonika.audit.processors.redact import (
    _MAYBE_SECRET,
    _MIN_LEN,
    _SECRET_MIN,
    _SECRET_SHAPES,
    Redact,
    ascii_digits,
)
from kroonika.audit.processors.validate import Validate

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJFRTM4MDAxMDg1NzE4In0.c2lnbmF0dXJlLWJ5dGVz"
TOKEN = "Zx8Kq2LmN4pR7tVw9yB3cD5fG6hJ1kM0nQ"  # secrets.token_urlsafe-shaped
# Standard base64 in which "+" and "/" cut every URL-safe run short of 32 characters.
B64_KEY = "Q2xpZW50U2VjcmV0/Zx8Kq2LmN4pR7t+Vw9yB3cD5fG6hJ1kM0nQ="
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


PERSONAL_CODES = [
    ("38001085718", "[REDACTED:personal_code]"),
    ("ee38001085718", "[REDACTED:personal_code]"),
    ("EE38001085718", "[REDACTED:personal_code]"),
    ("isikukood38001085718", "isikukood[REDACTED:personal_code]"),
    ("EE38001085718_x", "[REDACTED:personal_code]_x"),
    ("user 60001019906 failed", "user [REDACTED:personal_code] failed"),
    ("/users/49403136526/profile", "/users/[REDACTED:personal_code]/profile"),
    ("subject=lv38001085718", "subject=[REDACTED:personal_code]"),
]


AFTER_VALIDATE = [
    (f"Bearer\ufffd{TOKEN[:20]}", "[REDACTED:authorization]", "authorization"),
    ("Authorization: basic\ufffd\ufffdQWxhZGRpbjpvcGVu",
     "Authorization: [REDACTED:authorization]", "authorization"),
    ("password\ufffd=\ufffdhunter22", "[REDACTED:assignment]", "assignment"),
    ("-----BEGIN\ufffdPRIVATE\ufffdKEY-----\ufffdMC4CAQ\ufffd-----END PRIVATE KEY-----",
     "[REDACTED:private_key]", "private_key"),
]  # fmt: skip


ASSIGNMENTS = [
    ("DB_PASSWORD=xK9mP2qR7t", "DB_[REDACTED:assignment]"),
    ("db_password=hunter22", "db_[REDACTED:assignment]"),
    ("my_secret=abcdefgh", "my_[REDACTED:assignment]"),
    ("SECRET_KEY=django-insecure-abc", "[REDACTED:assignment]"),
    ('{"password":"hunter22"}', '{"[REDACTED:assignment]"}'),
    ('{"client_secret": "s3cr3t value"}', '{"[REDACTED:assignment]"}'),
    ('{"pwd": "ab\\"cdef"}', '{"[REDACTED:assignment]"}'),
    ('{\\"password\\":\\"hunter 22\\"}', '{\\"[REDACTED:assignment]\\"}'),
    ("password='hunter 22'", "[REDACTED:assignment]'"),
    ('env DB_PASSWORD=hunter22" next', 'env DB_[REDACTED:assignment]" next'),
    ("api-key=abcd1234", "[REDACTED:assignment]"),
    ("api_key=abcd1234", "[REDACTED:assignment]"),
    ("X-Api-Key: abcd1234ef", "X-[REDACTED:assignment]"),
    ("pwd=hunter22", "[REDACTED:assignment]"),
    ("private_key=MC4CAQAwBQ", "[REDACTED:assignment]"),
    ("credentials: user:pass", "[REDACTED:assignment]"),
    ("GITHUB_TOKEN=ghp_abcdef", "GITHUB_[REDACTED:assignment]"),
    ("Set-Cookie: sid=abcdefgh; Path=/", "Set-[REDACTED:assignment]; Path=/"),
    ("callback?state=xyzw1234&code=SplxlOBe",
     "callback?[REDACTED:assignment]&[REDACTED:assignment]"),
]  # fmt: skip


URL_CREDENTIALS = [
    ("postgres://app:s3cr3t@db.example:5432/audit",
     "postgres://[REDACTED:url_credentials]@db.example:5432/audit"),
    ("redis://:pw123456@cache:6379/0", "redis://[REDACTED:url_credentials]@cache:6379/0"),
    ("fetch https://u:p@ss@host/x failed",
     "fetch https://[REDACTED:url_credentials]@host/x failed"),
]  # fmt: skip


BASE64_SECRETS = [
    (B64_KEY, "[REDACTED:secret]"),
    (f"key {B64_KEY} rotated", "key [REDACTED:secret] rotated"),
    (f"/oauth/authorize/{TOKEN}", "/oauth/authorize/[REDACTED:secret]"),
    (f"/sessions/{TOKEN[:22]}/revoke", "/sessions/[REDACTED:secret]/revoke"),
]


def redacted(text: str) -> tuple[str, dict[str, int]]:
    """``text`` as the reason of an event after redact, and the counters it moved."""
    counters = Counters()
    event = Redact(counters)(events.auth_login(reason=text))
    assert event.reason is not None
    return event.reason, counters.snapshot()


@pytest.mark.parametrize(("text", "expected"), PERSONAL_CODES)
def test_redact_finds_a_personal_code_in_any_text(text: str, expected: str) -> None:
    """A personal code goes whatever surrounds it, with its country prefix in either case."""
    assert redacted(text) == (expected, {"redact.personal_code": 1})


@pytest.mark.parametrize(
    "text",
    [
        "138001085718",  # twelve digits: part of a longer number
        "380010857181",
        "38013085718",  # no month 13
        "38001325718",  # no day 32
        "78001085718",  # no century digit 7
        "1736332496789",  # a millisecond timestamp
    ],
)
def test_redact_keeps_numbers_that_are_not_personal_codes(text: str) -> None:
    """Longer numbers and eleven digits that are no date are not personal codes."""
    assert redacted(text) == (text, {})


def test_redact_scrubs_flow_id_session_ref_and_target_type() -> None:
    """Every string an application fills in the correlation and the target is scanned."""
    counters = Counters()
    event = Redact(counters)(
        events.auth_login(
            target=Target(f"session {JWT}", "ee38001085718"),
            correlation=Correlation(
                request_id=f"Bearer {TOKEN}",
                trace_id=f"Bearer {TOKEN}",
                flow_id=f"flow {JWT}",
                session_ref="ee38001085718",
            ),
        )
    )
    assert event.target == Target("session [REDACTED:jwt]", "[REDACTED:personal_code]")
    assert event.correlation == Correlation(
        request_id="[REDACTED:authorization]",
        trace_id="[REDACTED:authorization]",
        flow_id="flow [REDACTED:jwt]",
        session_ref="[REDACTED:personal_code]",
    )
    assert counters.snapshot() == {
        "redact.jwt": 2,
        "redact.personal_code": 2,
        "redact.authorization": 2,
    }


@pytest.mark.parametrize(("text", "expected", "kind"), AFTER_VALIDATE)
def test_redact_treats_the_replacement_character_as_whitespace(
    text: str, expected: str, kind: str
) -> None:
    """validate turns TAB and LF into U+FFFD; the shapes still match after it."""
    assert redacted(text) == (expected, {f"redact.{kind}": 1})


def test_redact_finds_a_bearer_token_written_with_a_tab_after_validate() -> None:
    """A TAB between "Bearer" and the token, through validate and then redact."""
    counters = Counters()
    event = events.auth_login(reason=f"Authorization: Bearer\t{TOKEN[:20]}")
    event = Redact(counters)(Validate(strict=False, counters=counters)(event))
    assert event.reason == "Authorization: [REDACTED:authorization]"
    assert counters.get("redact.authorization") == 1


@pytest.mark.parametrize(("text", "expected"), ASSIGNMENTS)
def test_redact_finds_assignments_of_secrets(text: str, expected: str) -> None:
    """name=value, name: value and JSON "name": "value" for every secret-like name."""
    out, counts = redacted(text)
    assert out == expected
    assert counts == {"redact.assignment": expected.count("[REDACTED:assignment]")}


@pytest.mark.parametrize(("text", "expected"), URL_CREDENTIALS)
def test_redact_finds_credentials_in_a_url(text: str, expected: str) -> None:
    """scheme://user:password@host keeps its scheme and host."""
    assert redacted(text) == (expected, {"redact.url_credentials": 1})


@pytest.mark.parametrize(("text", "expected"), BASE64_SECRETS)
def test_redact_finds_random_secrets_in_standard_base64(text: str, expected: str) -> None:
    """ "+" and "/" do not cut a random secret into pieces too short to be found."""
    assert redacted(text) == (expected, {"redact.secret": 1})


def test_redact_finds_every_random_base64_key() -> None:
    """Of 500 random 32-byte keys in standard base64 with "+" or "/", every one that
    mixes upper case, lower case and digits (the rule for bare secrets) is gone: not
    even eight characters of it remain."""
    rng = random.Random(20250108)
    keys = [base64.b64encode(rng.randbytes(32)).decode() for _ in range(500)]
    mixed = [k for k in keys if re.search(r"\d", k) and re.search("[+/]", k)]
    assert len(mixed) > 300
    for key in mixed:
        out, counts = redacted(f"key {key} rotated")
        assert counts == {"redact.secret": 1}, key
        assert not any(key[i : i + 8] in out for i in range(len(key) - 7)), out


@pytest.mark.parametrize(
    "text",
    [
        "0192f3c1-7d2e-7abc-8def-0123456789ab",
        "0192F3C1-7D2E-7ABC-8DEF-0123456789AB",
        SHA256,
        SHA256.upper(),
        f"sha256:{SHA256}",
        "e3b0c44298fc1c149afbf4c8996fb924a38001085718b934ca495991b7852b855",  # 11 digits inside
        "jti=58b580ffb0d63103156024db",  # an object id with eleven date-shaped digits
        "traceparent 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
        "/admin/tokens/bulk/revoke",
        "/api/v1/Users/12345/Documents/abc",
        "/Users/JaanTamm/Projects2024/Kroonika",
        "q=The+quick+brown+fox+jumps+over+the+lazy+dog+2024",
        "barcode=12345",
        "zipcode: 12345",
        "error_code=invalid_client",
        "postal_code=10115",
        "id_token.nonce_mismatch",
        "token_type=Bearer",
        "2025-01-08T12:34:56.789+02:00",
        "2025-01-08T10:34:56Z",
        "1736332496789",
        "https://tara.ria.ee:443/oidc/authorize",
        "ssh://git@github.com/kroonika",
        "req-00000000ab",
    ],
)
def test_redact_keeps_ordinary_values(text: str) -> None:
    """Digests, UUIDs, user agents, paths, timestamps and ordinary names stay as they are."""
    assert redacted(text) == (text, {})


def test_redact_never_caches_a_value_with_a_secret() -> None:
    """Only values the full pattern finds nothing in are remembered."""
    redact = Redact(Counters())
    for text in ("isikukood38001085718", f"Bearer\ufffd{TOKEN}", B64_KEY, f"/x/{SHA256}"):
        redact.scrub(text)
        redact.scrub(text)
        assert text not in redact._clean
    redact.scrub("a reason code that is clean")
    assert "a reason code that is clean" in redact._clean


_NAMES = st.sampled_from(
    ["password", "passwd", "pwd", "secret", "client_secret", "token", "access_token", "api_key",
     "api-key", "apikey", "private_key", "credentials", "cookie", "code", "state", "sid",
     "session", "nonce", "barcode", "error_code"]
)  # fmt: skip
_CASED = _NAMES.flatmap(lambda n: st.sampled_from([n, n.upper(), n.title()]))
_NEW_SHAPES = st.one_of(
    st.tuples(
        st.sampled_from(["", "DB_", "x-", "my_", '"', '\\"', "{'", "a"]),
        _CASED,
        st.sampled_from(["", '"', "'", '\\"']),
        st.sampled_from(["=", ":", " = ", ": ", "\ufffd=\ufffd"]),
        st.sampled_from(["", '"', "'", '\\"']),
        st.text("abcXYZ019 \"'\\&;,\ufffd", min_size=1, max_size=10),
    ).map("".join),
    st.tuples(
        st.sampled_from(["bearer", "Basic", "BEARER"]),
        st.sampled_from([" ", "\ufffd", "\t", "\ufffd\ufffd"]),
        st.text("AbC09+/=-._~", min_size=6, max_size=12),
    ).map("".join),
    st.tuples(
        st.sampled_from(["https://", "redis://", "://"]),
        st.text("uU1:", max_size=4),
        st.text("pP9@:", min_size=1, max_size=6),
        st.sampled_from(["@h", "@", "/x@h"]),
    ).map("".join),
    st.tuples(
        st.sampled_from(["", "ee", "EE", "lv", "isikukood", "_", "1"]),
        st.sampled_from(["38001085718", "60001019906", "49403136526"]),
        st.sampled_from(["", "_x", "1", "a"]),
    ).map("".join),
    st.text("AbCdEf0123+/=_-", min_size=8, max_size=31),
)


@given(
    st.tuples(st.text(max_size=10), _NEW_SHAPES, st.text(max_size=10)).map("".join),
)
@settings(max_examples=600, deadline=None)
def test_the_quick_pre_check_never_lets_a_new_shape_past(text: str) -> None:
    """For names with prefixes and quotes, U+FFFD as whitespace, URL credentials,
    personal codes in any text and base64: whatever the full pattern would find, the
    pre-check does not skip, and scrub gives what the full scan gives."""
    digits = ascii_digits(text)  # as scrub searches it: every decimal digit as ASCII
    full = Redact(Counters())._redact(text, _SECRET_SHAPES.search(digits), digits)
    if full != text:
        assert len(text) >= _SECRET_MIN or _MAYBE_SECRET.search(text) is not None
    assert Redact(Counters()).scrub(text) == full or len(text) < _MIN_LEN


def test_a_request_id_still_skips_the_full_pattern() -> None:
    """The 14-character request id of every event finds no sign for the full pattern."""
    assert _MAYBE_SECRET.search("req-00000000ab") is None


@pytest.mark.parametrize(
    "once",
    [row[1] for row in PERSONAL_CODES + AFTER_VALIDATE + ASSIGNMENTS + URL_CREDENTIALS
     + BASE64_SECRETS],
)  # fmt: skip
def test_redacting_twice_changes_nothing_more(once: str) -> None:
    """A ``[REDACTED:<kind>]`` marker is no shape itself: a second pass finds nothing."""
    assert redacted(once) == (once, {})


def _digits_of(text: str, zero: str) -> str:
    """``text`` with its ASCII digits written in the script whose zero is ``zero``."""
    return "".join(chr(ord(zero) + int(c)) if c.isdigit() else c for c in text)


@pytest.mark.parametrize("zero", ["\uff10", "\u0660", "\u0966", "\U0001d7ce"])
@pytest.mark.parametrize(("text", "expected"), PERSONAL_CODES)
def test_redact_finds_a_personal_code_written_in_another_scripts_digits(
    zero: str, text: str, expected: str
) -> None:
    """Full-width, Arabic-Indic, Devanagari and mathematical digits are the digits they
    stand for (as the free-text check of decision 0033 reads them): the code goes, every
    other character stays where it was."""
    assert redacted(_digits_of(text, zero)) == (expected, {"redact.personal_code": 1})


def test_a_code_mixing_scripts_goes_and_a_vulgar_fraction_is_no_digit() -> None:
    """One code in two scripts is still one code; ``¼`` or ``¹`` after eleven digits do
    not make them a longer number, and a twelfth full-width digit does."""
    assert redacted("id 3800108\uff15\uff17\uff11\uff18 x") == (
        "id [REDACTED:personal_code] x",
        {"redact.personal_code": 1},
    )
    assert redacted("38001085718\u00bc")[0] == "[REDACTED:personal_code]\u00bc"
    twelve = _digits_of("380010857181", "\uff10")
    assert redacted(twelve) == (twelve, {})


def test_a_code_in_other_digits_is_never_remembered_as_clean() -> None:
    """The clean cache holds the text as it came: a full-width code found once is found
    again, and a value without one is still remembered."""
    redact = Redact(Counters())
    code = _digits_of("user 38001085718 failed", "\uff10")
    assert redact.scrub(code) == "user [REDACTED:personal_code] failed"
    assert redact.scrub(code) == "user [REDACTED:personal_code] failed"
    plain = "n\u00e4ide \uff11\uff12\uff13 ilma koodita"
    assert redact.scrub(plain) == plain
    assert plain in redact._clean
    assert code not in redact._clean


def test_a_source_user_agent_and_actor_fields_are_still_scrubbed() -> None:
    """The fields scanned before this change are scanned still."""
    counters = Counters()
    event = Redact(counters)(
        events.auth_login(
            actor=Actor(ActorType.USER, client_id=f"pwd={TOKEN}", roles=(f"Bearer {TOKEN}",)),
            source=Source(user_agent=f"curl/8.5 {B64_KEY}"),
        )
    )
    assert event.actor.client_id == "[REDACTED:assignment]"
    assert event.actor.roles == ("[REDACTED:authorization]",)
    assert event.source is not None
    assert event.source.user_agent == "curl/8.5 [REDACTED:secret]"


#: secrets someone may paste where an identifier goes in a path
SECRETS_BY_SHAPE = [
    TOKEN + "abcdefghi",  # 43 characters: secrets.token_urlsafe(32), a client secret
    JWT,
    "kra_0123456789abcdef_" + TOKEN + "abcdefghi",  # an API key
]


def _all_kept(values: list[str], *templates: str) -> None:
    """Each value, put in each template, goes through redact untouched and uncounted."""
    for value in values:
        for template in templates:
            text = template.format(value)
            assert redacted(text) == (text, {}), value


def _client_ids(n: int) -> list[str]:
    """``n`` client ids as ``ClientRegistry`` generates them (``kc_`` +
    ``secrets.token_urlsafe(12)``), from a seeded generator."""
    rng = random.Random(20261128)
    return ["kc_" + base64.urlsafe_b64encode(rng.randbytes(12)).decode() for _ in range(n)]


def test_a_generated_client_id_in_a_path_is_kept() -> None:
    """A client id is no secret: in a path an event records (a CORS or CSRF violation's
    ``attempted``), every generated one stays, so the record says which client."""
    _all_kept(
        _client_ids(300),
        "preflight: PATCH /admin/clients/{} from origin https://evil.example",
        "POST /admin/clients/{}/disable without a valid CSRF token",
    )


@pytest.mark.parametrize(
    "secret",
    [*SECRETS_BY_SHAPE, "kc_" + TOKEN + "abcdefghi"],  # and a secret behind the prefix
)
def test_a_secret_where_a_client_id_goes_is_still_redacted(secret: str) -> None:
    out, _ = redacted(f"POST /admin/clients/{secret}/disable without a valid CSRF token")
    assert out.startswith("POST /admin/clients/")
    assert "[REDACTED:" in out
    assert TOKEN[:12] not in out
    assert "eyJzdWIi" not in out


def _jtis(n: int) -> list[str]:
    """``n`` token ids as ``TokenService`` mints them (``secrets.token_urlsafe(16)``),
    from a seeded generator."""
    rng = random.Random(20261128)
    return [base64.urlsafe_b64encode(rng.randbytes(16)).decode().rstrip("=") for _ in range(n)]


def test_a_token_id_in_the_revoke_route_is_kept() -> None:
    """A jti is no secret (the trail's token events name it in clear): where the revoke
    route takes it, every minted one stays, so a quoted path says which token."""
    _all_kept(
        _jtis(300),
        "POST /admin/tokens/{}/revoke without a valid CSRF token",
        "preflight: POST /admin/tokens/{}/revoke from origin https://evil.example",
    )


@pytest.mark.parametrize(
    "secret",
    [
        *SECRETS_BY_SHAPE,
        TOKEN[:21] + "x",  # 22 characters no secrets.token_urlsafe(16) ends with
        TOKEN[:23],  # one more than a jti
    ],
)
def test_a_secret_where_a_token_id_goes_is_still_redacted(secret: str) -> None:
    out, _ = redacted(f"POST /admin/tokens/{secret}/revoke without a valid CSRF token")
    assert out.startswith("POST /admin/tokens/")
    assert out.endswith("/revoke without a valid CSRF token")
    assert "[REDACTED:" in out
    assert TOKEN[:12] not in out
    assert "eyJzdWIi" not in out


@pytest.mark.parametrize(
    "path",
    [
        "/admin/sessions/{}/revoke",
        "/admin/tokens/{}",
        "/admin/tokens/{}/revoke/x",
        "/admin/token/{}/revoke",
        "/xadmin/tokens/{}/revoke",
    ],
)
def test_a_token_id_shape_elsewhere_is_judged_as_before(path: str) -> None:
    """Only the revoke route's place makes a 22-character run a jti: the same shape in
    any other place of a path is still taken for a secret."""
    jti = next(j for j in _jtis(50) if sum(c.isdigit() for c in j) >= 2)
    out, counted = redacted("POST " + path.format(jti) + " without a valid CSRF token")
    assert jti not in out
    assert counted == {"redact.secret": 1}


def test_a_personal_code_inside_a_token_id_shape_still_goes() -> None:
    """A jti-shaped segment is searched inside like any other run: a personal code in it
    (with the two letters before it, taken for a country prefix) is cut out, the rest of
    the path stays."""
    jti = "Ab38001085718cDeFgHiJw"
    out, counted = redacted(f"POST /admin/tokens/{jti}/revoke")
    assert out == "POST /admin/tokens/[REDACTED:personal_code]cDeFgHiJw/revoke"
    assert counted == {"redact.personal_code": 1}
