"""The composition root: everything a process builds once at start-up and hands on."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path

from limits import parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.limits import RateLimitItem
from limits.storage import storage_from_string
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mcep.auth.security import TokenSigner
from mcep.contacts.crypto import Keyring, decode_master_key, derive_key, new_master_key
from mcep.db.engine import create_engine, create_sessionmaker
from mcep.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    keyring: Keyring
    signer: TokenSigner
    limiter_storage: Storage
    login_limit: RateLimitItem
    login_limiter: MovingWindowRateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.login_limiter = MovingWindowRateLimiter(self.limiter_storage)

    async def aclose(self) -> None:
        await self.engine.dispose()


def load_master_key(settings: Settings) -> bytes:
    """The configured master key, or the embedded default's key file (created on first use)."""
    if settings.master_key is not None:
        return decode_master_key(settings.master_key.get_secret_value())
    path: Path = settings.key_file
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(new_master_key())
    return decode_master_key(path.read_text())


def build_runtime(settings: Settings) -> Runtime:
    master = load_master_key(settings)
    jwt_secret = (
        settings.jwt_secret.get_secret_value()
        if settings.jwt_secret
        else base64.urlsafe_b64encode(derive_key(master, "mcep:jwt")).decode()
    )
    engine = create_engine(settings.database_url)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=create_sessionmaker(engine),
        keyring=Keyring(master),
        signer=TokenSigner(jwt_secret),
        limiter_storage=_limiter_storage(settings),
        login_limit=parse(settings.login_rate_limit),
    )


def _limiter_storage(settings: Settings) -> Storage:
    if settings.redis_url:
        storage = storage_from_string(f"async+{settings.redis_url}", implementation="redispy")
        assert isinstance(storage, Storage)
        return storage
    return MemoryStorage()
