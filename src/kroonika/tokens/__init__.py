"""Tokens: the signing key ring, minting, validation, RFC 7662 introspection,
RFC 7009 revocation, extension, bulk operations, allow/deny lists and clients.

    comps = build_tokens(settings, engine=engine, trail=trail, fingerprinter=fp)
    issued = await comps.service.issue(client, MintRequest(subject="x", audience=("svc",)))
    verdict = await comps.service.validate(issued.token)
"""

from kroonika.tokens._build import TokenComponents, build_tokens, create_tables, policy_from
from kroonika.tokens._clients import (
    Client,
    ClientRegistry,
    NewClient,
    check_rate_limit,
    hash_secret,
    verify_secret,
)
from kroonika.tokens._clock import Clock, FixedClock, SystemClock
from kroonika.tokens._errors import (
    AccessListError,
    BatchTooLarge,
    ClientError,
    ExpiryInThePast,
    ExtendConflict,
    InvalidClient,
    KeyRingError,
    MintRefused,
    MisplacedCredentials,
    MultipleAuthMethods,
    NoListEntry,
    NotPermitted,
    TokenError,
    TokenRejected,
)
from kroonika.tokens._keys import PublishedKey, SigningKey, SigningKeyRing
from kroonika.tokens._lists import (
    AccessLists,
    Decision,
    Entry,
    Invalidation,
    RedisInvalidation,
)
from kroonika.tokens._lists import Subject as ListSubject
from kroonika.tokens._rotation import rotate_recorded
from kroonika.tokens._service import (
    RESERVED_CLAIMS,
    ClientLookup,
    Emitter,
    IssuedToken,
    ItemResult,
    MintRequest,
    Policy,
    RequestContext,
    TokenService,
    parse_mint_request,
)
from kroonika.tokens._store import Page, TokenRecord, TokenStore
from kroonika.tokens._verify import Reason, Verdict, VerifiedToken, verify

__all__ = [
    "RESERVED_CLAIMS",
    "AccessListError",
    "AccessLists",
    "BatchTooLarge",
    "Client",
    "ClientError",
    "ClientLookup",
    "ClientRegistry",
    "Clock",
    "Decision",
    "Emitter",
    "Entry",
    "ExpiryInThePast",
    "ExtendConflict",
    "FixedClock",
    "InvalidClient",
    "Invalidation",
    "IssuedToken",
    "ItemResult",
    "KeyRingError",
    "ListSubject",
    "MintRefused",
    "MintRequest",
    "MisplacedCredentials",
    "MultipleAuthMethods",
    "NewClient",
    "NoListEntry",
    "NotPermitted",
    "Page",
    "Policy",
    "PublishedKey",
    "Reason",
    "RedisInvalidation",
    "RequestContext",
    "SigningKey",
    "SigningKeyRing",
    "SystemClock",
    "TokenComponents",
    "TokenError",
    "TokenRecord",
    "TokenRejected",
    "TokenService",
    "TokenStore",
    "Verdict",
    "VerifiedToken",
    "build_tokens",
    "check_rate_limit",
    "create_tables",
    "hash_secret",
    "parse_mint_request",
    "policy_from",
    "rotate_recorded",
    "verify",
    "verify_secret",
]
