"""Configuration: ``KROONIKA_*`` environment variables and an optional TOML file.

In development (the default) missing keys and secrets are generated under
``var/`` on first start. In production (``KROONIKA_ENV=production``) every secret
must be given and the service refuses to start with a missing or placeholder one.
"""

from __future__ import annotations

import base64
import difflib
import functools
import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import re2
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "placeholder", "xxx", "todo"}


class SettingsError(Exception):
    """Configuration that cannot work; the message says which setting and why."""


class AuditSinkSettings(BaseModel):
    """One log shipping destination (``KROONIKA_AUDIT_SINKS`` is a JSON list of these, or
    ``[[audit_sinks]]`` tables in the config file). Checked when the app is built; the
    secret (HEC token, Elastic API key, webhook signing key) comes from ``secret`` or,
    better, ``secret_file`` and is never logged. Unknown keys are refused by the builder
    (naming the key, never echoing its value)."""

    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)

    kind: Literal[
        "syslog_tcp",
        "syslog_tls",
        "syslog_udp",
        "splunk_hec",
        "elastic_bulk",
        "webhook",
        "nats",
        "jsonl",
        "smtp",
    ]
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    url: str | None = None
    secret: SecretStr | None = None
    secret_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_hostname: str | None = None
    body: Literal["json", "cef"] = "json"
    app_name: str = "kroonika"
    hostname: str | None = None
    max_size: int = Field(2048, ge=480, le=65507)
    index: str | None = None
    source: str = "kroonika"
    sourcetype: str = "kroonika:audit"
    subject_prefix: str = "kroonika.audit"
    # nats: the least duplicate window the sink expects of its JetStream stream; a
    # shorter one is logged as a warning when the sink first publishes (decision 0030).
    duplicate_window_s: float = Field(7200.0, gt=0, le=30 * 86400)
    # nats: read that window (one $JS.API.STREAM.INFO request per stream and start; a
    # publisher without the right gets a Publish Violation in the server's log for it).
    check_duplicate_window: bool = True
    # nats: start TLS before the server's INFO line, for a server that requires it
    # (nats-server handshake_first, a TLS-terminating proxy); tls:// servers only.
    tls_handshake_first: bool = False
    directory: Path | None = None
    basename: str = "audit"
    max_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    max_age_s: float = Field(86400.0, gt=0)
    keep: int = Field(30, ge=1)
    fsync: bool = True
    timeout_s: float = Field(10.0, gt=0, le=300)
    # splunk_hec, elastic_bulk, webhook: the HTTP proxy (http:// or https://, no
    # credential) that tunnels an https:// sink's TLS; the environment's HTTPS_PROXY is
    # never used (decision 0030).
    proxy: str | None = None
    tls_verify: bool = True
    # Send the secret (or a URL's user:password) over a connection that is not TLS to
    # a host that is not loopback. Off: such a sink is refused at start (decision 0013).
    # It covers the credential only: the events it travels with need allow_cleartext.
    allow_cleartext_credentials: bool = False
    # Send the events over a connection that is not TLS (syslog_tcp, syslog_udp, http://,
    # nats://) to a host that is not loopback. Off: such a sink is refused at start
    # (decisions 0019, 0020). It covers the events only, never a credential.
    allow_cleartext: bool = False
    # Only the events whose type is one of these or under one, a whole segment at a time
    # (["alert"]: alerts only; "alert." is the same). Default: every event (smtp:
    # ["alert.raise"]).
    types: list[str] | None = None
    # smtp: starttls (RFC 3207), tls (implicit, RFC 8314) or none (loopback, or
    # allow_cleartext); the login user (its password is secret / secret_file); the
    # sender and the recipients (plain local@domain addresses).
    security: Literal["starttls", "tls", "none"] = "starttls"
    user: str | None = None
    mail_from: str | None = None
    mail_to: list[str] = Field(default_factory=list)


