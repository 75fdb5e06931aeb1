"""Runtime configuration, read from the environment with the ``MCEP_`` prefix.

Nothing here opens a connection or touches the disk: the composition root (``mcep.app`` and the
CLI) builds engines, clients and keys from a :class:`Settings` value it is handed.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_database_url() -> str:
    return f"sqlite+aiosqlite:///{Path.cwd() / 'mcep.db'}"


class Settings(BaseSettings):
    """Every tunable of an MCEP process."""

    model_config = SettingsConfigDict(env_prefix="MCEP_", extra="ignore")

    database_url: str = Field(default_factory=_default_database_url)
    redis_url: str | None = None

    # Secrets. ``master_key`` (32 bytes, urlsafe base64) wraps the per-prospect data keys; when
    # it is not set the embedded default keeps one in ``key_file`` beside the database.
    master_key: SecretStr | None = None
    key_file: Path = Field(default_factory=lambda: Path.cwd() / "mcep.key")
    jwt_secret: SecretStr | None = None

    # The Meta app's secret (signs WhatsApp webhooks) and the verify token of its subscription.
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    # Where providers reach this API, for the webhooks MCEP registers (Telegram, BlueBubbles).
    public_url: str | None = None

    access_token_minutes: int = 15
    refresh_token_days: int = 14
    login_rate_limit: str = "5/minute"

    default_phone_region: str | None = None

    host: str = "127.0.0.1"
    port: int = 8000

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
