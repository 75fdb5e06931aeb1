"""Password hashing, JWTs and API-key secrets."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mcep.errors import Unauthorized

_hasher = PasswordHasher()
# A real hash to verify against when the e-mail is unknown, so timing does not tell.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))

TokenType = Literal["access", "refresh"]
API_KEY_PREFIX = "mcep_"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    token_type: TokenType
    jti: str
    expires_at: datetime


class TokenSigner:
    """Issues and checks HS256 JWTs with one secret."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def issue(self, user_id: uuid.UUID, token_type: TokenType, ttl: timedelta) -> TokenClaims:
        now = datetime.now(UTC)
        return TokenClaims(user_id, token_type, secrets.token_hex(16), now + ttl)

    def encode(self, claims: TokenClaims) -> str:
        payload: dict[str, Any] = {
            "sub": str(claims.user_id),
            "typ": claims.token_type,
            "jti": claims.jti,
            "exp": claims.expires_at,
        }
        return jwt.encode(payload, self._secret, algorithm="HS256")

    def decode(self, token: str, expected: TokenType) -> TokenClaims:
        try:
            payload = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
            )
            claims = TokenClaims(
                uuid.UUID(payload["sub"]),
                payload["typ"],
                payload["jti"],
                datetime.fromtimestamp(payload["exp"], UTC),
            )
        except (jwt.PyJWTError, KeyError, ValueError) as exc:
            raise Unauthorized("the token is invalid or has expired") from exc
        if claims.token_type != expected:
            raise Unauthorized(f"a {expected} token is required here")
        return claims


@dataclass(frozen=True, slots=True)
class NewApiKey:
    secret: str
    prefix: str
    key_hash: str


def new_api_key() -> NewApiKey:
    """A 256-bit random key; its prefix finds the row, its SHA-256 proves possession."""
    body = secrets.token_urlsafe(32)
    prefix = body[:12]
    secret = f"{API_KEY_PREFIX}{body}"
    return NewApiKey(secret=secret, prefix=prefix, key_hash=hash_api_key(secret))


def hash_api_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_prefix(secret: str) -> str | None:
    if not secret.startswith(API_KEY_PREFIX) or len(secret) < len(API_KEY_PREFIX) + 12:
        return None
    return secret[len(API_KEY_PREFIX) : len(API_KEY_PREFIX) + 12]
