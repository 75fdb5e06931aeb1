"""The model registry in the database, and the rules for who may be champion.

:class:`DatabaseModelRegistry` works in the caller's session and only flushes: the request,
the job or the CLI command that uses it commits. Every registration, promotion and rollback
appends an audit entry in the same transaction.

Scopes: ``global`` is the default champion; ``pm:<uuid>`` overrides it for one PM's prospects
(a PM group of one, until PM groups exist). A prospect is scored by its PM's champion if there
is one, otherwise by the global one.

A version may become champion only if its artifact loads and it reads at least one
engagement feature: a model trained on other columns (the bank marketing table, say) would give
every prospect the same score, so promoting it is refused with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.auth.models import PortfolioManager
from mcep.scoring.errors import (
    ModelNotUsable,
    ModelVersionNotFound,
    RollbackUnavailable,
    ScoringError,
)
from mcep.scoring.features import FEATURE_NAMES
from mcep.scoring.model import load_model
from mcep.scoring.models import GLOBAL_SCOPE, ModelChampion, ModelPromotion, ModelVersion
from mcep.scoring.registry import ModelVersionInfo

T = TypeVar("T")
# Any fixed 64-bit number: serialises registry changes (numbering, the promotion stack).
_REGISTRY_LOCK = 0x6D636570_6D6F646C
_PM_PREFIX = "pm:"


def parse_scope(scope: str) -> str:
    """``global`` or ``pm:<uuid>``, normalised; anything else is a :class:`ModelNotUsable`."""
    value = scope.strip().lower()
    if value == GLOBAL_SCOPE:
        return value
    if value.startswith(_PM_PREFIX):
        try:
            return _PM_PREFIX + str(uuid.UUID(value.removeprefix(_PM_PREFIX)))
        except ValueError:
            pass
    raise ModelNotUsable(f"scope {scope!r}: use 'global' or 'pm:<PM id>'")


def pm_scope(pm_id: uuid.UUID) -> str:
    return f"{_PM_PREFIX}{pm_id}"


def artifact_features(artifact: bytes) -> tuple[str, ...]:
    """The input names an artifact declares, without building its booster."""
    try:
        columns = json.loads(artifact)["schema"]["columns"]
        return tuple(str(c["name"]) for c in columns)
    except (ValueError, KeyError, TypeError):
        return ()


def check_promotable(artifact: bytes, *, version: int) -> None:
    """Refuse a version that can't score prospects: unloadable, or no engagement inputs."""
    try:
        model = load_model(artifact)
    except ScoringError as exc:
        raise ModelNotUsable(f"version {version} can't be loaded: {exc.message}") from None
    names = model.feature_names
    known = set(FEATURE_NAMES)
    if not any(n in known or n.startswith("attr_") for n in names):
        shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        raise ModelNotUsable(
            f"version {version} reads none of the prospect engagement features (its inputs: "
            f"{shown}); every prospect would get the same score. Train it on engagement "
            "features (advisor feedback, or a CSV with columns such as contacts_sent, "
            "reply_rate, intent_interest) to make it a champion"
        )


def _info(row: ModelVersion) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=row.name,
        version=row.version,
        created_at=row.created_at,
        metrics=MappingProxyType(dict(row.metrics)),
        sha256=row.sha256,
        size=row.size,
        features=tuple(row.features),
        source=MappingProxyType(dict(row.source)),
        created_by=row.created_by,
        id=row.id,
    )


