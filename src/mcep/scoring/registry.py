"""Where trained models are kept, and which one is in charge.

A model family (``name``, e.g. ``lead-score``) has numbered versions, each an immutable
artifact (see :func:`mcep.scoring.model.dump_model`) with its hold-out metrics. At most one
version is the champion, the one that scores prospects. Promoting a version remembers the
champion it replaced, so ``rollback`` can go back one step at a time.

:class:`InMemoryModelRegistry` is the fake that ships with the package, for tests and for the
CLI when no database is configured; :mod:`mcep.scoring.store` keeps them in the database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Protocol

from mcep.scoring.errors import ModelVersionNotFound, RollbackUnavailable

MODEL_NAME = "lead-score"
"""The model family that scores prospects."""


@dataclass(frozen=True, slots=True)
class ModelVersionInfo:
    """One registered version: what it is, when it came, how it did on held-out data."""

    name: str
    version: int
    created_at: datetime
    metrics: Mapping[str, float]
    sha256: str
    size: int
    features: tuple[str, ...] = ()
    source: Mapping[str, object] = field(default_factory=dict)
    created_by: str = "system"
    id: int | None = None
    """The database row id (``None`` in memory)."""


class ModelRegistry(Protocol):
    """Keeps model artifacts by family and version, and which version is the champion."""

    def register(
        self,
        name: str,
        *,
        artifact: bytes,
        metrics: Mapping[str, float],
        source: Mapping[str, object] | None = None,
    ) -> ModelVersionInfo:
        """Store a new version (numbered one past the latest); it is not promoted.

        ``source`` says where the training rows came from (a file's name and hash, say).
        """
        ...

    def artifact(self, name: str, version: int) -> bytes:
        """The stored bytes of a version; :class:`ModelVersionNotFound` if there's none."""
        ...

    def champion(self, name: str) -> ModelVersionInfo | None:
        """The version that scores prospects now, if any was promoted."""
        ...

    def promote(self, name: str, version: int) -> ModelVersionInfo:
        """Make ``version`` the champion, remembering the one it replaces."""
        ...

    def rollback(self, name: str) -> ModelVersionInfo:
        """Reinstate the champion before the current one; :class:`RollbackUnavailable` if none."""
        ...


@dataclass(slots=True)
class _Family:
    versions: dict[int, tuple[ModelVersionInfo, bytes]] = field(default_factory=dict)
    champions: list[int] = field(default_factory=list)


class InMemoryModelRegistry:
    """A :class:`ModelRegistry` held in a dict; ``clock`` stamps ``created_at``."""

    def __init__(self, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._families: dict[str, _Family] = {}

    def register(
        self,
        name: str,
        *,
        artifact: bytes,
        metrics: Mapping[str, float],
        source: Mapping[str, object] | None = None,
    ) -> ModelVersionInfo:
        family = self._families.setdefault(name, _Family())
        info = ModelVersionInfo(
            name=name,
            version=max(family.versions, default=0) + 1,
            created_at=self._clock(),
            metrics=MappingProxyType(dict(metrics)),
            sha256=hashlib.sha256(artifact).hexdigest(),
            size=len(artifact),
            source=MappingProxyType(dict(source or {})),
        )
        family.versions[info.version] = (info, bytes(artifact))
        return info

    def versions(self, name: str) -> list[ModelVersionInfo]:
        """Every version of a family, oldest first."""
        family = self._families.get(name, _Family())
        return [info for info, _ in sorted(family.versions.values(), key=lambda v: v[0].version)]

    def artifact(self, name: str, version: int) -> bytes:
        return self._entry(name, version)[1]

    def champion(self, name: str) -> ModelVersionInfo | None:
        family = self._families.get(name)
        if family is None or not family.champions:
            return None
        return family.versions[family.champions[-1]][0]

    def promote(self, name: str, version: int) -> ModelVersionInfo:
        info = self._entry(name, version)[0]
        champions = self._families[name].champions
        if not champions or champions[-1] != version:
            champions.append(version)
        return info

    def rollback(self, name: str) -> ModelVersionInfo:
        family = self._families.get(name)
        if family is None or len(family.champions) < 2:
            raise RollbackUnavailable(f"model {name!r} has no earlier champion to go back to")
        family.champions.pop()
        return family.versions[family.champions[-1]][0]

    def _entry(self, name: str, version: int) -> tuple[ModelVersionInfo, bytes]:
        family = self._families.get(name)
        if family is None or version not in family.versions:
            raise ModelVersionNotFound(f"model {name!r} has no version {version}")
        return family.versions[version]
