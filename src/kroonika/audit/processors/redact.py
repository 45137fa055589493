"""redact: the second safety net that removes secret-shaped strings.

The first line of defence is the catalogue (no field exists for a secret). This
step scans every string that could still carry one by mistake (details, reason,
target type and id, user agent, client id, roles, request, trace and flow ids,
session reference) for JWT-, key-, secret-, credential- and personal-code-shaped
content, replaces what it finds with ``[REDACTED:<kind>]`` and counts it under
``redact.<kind>``. Personal codes have their place: ``Actor.subject``
(pseudonymised) and ``PersonalData`` (encrypted).

It runs after ``validate``, which has replaced every non-printable character (TAB,
LF, NBSP, ...) with U+FFFD, so wherever a shape allows whitespace it allows U+FFFD
too. It fails open in the sense that a secret of a shape it does not know passes;
it never drops an event.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import islice
from typing import Final

from kroonika.audit._counters import Counters
from kroonika.audit._model import AuditEvent

# The full pattern is searched at every position of every string that reaches it, so it
# is built for sre's fast path: every alternative starts with a literal character or a
# character class (a position where it cannot start costs one comparison), any
# lookbehind comes after that first character, and each ends in an empty group that
# names its kind (``match.lastgroup``). Searching a 230-character reason costs about a
# third of what the same shapes cost as named groups with leading lookbehinds.

# Whitespace as it arrives here: validate turned TAB, LF, NBSP and the like into U+FFFD.
_WS: Final = r"[\s\ufffd]"

# Names whose value is a secret even after a prefix joined with "_" or "-" (DB_PASSWORD,
# my_secret, X-Api-Key, GITHUB_TOKEN). Compound names are listed so that the whole name
# goes, not only its last word.
_STRONG_NAMES: Final = (
    r"passw(?:or)?d", r"passphrase", r"pwd", r"phpsessid", r"private[_-]?key",
    r"client[_-]?secret", r"secret(?:[_-]?(?:access[_-]?)?key)?", r"credentials?", r"cookie",
    r"token", r"access[_-]?token", r"id[_-]?token", r"refresh[_-]?token", r"auth[_-]?token",
    r"api[_-]?key", r"apikey", r"session[_-]?id", r"jsessionid",
    r"auth_code", r"authorization_code", r"device_code",
)  # fmt: skip
# Short generic words: only as a name of their own, so that barcode=, zipcode:,
# error_code= and postal_code= keep their values.
_WEAK_NAMES: Final = (r"code", r"state", r"nonce", r"session", r"sid")


def _names(strong: tuple[str, ...], weak: tuple[str, ...]) -> str:
    """The names, in any case, as one alternative that starts with a character class:
    a first letter not after a letter or digit (nor after "_" for a weak name), then
    the rest of a name that starts with that letter."""
    rests: dict[str, list[str]] = {}
    for name in strong:
        rests.setdefault(name[0], []).append(name[1:])
    for name in weak:
        rests.setdefault(name[0], []).append(f"(?<!_.){name[1:]}")
    firsts = "".join(rests)
    branches = "|".join(f"(?<={first})(?:{'|'.join(rest)})" for first, rest in rests.items())
    return f"[{firsts.upper()}{firsts}](?<![A-Za-z0-9].)(?i:{branches})"


# An optional quote closes the name ("password": or \"password\":), another opens the value.
_QUOTED_VALUE: Final = (
    r'\\"[^"\ufffd]{4,}?(?=\\"|\ufffd|$)'  # JSON inside a JSON string: \"...\"
    r'|"(?:[^"\\\ufffd]|\\[^\ufffd]){4,}'  # "..." with escapes; the closing quote stays
    r"|'[^'\ufffd]{4,}"
)
# A bare value ends at whitespace, & ; , or at a quote that closes the surrounding
# string (DB_PASSWORD=x" keeps its quote; pass"word is one value).
_BARE_VALUE: Final = (
    r"[^\s\ufffd&;,\"'][^\s\ufffd&;,]{3,}?(?=[\\\"']+(?![A-Za-z0-9])|[\s\ufffd&;,]|$)"
)
_HEX: Final = r"[0-9A-Fa-f]"

_SECRET_SHAPES: Final = re.compile(
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*(?P<jwt>)"
    r"|-----BEGIN[ \ufffd][A-Z \ufffd]*PRIVATE[ \ufffd]KEY-----"
    r"[\s\S]*?(?:-----END[^-]*-----|$)(?P<private_key>)"
    rf"|[Bb](?<!\w.)(?i:earer|asic){_WS}+[A-Za-z0-9._~+/=-]{{8,}}(?P<authorization>)"
    # scheme://user:password@host: Redact keeps "://"; user and password go, host stays.
    # (No "[" in a user name: that would find the marker left by an earlier pass.)
    r"|://[^\s\ufffd/?#@:\[]*:[^\s\ufffd/?#]+(?=@)(?P<url_credentials>)"
    rf"|{_names(_STRONG_NAMES, _WEAK_NAMES)}(?:\\?[\"'])?{_WS}*[=:]{_WS}*"
    rf"(?:{_QUOTED_VALUE}|{_BARE_VALUE})(?P<assignment>)"
    # Hex in one case (SHA-256 digests, trace, span and object ids, 16+ characters) and
    # UUIDs are legitimate in audit records, never redacted as secrets: kept whole, and
    # not searched for a personal code either (a 24-character object id holds eleven
    # date-shaped digits once in about 10,000).
    rf"|{_HEX}(?<![A-Za-z0-9_].)(?:(?<=[0-9a-f])[0-9a-f]{{15,}}|(?<=[0-9A-F])[0-9A-F]{{15,}}"
    rf"|{_HEX}{{7}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}})(?![A-Za-z0-9_])(?P<digest>)"
    # An Estonian personal code in any text (isikukood38001085718, EE38001085718_x), not
    # part of a longer number; Redact adds a two-letter country prefix in either case, or
    # the ETSI one (PNOEE-). No check digit: a mistyped code still names a person (0033).
    r"|[1-6](?<!\d.)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{4}(?!\d)(?P<personal_code>)"
    # A run of 32+ characters of URL-safe or standard base64 (with "+", "/" and "="
    # padding); Redact decides whether there is a random secret in it.
    r"|[A-Za-z0-9+/_-](?<![A-Za-z0-9+/_-].)[A-Za-z0-9+/_-]{31,}={0,2}(?P<secret>)"
)
#: The kinds counted as ``redact.<kind>``: every shape but a digest, which is left as it is.
COUNTED_KINDS: Final = tuple(k for k in _SECRET_SHAPES.groupindex if k != "digest")
_MIN_LEN: Final = 11  # the shortest shape worth finding: a bare personal code
# What every shape above needs, cheap to look for: "eyJ" (JWT), five dashes (PEM),
# whitespace or U+FFFD after bearer/basic, "=" or ":" (assignments, URL credentials),
# eleven digits in a row (personal code); only bare secrets need nothing but 32
# characters. Nothing in a string shorter than that without any of these is redacted
# (hex in it is kept anyway), so it skips the full pattern (2 µs on a 14-character
# request id, against 0.5 µs for this one). Property tests keep the two in step.
_MAYBE_SECRET: Final = re.compile(r"eyJ|-----|[=:\s\ufffd]|\d{11}")
_SECRET_MIN: Final = 32

_DIGIT: Final = re.compile(r"\d")
# Adjacent characters of different kinds (lower case, upper case, digit).
_KIND_CHANGE: Final = re.compile(r"[a-z](?=[A-Z0-9])|[A-Z](?=[a-z0-9])|[0-9](?=[A-Za-z])")


def _looks_random(token: str) -> bool:
    """32+ base64 characters mixing upper case, lower case and digits: a random
    secret (``secrets.token_urlsafe``), not a word, a hex digest or a UUID."""
    return (
        not token.islower()
        and not token.isupper()
        and _DIGIT.search(token) is not None
        and not token.isdigit()
    )


def _random_through(text: str) -> bool:
    """Random, and random all through: the kind of character (lower case, upper case,
    digit) changes at about 60 % of places in base64, at few in a path
    (/api/v1/Users/12345/Documents) or in form text (Hello+World+2024)."""
    return _looks_random(text) and len(_KIND_CHANGE.findall(text)) * 4 >= len(text)


# The words of a path around a secret in it (/oauth/authorize/<secret>/revoke). The
# words after it are found in the reversed text, so that both take one pass.
_PATH_HEAD: Final = re.compile(r"(?:(?:[A-Z]?[a-z]++|v?[0-9]++)?/)+")
_PATH_TAIL_REVERSED: Final = re.compile(r"(?:(?:[a-z]++[A-Z]?|[0-9]++v?)?/)+")
_SEPARATOR: Final = re.compile(r"[+/]")
_PARTS_TRIED: Final = 8  # where a secret may start after a "/" or "+": bounds the work
_PART_MIN: Final = 16  # a random part shorter than this in a path is an id, not a secret


def _without_path(part: str) -> tuple[int, int]:
    """``part`` without the words of a path before and after it."""
    head = _PATH_HEAD.match(part)
    tail = _PATH_TAIL_REVERSED.match(part[::-1])
    # Slashes alone are no path: base64 may start or end with "/".
    i = head.end() if head is not None and head.group().strip("/") else 0
    j = len(part) - tail.end() if tail is not None and tail.group().strip("/") else len(part)
    return (i, j) if i < j else (0, len(part))


# A client id as ``ClientRegistry`` generates it (``kc_`` + ``secrets.token_urlsafe(12)``):
# no secret, and what an operator needs to read in a path (PATCH /admin/clients/<id>, .../disable).
# Only exactly this shape as a whole path segment; nothing secret Kroonika makes has it
# (client and session secrets, nonces and API keys are 43 characters or more, tokens JWTs).
_CLIENT_ID: Final = re.compile(r"kc_[A-Za-z0-9_-]{16}")


def _is_client_id(run: str, i: int, j: int) -> bool:
    """``run[i:j]`` is a generated client id standing as a path segment of its own."""
    return (
        _CLIENT_ID.fullmatch(run, i, j) is not None
        and (i == 0 or run[i - 1] == "/")
        and (j == len(run) or run[j] == "/")
    )


# A token id as TokenService mints it (``secrets.token_urlsafe(16)``: 22 characters, the
# last one of "AQgw" because 16 bytes leave its low four bits 0) where the revoke route
# takes it: no secret (the trail's token events name it in clear, as ``target.id``), and
# what an operator needs to read in POST /admin/tokens/<jti>/revoke. Only exactly this
# shape, only in that place: without a prefix a jti elsewhere cannot be told from a
# secret, and nothing secret Kroonika makes is 22 characters (tokens are JWTs).
_JTI: Final = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")


def _is_revoked_jti(run: str, i: int, j: int) -> bool:
    """``run[i:j]`` is a minted jti standing where ``/admin/tokens/{jti}/revoke`` takes it."""
    return (
        _JTI.fullmatch(run, i, j) is not None
        and f"/{run[:i]}".endswith("/admin/tokens/")
        and run[j:] == "/revoke"
    )


def _find_secret(run: str) -> tuple[int, int] | None:
    """Where the random secret in a run of 32+ base64 characters is, if it has one.

    A run without "+" or "/" is one (``secrets.token_urlsafe``) or none. A run with
    them is standard base64 or a path: from its start or from one of the first few
    "/" and "+", without the path's words around it, what remains must be random
    all through."""
    if not _looks_random(run):
        return None  # then no part of it is random either
    if _SEPARATOR.search(run) is None:
        return 0, len(run)
    starts = [0, *(m.end() for m in islice(_SEPARATOR.finditer(run), _PARTS_TRIED))]
    for start in starts:
        i, j = _without_path(run[start:])
        if _is_client_id(run, start + i, start + j) or _is_revoked_jti(run, start + i, start + j):
            continue
        if j - i >= _PART_MIN and _random_through(run[start + i : start + j]):
            return start + i, start + j
    return None


# The ETSI EN 319 412-1 form, as in a certificate's serialNumber: PNO, country, "-".
_ETSI_PREFIX: Final = re.compile(r"(?<![A-Za-z])(?i:pno)[A-Za-z]{2}-\Z")


def with_country_prefix(value: str, start: int, done: int) -> int:
    """Where a personal code at ``start`` begins with its two-letter country prefix
    (EE, ee, lv) or its ETSI one (PNOEE-), if it has one that is not the end of a
    longer word. Also what :func:`kroonika.audit.personal_codes.redact_personal_codes`
    removes with a code (decision 0038)."""
    if value[start - 1 : start] == "-":
        etsi = _ETSI_PREFIX.search(value, max(start - 7, done), start)
        return start if etsi is None else etsi.start()
    prefix = value[max(start - 2, done) : start]
    if len(prefix) == 2 and prefix.isascii() and prefix.isalpha():
        before = value[start - 3 : start - 2]
        if not (before.isascii() and before.isalpha()):
            return start - 2
    return start


def ascii_digits(text: str) -> str:
    """``text`` with every decimal digit of any script (Unicode category Nd: full-width,
    Arabic-Indic, Devanagari, ...) as the ASCII digit it stands for, and nothing else
    changed, so a position in the result is the same position in ``text``. Not NFKC:
    that also turns ``¼`` into ``1⁄4`` and ``¹`` into ``1``, which would glue a digit
    to a code and hide it as part of a longer number."""
    return "".join(
        str(unicodedata.decimal(c)) if not c.isascii() and c.isdecimal() else c for c in text
    )


def _jwt_in_path(text: str, start: int, end: int) -> int | None:
    """Where a JWT starts that is a path segment inside the base64 run
    ``text[start:end]`` (/admin/clients/eyJ...), if one does: the run ends at the JWT's
    first ".", so taken as a run only its header would go, and its claims and
    signature would stay."""
    i = text.find("/eyJ", start, end)
    if i < 0:
        return None
    jwt = _SECRET_SHAPES.match(text, i + 1)
    return i + 1 if jwt is not None and jwt.lastgroup == "jwt" else None


class Redact:
    """Replace secret-shaped substrings; count each removal by kind."""

    def __init__(self, counters: Counters, *, cache_size: int = 8192) -> None:
        self._counters = counters
        # Values already found clean (user agents, reason codes repeat a lot). Only
        # values in which the full pattern finds nothing at all are remembered, so no
        # secret is ever kept here.
        self._clean: set[str] = set()
        self._cache_size = cache_size

    def scrub(self, value: str) -> str:
        if len(value) < _MIN_LEN or value in self._clean:
            return value
        if len(value) < _SECRET_MIN and _MAYBE_SECRET.search(value) is None:
            return value  # unique values such as request ids: not worth caching
        # The shapes are searched with every decimal digit as ASCII (a full-width
        # personal code is one); one character stands for one, so the places found
        # are the same in ``value``, and what is kept is kept as it came.
        text = value if value.isascii() else ascii_digits(value)
        match = _SECRET_SHAPES.search(text)
        if match is None:
            if len(self._clean) >= self._cache_size:
                self._clean.clear()
            self._clean.add(value)
            return value
        return self._redact(value, match, text)

    def _redact(self, value: str, match: re.Match[str] | None, text: str | None = None) -> str:
        """Replace every shape from ``match`` on (found in ``text``, ``value`` with its
        digits as ASCII). A digest is skipped whole; a secret candidate that does not
        look random is searched inside (a personal code or a password=... may sit in a
        long identifier or path)."""
        if text is None:
            text = value
        parts: list[str] = []
        done = 0
        while match is not None:
            kind = match.lastgroup or "secret"
            start, end = match.span()
            if kind == "digest":
                match = _SECRET_SHAPES.search(text, end)
                continue
            if kind == "secret":
                # A JWT as a path segment is found whole by the search inside the run
                # below, once the path before it is found to hold no secret.
                jwt = _jwt_in_path(text, start, end)
                found = _find_secret(match.group() if jwt is None else text[start:jwt])
                if found is None:
                    # Look inside the run (the secret shape starts only where a run does).
                    match = _SECRET_SHAPES.search(text, start + 1)
                    continue
                start, end = start + found[0], start + found[1]
            elif kind == "url_credentials":
                start += 3  # "://"
            elif kind == "personal_code":
                start = with_country_prefix(text, start, done)
            self._counters.add(f"redact.{kind}")
            parts.append(value[done:start])
            parts.append(f"[REDACTED:{kind}]")
            done = end
            match = _SECRET_SHAPES.search(text, end)
        if not parts:
            return value
        parts.append(value[done:])
        return "".join(parts)

    def __call__(self, event: AuditEvent) -> AuditEvent:
        # ``scrub`` is called only for values its first check would not pass at once
        # (shorter than any shape, or already found clean): most values are.
        scrub = self.scrub
        known = self._clean
        details = event.details
        for name, value in details.items():
            if type(value) is str:
                if len(value) >= _MIN_LEN and value not in known:
                    details[name] = scrub(value)
            elif type(value) is list and value and type(value[0]) is str:
                for item in value:  # a list of short or known-clean strings stays as it is
                    if type(item) is not str or (len(item) >= _MIN_LEN and item not in known):
                        details[name] = [scrub(v) for v in value if type(v) is str]
                        break
        v = event.reason
        if v is not None and (len(v) >= _MIN_LEN and v not in known):
            event.reason = scrub(v)
        target = event.target
        if target is not None:
            target.type = scrub(target.type)
            if target.id is not None:
                target.id = scrub(target.id)
        src = event.source
        if src is not None:
            v = src.user_agent
            if v is not None and (len(v) >= _MIN_LEN and v not in known):
                src.user_agent = scrub(v)
        actor = event.actor
        v = actor.client_id
        if v is not None and (len(v) >= _MIN_LEN and v not in known):
            actor.client_id = scrub(v)
        if actor.roles:
            actor.roles = tuple(scrub(r) for r in actor.roles)
        corr = event.correlation
        if corr is not None:  # request ids come from request headers
            if corr.request_id is not None:
                corr.request_id = scrub(corr.request_id)
            if corr.trace_id is not None:
                corr.trace_id = scrub(corr.trace_id)
            if corr.flow_id is not None:
                corr.flow_id = scrub(corr.flow_id)
            if corr.session_ref is not None:
                corr.session_ref = scrub(corr.session_ref)
        return event