class AlertResponseSettings(BaseModel):
    """A rule's automated first response (decision 0039), off unless a rule names one:
    ``action`` (``deny_network``: the alert's source network on the deny-list), for
    ``ttl_s`` seconds (10..604800, default 900), ``mode`` ``enforce`` or ``dry_run``
    (required: the operator says which). Checked when the rules are built."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    action: str
    ttl_s: int = 900
    mode: str


class AlertRuleSettings(BaseModel):
    """One alert rule (``KROONIKA_ALERT_RULES`` maps rule names to these): for a built-in
    rule, what to change (``enabled``, ``severity``, ``threshold``, ``window_s``,
    ``response``); a new name is a rule of its own and needs ``types``."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    enabled: bool = True
    types: list[str] | None = None
    match: dict[str, list[str]] | None = None
    key: list[str] | None = None
    severity: Literal["notice", "warning", "error", "critical", "alert", "emergency"] | None = None
    threshold: int | None = Field(None, ge=1, le=100_000)
    window_s: int | None = Field(None, ge=1, le=30 * 86400)
    response: AlertResponseSettings | None = None


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the refusal says what is wrong, once


@functools.lru_cache(maxsize=16)
def ticket_regex(pattern: str) -> re2._Regexp[str]:
    """The ticket pattern a justification must contain a match of, compiled by RE2: the
    time to match is linear in the justification, whatever the pattern (a backtracking
    engine would let a pattern like ``(a+)+$`` and a crafted justification stall the
    service). ``ValueError`` for a pattern RE2 does not take (look-around,
    back-references) or one over 200 characters."""
    if not isinstance(pattern, str) or len(pattern) > 200:
        raise ValueError("a ticket pattern is a regular expression of at most 200 characters")
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args else "invalid"
        raise ValueError(
            f"not a regular expression RE2 accepts ({detail}): no look-around or back-references"
        ) from None


