"""The public TARA test identities (TARA.md) and the authentication methods they use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Method = Literal["idcard", "mID", "smartid", "eidas"]
"""An ``amr`` value as the running TARA writes it (``eidas`` lower case)."""
Acr = Literal["low", "substantial", "high"]

METHODS: tuple[Method, ...] = ("idcard", "mID", "smartid", "eidas")
ACR_ORDER: tuple[Acr, ...] = ("low", "substantial", "high")
DEFAULT_ACR: Acr = "substantial"


def acr_rank(acr: Acr) -> int:
    """Position of ``acr`` in low < substantial < high."""
    return ACR_ORDER.index(acr)


def parse_method(value: str) -> Method | None:
    """Accept an ``amr`` value or its scope name in any case (``mid``, ``MID``, ``mID``...)."""
    folded = value.casefold()
    for method in METHODS:
        if method.casefold() == folded:
            return method
    return None


def parse_acr(value: str) -> Acr | None:
    """Return ``value`` if it is a level of assurance, else None."""
    for acr in ACR_ORDER:
        if acr == value:
            return acr
    return None


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    """A person from RIA's public test data: code, names (upper case), method and level."""

    code: str
    given_name: str
    family_name: str
    method: Method
    acr: Acr
    phone_number: str | None = None


PUBLIC_IDENTITIES: tuple[PublicIdentity, ...] = (
    PublicIdentity("38001085718", "JAAK-KRISTJAN", "JÕEORG", "idcard", "high"),
    PublicIdentity(
        "60001019906", "MARY ÄNN", "O’CONNEŽ-ŠUSLIK TESTNUMBER", "mID", "high", "+37200000766"
    ),
    PublicIdentity(
        "60001017716", "MARY ÄNN", "O’CONNEŽ-ŠUSLIK TESTNUMBER", "mID", "high", "+37200000566"
    ),
    PublicIdentity("40404040009", "OK", "TESTNUMBER", "smartid", "high"),
    # TARA.md gives only "acr low" for this person; the mock lets her log in with Smart-ID.
    PublicIdentity("47101010033", "MARI-LIIS", "MÄNNIK", "smartid", "low"),
    PublicIdentity("37101010021", "IGOR", "ŽAIKOVSKI", "smartid", "substantial"),
)


def public_identity(code: str) -> PublicIdentity | None:
    """The public test identity with this personal code, or None."""
    for identity in PUBLIC_IDENTITIES:
        if identity.code == code:
            return identity
    return None
