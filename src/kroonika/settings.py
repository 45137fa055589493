"""Configuration: ``KROONIKA_*`` environment variables and an optional TOML file.

In development (the default) missing keys and secrets are generated under
``var/`` on first start. In production (``KROONIKA_ENV=production``) every secret
must be given and the service refuses to start with a missing or placeholder one.
"""

from __future__ import annotations

import base64
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "placeholder", "xxx", "todo"}


class SettingsError(Exception):
    """Configuration that cannot work; the message says which setting and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KROONIKA_", extra="ignore")

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

    # --- service
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None

    @field_validator("pseudonym_kid")
    @classmethod
    def _kid(cls, v: str) -> str:
        if not v or ":" in v or len(v) > 16:
            raise ValueError("pseudonym_kid must be 1..16 characters without ':'")
        return v

    @property
    def production(self) -> bool:
        return self.env == "production"

    def resolved_audit_store_url(self) -> str:
        return self.audit_store_url or f"sqlite:///{(self.var_dir / 'audit.db').resolve()}"

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'kroonika.db').resolve()}"

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


def load_settings(**overrides: Any) -> Settings:
    """Environment first, then the TOML file named by ``KROONIKA_CONFIG_FILE`` for
    anything the environment leaves unset, then explicit overrides."""
    base = Settings(**overrides)
    if base.config_file is not None:
        try:
            data = tomllib.loads(base.config_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read config file {base.config_file}: {exc}") from exc
        env_set = {k[len("KROONIKA_") :].lower() for k in os.environ if k.startswith("KROONIKA_")}
        merged = {k: v for k, v in data.items() if k not in env_set}
        merged.update(overrides)
        base = Settings(**merged)
    return base