class Settings(BaseSettings):
    # A refused value is never quoted in the error: it may be a secret given in the
    # wrong shape (the error names the setting).
    model_config = SettingsConfigDict(
        env_prefix="KROONIKA_", extra="ignore", hide_input_in_errors=True
    )

    env: Literal["development", "production"] = "development"
    var_dir: Path = Path("var")
    config_file: Path | None = None

    # --- audit trail
    audit_store_url: str | None = None
    audit_keys_dir: Path | None = None
    audit_stream: str | None = None
    audit_strict: bool = False
    audit_checkpoint_every: int = Field(1000, ge=1)
    audit_checkpoint_interval: float = Field(1.0, gt=0)
    audit_synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"
    audit_ip_v4_prefix: int = Field(24, ge=0, le=32)
    audit_ip_v6_prefix: int = Field(48, ge=0, le=128)
    audit_jsonl_dir: Path | None = None
    master_key: SecretStr | None = None
    pseudonym_key: SecretStr | None = None
    pseudonym_kid: str = "p1"
    # Retired pseudonymisation keys (key id -> base64 key), kept so that erasure finds a
    # person under every pseudonym the trail ever gave them (decision 0012).
    pseudonym_previous_keys: dict[str, SecretStr] = Field(default_factory=dict)
    # How long a running instance encrypts a person's events under one data key before
    # making a fresh one (a bound on top of the erasure check below).
    audit_subject_key_ttl_s: float = Field(300.0, gt=0, le=86400)
    # How often the writer asks which of the keys it used were erased by another instance.
    audit_erasure_check_s: float = Field(1.0, ge=0, le=3600)

    # --- service
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    db_auto_upgrade: bool = True
    max_body_bytes: int = Field(1_048_576, ge=1024)
    trusted_proxies: list[str] = Field(default_factory=list)
    # SIGTERM/SIGINT: how long `kroonika serve` lets the requests in flight finish before
    # it cancels them (each then gets no answer) and stops the rest (decision 0010).
    shutdown_grace_s: int = Field(30, ge=1, le=600)

    # --- TARA relying party
    tara_issuer: str = "http://127.0.0.1:8001"
    tara_client_id: str = "kroonika-dev"
    tara_client_secret: SecretStr | None = None
    tara_redirect_uri: str | None = None
    tara_scopes: list[str] = Field(default_factory=lambda: ["openid"])
    tara_acr_minimum: Literal["low", "substantial", "high"] = "substantial"
    tara_timeout_s: float = Field(5.0, gt=0, le=60)
    tara_leeway_s: int = Field(10, ge=0, le=300)
    tara_jwks_ttl_s: int = Field(3600, ge=300, le=86400)
    # TARA's JWKS unreachable: cached keys still verify for this long past the TTL (0: not)
    tara_jwks_stale_if_error_s: int = Field(86400, ge=0, le=86400)
    # /ready's check of TARA: cut after this long, its verdict kept this long (decision 0005)
    tara_ready_timeout_s: float = Field(2.0, gt=0, le=30)
    tara_ready_cache_s: float = Field(5.0, ge=0, le=300)
    login_flow_ttl_s: int = Field(600, ge=30, le=3600)
    login_pending_flows_max: int = Field(5, ge=1, le=20)
    login_return_to_allowed: list[str] = Field(default_factory=lambda: ["/"])

    # --- the security dashboard (GET /admin/dashboard)
    dashboard_alert_days: int = Field(30, ge=1, le=400)  # how far back a verification is found
    dashboard_refresh_s: int = Field(60, ge=5, le=3600)  # the page reloads itself this often

    # --- sessions and cookies
    session_idle_s: int = Field(900, ge=30)
    session_absolute_s: int = Field(28800, ge=60)
    session_max_per_person: int = Field(0, ge=0)
    session_key: SecretStr | None = None
    cookie_secure: bool = True
    cookie_domain: str | None = None

    # --- security events: rate limits, enrichment, detectors (issue 6)
    redis_url: str | None = None
    ratelimit_enabled: bool = True
    ratelimit_limits: dict[str, str] = Field(default_factory=dict)
    ratelimit_exempt_networks: list[str] = Field(default_factory=list)
    geo_enabled: bool = True
    geo_db_path: Path | None = None
    threat_feeds: list[dict[str, str | int]] = Field(default_factory=list)
    threat_check_interval_s: float = Field(5.0, gt=0)
    security_travel_max_kmh: int = Field(1000, ge=100)
    security_travel_max_accuracy_km: int = Field(500, ge=1)
    security_brute_force_failures: int = Field(8, ge=2)
    security_brute_force_window_s: int = Field(120, ge=10)
    security_stuffing_people: int = Field(15, ge=2)
    security_stuffing_attempts: int = Field(25, ge=2)
    security_stuffing_window_s: int = Field(600, ge=10)
    security_unusual_hour_min_logins: int = Field(10, ge=1)
    security_unusual_hour_min_days: int = Field(14, ge=1)
    # CORS: origins (scheme://host[:port]) allowed to call the service from a browser;
    # any other cross-origin preflight or credentialed request is refused and audited.
    cors_allowed_origins: list[str] = Field(default_factory=list)
    cors_max_age_s: int = Field(600, ge=0, le=86400)

    # --- tokens: signing keys, TTL policy, lists, audit summary (issue 4)
    token_issuer: str | None = None
    token_alg: Literal["ES256", "RS256"] = "ES256"  # noqa: S105  (an algorithm name)
    token_rsa_bits: int = Field(3072, ge=2048, le=8192)
    token_key_publish_lead_s: int = Field(600, ge=0)
    token_key_rotation_interval_s: int = Field(30 * 86400, ge=0)
    token_ttl_min_s: int = Field(60, ge=1)
    token_ttl_default_s: int = Field(900, ge=1)
    token_ttl_max_s: int = Field(3600, ge=1)
    token_session_ttl_s: int = Field(900, ge=30)
    token_session_audience: list[str] = Field(default_factory=lambda: ["kroonika"])
    token_session_delivery: Literal["cookie", "body", "both"] = "both"  # noqa: S105
    token_session_cookie: str = "kroonika_at"  # noqa: S105  (a cookie name)
    token_leeway_s: int = Field(30, ge=0, le=300)
    token_bulk_max: int = Field(100, ge=1, le=10_000)
    token_max_custom_claims: int = Field(20, ge=0, le=200)
    token_max_claim_bytes: int = Field(1024, ge=16)
    token_max_claims_bytes: int = Field(4096, ge=16)
    token_allowlist_mode: bool = False
    token_list_cache_max_age_s: float = Field(30.0, gt=0)
    token_audit_summary_window_s: int = Field(0, ge=0)
    token_client_scrypt_n: int = Field(2**14, ge=2**10)

    # --- administration and jobs (issue 5)
    admin_bootstrap: dict[str, list[str]] = Field(default_factory=dict)  # code -> roles
    admin_second_approval: bool = True
    admin_approval_ttl_s: int = Field(86400, ge=60, le=30 * 86400)
    admin_justification_min: int = Field(10, ge=1, le=500)
    admin_ticket_pattern: str | None = None
    admin_api_key_max_ttl_s: int = Field(90 * 86400, ge=60)
    jobs_enabled: bool = True
    jobs_tick_s: float = Field(15.0, gt=0)
    jobs_lease_s: int = Field(300, ge=5)
    jobs_batch_size: int = Field(500, ge=1, le=10_000)
    jobs_lock_timeout_s: float = Field(5.0, gt=0, le=3600)
    jobs_statement_timeout_s: float = Field(120.0, gt=0, le=86400)
    jobs_token_retention_s: int = Field(30 * 86400, ge=0)
    jobs_flow_retention_s: int = Field(3600, ge=0)
    jobs_session_retention_s: int = Field(30 * 86400, ge=0)  # 0: ended sessions kept
    jobs_profile_retention_s: int = Field(400 * 86400, ge=0)  # 0: profiles kept
    jobs_cron: dict[str, str] = Field(default_factory=dict)
    jobs_disabled: list[str] = Field(default_factory=list)

    # --- log shipping, metrics and retention (issue 7)
    audit_sinks: list[AuditSinkSettings] = Field(default_factory=list)
    audit_sink_batch_size: int = Field(500, ge=1, le=100_000)
    audit_sink_poll_s: float = Field(0.5, gt=0, le=60)
    audit_sink_retry_max_s: float = Field(30.0, gt=0, le=3600)
    audit_jsonl_max_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    # --- alerting (AC7, decision 0036)
    alerts_enabled: bool = True
    alert_rules: dict[str, AlertRuleSettings] = Field(default_factory=dict)
    alert_max_age_s: float = Field(86400.0, gt=0, le=366 * 86400)
    audit_jsonl_max_age_s: float = Field(86400.0, gt=0)
    audit_jsonl_keep: int = Field(30, ge=1)
    metrics_enabled: bool = True
    metrics_token: SecretStr | None = None
    audit_retention_default_days: int = Field(400, ge=1)
    audit_retention_days: dict[str, int] = Field(default_factory=dict)  # category or type
    audit_legal_hold: bool = False
    audit_archive_dir: Path | None = None
    audit_partitions_ahead: int = Field(3, ge=1, le=36)

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, v: str | None) -> str | None:
        # what both the rate limiter (limits) and the list notices (redis-py) accept
        if v is not None and not v.startswith(("redis://", "rediss://")):
            raise ValueError("redis_url must be a redis:// or rediss:// URL")
        return v

    @field_validator("audit_stream")
    @classmethod
    def _stream(cls, v: str | None) -> str | None:
        from kroonika.audit._sealer import check_stream_name

        return None if v is None else check_stream_name(v)

    @field_validator("admin_ticket_pattern")
    @classmethod
    def _ticket(cls, v: str | None) -> str | None:
        if v is not None:
            ticket_regex(v)
        return v

    @field_validator("pseudonym_kid")
    @classmethod
    def _kid(cls, v: str) -> str:
        if not v or ":" in v or len(v) > 16:
            raise ValueError("pseudonym_kid must be 1..16 characters without ':'")
        return v

    @field_validator("pseudonym_previous_keys")
    @classmethod
    def _previous_kids(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for kid in v:
            if not kid or ":" in kid or len(kid) > 16:
                raise ValueError("pseudonym_previous_keys ids are 1..16 characters without ':'")
        return v

    def pseudonym_keys(self) -> list[tuple[str, bytes]]:
        """Every pseudonymisation key as ``(key id, key)``, the current one first."""
        out = [(self.pseudonym_kid, self.secret_bytes("pseudonym_key"))]
        for kid, value in sorted(self.pseudonym_previous_keys.items()):
            if kid == self.pseudonym_kid:
                continue
            name = f"pseudonym_previous_keys[{kid}]"
            try:
                data = base64.b64decode(value.get_secret_value(), validate=True)
            except ValueError as exc:
                raise SettingsError(f"KROONIKA_{name.upper()} is not base64") from exc
            if len(data) < 32:
                raise SettingsError(f"KROONIKA_{name.upper()} must be 32 bytes (base64)")
            out.append((kid, data[:32]))
        return out

    @property
    def production(self) -> bool:
        return self.env == "production"

    def resolved_audit_store_url(self) -> str:
        return self.audit_store_url or f"sqlite:///{(self.var_dir / 'audit.db').resolve()}"

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'kroonika.db').resolve()}"

    def resolved_tara_redirect_uri(self) -> str:
        base = (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
        return self.tara_redirect_uri or f"{base}/auth/callback"

    def resolved_token_issuer(self) -> str:
        return (self.token_issuer or self.public_url or f"http://{self.host}:{self.port}").rstrip(
            "/"
        )

    def resolved_audit_keys_dir(self) -> Path:
        return self.audit_keys_dir or self.var_dir / "keys" / "audit"

    def secret_bytes(self, name: str, length: int = 32) -> bytes:
        """A 32-byte secret from the environment (base64) or, in development, from
        ``var/secrets/<name>`` (generated on first use)."""
        value: SecretStr | None = getattr(self, name)
        if value is not None:
            raw = value.get_secret_value()
            if raw.strip().lower() in _PLACEHOLDERS:
                raise SettingsError(f"KROONIKA_{name.upper()} is a placeholder value")
            try:
                data = base64.b64decode(raw, validate=True)
            except ValueError as exc:
                raise SettingsError(f"KROONIKA_{name.upper()} is not base64") from exc
            if len(data) < length:
                raise SettingsError(f"KROONIKA_{name.upper()} must be {length} bytes (base64)")
            return data[:length]
        if self.production:
            raise SettingsError(f"KROONIKA_{name.upper()} must be set in production")
        path = self.var_dir / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(base64.b64encode(secrets.token_bytes(length)).decode())
        return base64.b64decode(path.read_text().strip())[:length]


def refused(exc: ValidationError) -> SettingsError:
    """One line naming each refused setting as the operator sets it
    (``KROONIKA_SESSION_IDLE_S: Input should be a valid integer``; a nested one with
    where in it: ``KROONIKA_ALERT_RULES (at security_anomaly.response.mode): ...``),
    without the value (it may be a secret) or pydantic's help link."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = [str(p) for p in err["loc"]]
        name = f"KROONIKA_{loc[0].upper()}" if loc else "the settings"
        where = f" (at {'.'.join(loc[1:])})" if len(loc) > 1 else ""
        parts.append(f"{name}{where}: {' '.join(str(err['msg']).split())}")
    return SettingsError("; ".join(dict.fromkeys(parts)))


_SKIP = len("KROONIKA_")


def _shown_name(name: str) -> str:
    return name if name.isascii() and name.isprintable() else ascii(name)


def named_twice(environ: Mapping[str, str]) -> SettingsError | None:
    """Refusal of a setting given under two names of ``environ`` that differ only in
    case (``KROONIKA_X`` and ``kroonika_x``): pydantic-settings reads the names lower-cased
    and keeps the one it meets last, so the value would depend on the environment's
    order. Names only: a value may be a secret."""
    names: dict[str, list[str]] = {}
    for name in environ:
        key = name.lower()  # as pydantic-settings reads it (case_sensitive=False)
        if key.startswith("kroonika_") and key[_SKIP:] in Settings.model_fields:
            names.setdefault(key, []).append(name)
    twice = [
        f"{' and '.join(map(_shown_name, sorted(n)))} are {'both' if len(n) == 2 else 'all'} set"
        for n in names.values()
        if len(n) > 1
    ]
    if not twice:
        return None
    return SettingsError(
        f"{'; '.join(sorted(twice))}: names that differ only in case set one setting (the"
        " names are read in any case), and which value is read would depend on the"
        " environment's order; keep one of them"
    )


def load_settings(**overrides: Any) -> Settings:
    """Environment first, then the TOML file named by ``KROONIKA_CONFIG_FILE`` for
    anything the environment leaves unset, then explicit overrides. A refused value is
    a :class:`SettingsError` naming the variable (:func:`refused`), and so is a setting
    given under two names that differ only in case (:func:`named_twice`)."""
    twice = named_twice(os.environ)
    if twice is not None:
        raise twice
    try:
        base = Settings(**overrides)
    except ValidationError as exc:
        raise refused(exc) from None
    if base.config_file is not None:
        try:
            data = tomllib.loads(base.config_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read config file {base.config_file}: {exc}") from exc
        unknown = sorted(
            k if k.isidentifier() else ascii(k) for k in data if k not in Settings.model_fields
        )
        if unknown:
            raise SettingsError(
                f"config file {base.config_file}: no such setting: {', '.join(unknown)} (a key"
                " is the setting's name in lower case without KROONIKA_, e.g. session_idle_s)"
            )
        # The names pydantic-settings reads: any case (``kroonika_session_idle_s``).
        env_set = {k[_SKIP:].lower() for k in os.environ if k.upper().startswith("KROONIKA_")}
        merged = {k: v for k, v in data.items() if k not in env_set}
        merged.update(overrides)
        try:
            base = Settings(**merged)
        except ValidationError as exc:
            raise refused(exc) from None
    return base


#: ``KROONIKA_*`` variables that are no setting but are read by something else: the
#: commands themselves (``KROONIKA_DEBUG``, ``kroonika simulate``'s credentials), the TARA
#: mock's control token and the test suite's switches. They are not warned about.
OTHER_VARIABLES = frozenset(
    {
        "KROONIKA_DEBUG",
        "KROONIKA_SIM_CLIENT_SECRET",
        "KROONIKA_SIM_ADMIN_KEY",
        "KROONIKA_SIM_AUDITOR_KEY",
        "KROONIKA_MOCK_TARA_CONTROL_TOKEN",
        "KROONIKA_REQUIRE_SERVICES",
        "KROONIKA_TEST_POSTGRES",
        "KROONIKA_REGEN_GOLDEN",
    }
)


def unknown_variables_warning(environ: Mapping[str, str]) -> str | None:
    """One line naming each ``KROONIKA_*`` variable of ``environ`` that is neither a
    setting nor one of :data:`OTHER_VARIABLES` (a misspelt one is silently ignored and
    its setting keeps the default), with the closest name when one is close (difflib);
    None when there is none. Names only: a value may be a secret. Settings are matched
    as pydantic-settings reads them, whatever the case of the name; the other variables
    exactly, as ``os.environ`` reads them (``kroonika_debug`` turns nothing on)."""
    settings = {f"KROONIKA_{name.upper()}" for name in Settings.model_fields}
    known = settings | OTHER_VARIABLES
    notes = []
    for name in sorted(environ):
        if not name.upper().startswith("KROONIKA_"):
            continue
        if name.upper() in settings or name in OTHER_VARIABLES:
            continue
        # compared without the prefix all share, which would make every name look close
        close = difflib.get_close_matches(
            name.upper()[_SKIP:], sorted(k[_SKIP:] for k in known), 1, 0.8
        )
        notes.append(f"{name} (did you mean KROONIKA_{close[0]}?)" if close else name)
    if not notes:
        return None
    return (
        f"environment variables that are no setting, ignored: {', '.join(notes)}; see the"
        " operator guide's configuration for the names"
    )