class DatabaseModelRegistry:
    """Model versions, champions and promotions in the caller's session (flush, never commit)."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        actor: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._session = session
        self._actor = actor
        self._clock = clock

    async def register(
        self,
        name: str,
        *,
        artifact: bytes,
        metrics: Mapping[str, float],
        source: Mapping[str, object] | None = None,
    ) -> ModelVersionInfo:
        """Store a new version, one past the family's latest; audited, not promoted."""
        await self._lock()
        latest = await self._session.scalar(
            select(func.max(ModelVersion.version)).where(ModelVersion.name == name)
        )
        row = ModelVersion(
            name=name,
            version=(latest or 0) + 1,
            features=list(artifact_features(artifact)),
            source=dict(source or {}),
            metrics=dict(metrics),
            created_by=self._actor,
            artifact=artifact,
            sha256=hashlib.sha256(artifact).hexdigest(),
            size=len(artifact),
            created_at=self._clock(),
        )
        self._session.add(row)
        await self._session.flush()
        await self._audit("model.registered", row, {"metrics": dict(metrics), **row.source})
        return _info(row)

    async def versions(
        self, name: str, *, limit: int = 100, offset: int = 0
    ) -> tuple[list[ModelVersionInfo], int]:
        """A page of a family's versions, newest first, and how many there are."""
        where = ModelVersion.name == name
        total = await self._session.scalar(select(func.count()).where(where)) or 0
        rows = await self._session.scalars(
            select(ModelVersion)
            .where(where)
            .order_by(ModelVersion.version.desc())
            .limit(limit)
            .offset(offset)
        )
        return [_info(r) for r in rows], total

    async def get(self, name: str, version: int) -> ModelVersionInfo:
        return _info(await self._version(name, version))

    async def artifact(self, name: str, version: int) -> bytes:
        return (await self._version(name, version)).artifact

    async def champions(self, name: str) -> dict[str, ModelVersionInfo]:
        """The champion of each scope that has one."""
        rows = await self._session.execute(
            select(ModelChampion.scope, ModelVersion)
            .join(ModelVersion, ModelVersion.id == ModelChampion.version_id)
            .where(ModelChampion.name == name)
        )
        return {scope: _info(version) for scope, version in rows}

    async def champion(self, name: str, scope: str = GLOBAL_SCOPE) -> ModelVersionInfo | None:
        return (await self.champions(name)).get(parse_scope(scope))

    async def promote(
        self, name: str, version: int, *, scope: str = GLOBAL_SCOPE, reason: str | None = None
    ) -> ModelVersionInfo:
        """Make ``version`` the champion of ``scope``; promoting the champion changes nothing."""
        scope = parse_scope(scope)
        await self._lock()
        row = await self._version(name, version)
        current = await self._session.get(ModelChampion, (name, scope))
        if current is not None and current.version_id == row.id:
            return _info(row)
        check_promotable(row.artifact, version=version)
        await self._check_scope_exists(scope)
        now = self._clock()
        self._session.add(
            ModelPromotion(
                name=name, scope=scope, version_id=row.id, promoted_at=now, promoted_by=self._actor
            )
        )
        previous = await self._set_champion(name, scope, row.id, now=now)
        details: dict[str, Any] = {"scope": scope, "previous_version": previous}
        if reason:
            details["reason"] = reason
        await self._audit("model.promoted", row, details)
        return _info(row)

    async def rollback(self, name: str, *, scope: str = GLOBAL_SCOPE) -> ModelVersionInfo:
        """Reinstate the champion before the current one in ``scope``."""
        scope = parse_scope(scope)
        await self._lock()
        live = list(
            await self._session.scalars(
                select(ModelPromotion)
                .where(
                    ModelPromotion.name == name,
                    ModelPromotion.scope == scope,
                    ModelPromotion.rolled_back_at.is_(None),
                )
                .order_by(ModelPromotion.id.desc())
                .limit(2)
            )
        )
        if len(live) < 2:
            raise RollbackUnavailable(
                f"model {name!r} has no earlier champion to go back to in scope {scope!r}"
            )
        latest, earlier = live
        now = self._clock()
        latest.rolled_back_at, latest.rolled_back_by = now, self._actor
        previous = await self._set_champion(name, scope, earlier.version_id, now=now)
        row = await self._session.get_one(ModelVersion, earlier.version_id)
        await self._audit("model.rolled_back", row, {"scope": scope, "from_version": previous})
        return _info(row)

    # --- helpers ---------------------------------------------------------------------------

    async def _version(self, name: str, version: int) -> ModelVersion:
        row = await self._session.scalar(
            select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
        )
        if row is None:
            raise ModelVersionNotFound(f"model {name!r} has no version {version}")
        return row

    async def _set_champion(
        self, name: str, scope: str, version_id: int, *, now: datetime
    ) -> int | None:
        """Point the scope at ``version_id``; returns the version number it replaced."""
        current = await self._session.get(ModelChampion, (name, scope))
        previous = None
        if current is None:
            self._session.add(
                ModelChampion(
                    name=name,
                    scope=scope,
                    version_id=version_id,
                    changed_at=now,
                    changed_by=self._actor,
                )
            )
        else:
            previous = await self._session.scalar(
                select(ModelVersion.version).where(ModelVersion.id == current.version_id)
            )
            current.version_id, current.changed_at, current.changed_by = (
                version_id,
                now,
                self._actor,
            )
        await self._session.flush()
        return previous

    async def _check_scope_exists(self, scope: str) -> None:
        if scope == GLOBAL_SCOPE:
            return
        pm_id = uuid.UUID(scope.removeprefix(_PM_PREFIX))
        if await self._session.get(PortfolioManager, pm_id) is None:
            raise ModelNotUsable(f"scope {scope!r}: no such PM")

    async def _lock(self) -> None:
        bind = self._session.bind
        if bind is not None and bind.dialect.name == "postgresql":
            await self._session.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _REGISTRY_LOCK}
            )

    async def _audit(self, action: str, row: ModelVersion, details: Mapping[str, Any]) -> None:
        await audit.append(
            self._session,
            actor=self._actor,
            action=action,
            object_type="model_version",
            object_id=f"{row.name}:{row.version}",
            details={"model_version_id": row.id, "sha256": row.sha256, **details},
        )


# --- the synchronous face, for the CLI ---------------------------------------------------


SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]


class SyncModelRegistry:
    """:class:`mcep.scoring.registry.ModelRegistry` over the database, for synchronous callers.

    Each call is its own transaction, committed when it returns: ``open_session`` is an async
    context manager factory yielding a session inside a transaction (the CLI's edge).
    """

    def __init__(self, open_session: SessionFactory, *, actor: str) -> None:
        self._open = open_session
        self._actor = actor

    def register(
        self,
        name: str,
        *,
        artifact: bytes,
        metrics: Mapping[str, float],
        source: Mapping[str, object] | None = None,
    ) -> ModelVersionInfo:
        return self._run(
            lambda r: r.register(name, artifact=artifact, metrics=metrics, source=source)
        )

    def artifact(self, name: str, version: int) -> bytes:
        return self._run(lambda r: r.artifact(name, version))

    def champion(self, name: str) -> ModelVersionInfo | None:
        return self._run(lambda r: r.champion(name))

    def promote(self, name: str, version: int) -> ModelVersionInfo:
        return self._run(lambda r: r.promote(name, version))

    def rollback(self, name: str) -> ModelVersionInfo:
        return self._run(lambda r: r.rollback(name))

    def _run(self, call: Callable[[DatabaseModelRegistry], Coroutine[Any, Any, T]]) -> T:
        async def work() -> T:
            async with self._open() as session:
                return await call(DatabaseModelRegistry(session, actor=self._actor))

        return asyncio.run(work())
