"""The models a process holds in memory: the champions, swapped atomically when they change.

Every process (each worker, each API server) keeps a :class:`ModelCache`. ``champions()``
answers from memory while its snapshot is younger than ``max_age`` seconds; after that it runs
one cheap query over ``model_champions`` (a few rows) and, only when a scope points at another
version, loads that artifact and replaces the snapshot with one reference assignment. A caller
that took a :class:`Champions` snapshot keeps scoring a whole batch with the same models, and a
version that fails to load leaves the previous champion in charge of its scope.

Artifacts never change once registered, so scorers are also cached by version id, for
explanations of scores given by a version that is no longer champion.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.scoring.errors import ScoringError
from mcep.scoring.model import Scorer
from mcep.scoring.models import GLOBAL_SCOPE, ModelChampion, ModelVersion
from mcep.scoring.registry import MODEL_NAME
from mcep.scoring.store import pm_scope

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A registered version, ready to score."""

    version_id: int
    name: str
    version: int
    scorer: Scorer


@dataclass(frozen=True, slots=True)
class Champions:
    """An immutable snapshot: the champion of each scope."""

    by_scope: Mapping[str, LoadedModel] = field(default_factory=lambda: MappingProxyType({}))

    def for_pm(self, pm_id: uuid.UUID) -> LoadedModel | None:
        """The PM's own champion if it has one, else the global one, else none."""
        return self.by_scope.get(pm_scope(pm_id)) or self.by_scope.get(GLOBAL_SCOPE)

    def version_ids(self) -> dict[str, int]:
        return {scope: m.version_id for scope, m in self.by_scope.items()}

    def __bool__(self) -> bool:
        return bool(self.by_scope)


class ModelCache:
    """Champions and scorers of one model family, for one process."""

    def __init__(
        self,
        name: str = MODEL_NAME,
        *,
        max_age: float = 5.0,
        keep: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._max_age = max_age
        self._keep = keep
        self._clock = clock
        self._checked_at: float | None = None
        self._champions = Champions()
        self._scorers: OrderedDict[int, LoadedModel] = OrderedDict()

    @property
    def current(self) -> Champions:
        """The snapshot in memory, without asking the database."""
        return self._champions

    async def champions(self, session: AsyncSession, *, force: bool = False) -> Champions:
        """The champions, re-checked in the database when the snapshot is older than
        ``max_age`` (or when ``force``)."""
        now = self._clock()
        fresh = self._checked_at is not None and now - self._checked_at < self._max_age
        if fresh and not force:
            return self._champions
        rows = await session.execute(
            select(ModelChampion.scope, ModelChampion.version_id).where(
                ModelChampion.name == self.name
            )
        )
        wanted = dict(rows.all())
        if wanted != self._champions.version_ids():
            self._champions = await self._swap(session, wanted)
        self._checked_at = now
        return self._champions

    async def model(self, session: AsyncSession, version_id: int) -> LoadedModel | None:
        """A version's scorer by row id (cached; artifacts never change); ``None`` if it
        doesn't exist or doesn't load."""
        cached = self._scorers.get(version_id)
        if cached is not None:
            self._scorers.move_to_end(version_id)
            return cached
        loaded = await self._load(session, [version_id])
        return loaded.get(version_id)

    async def _swap(self, session: AsyncSession, wanted: Mapping[str, int]) -> Champions:
        missing = [v for v in set(wanted.values()) if v not in self._scorers]
        loaded = {**self._scorers, **(await self._load(session, missing))}
        by_scope: dict[str, LoadedModel] = {}
        for scope, version_id in wanted.items():
            model = loaded.get(version_id) or self._champions.by_scope.get(scope)
            if model is not None:
                by_scope[scope] = model
        log.info("champions now %s", {s: f"v{m.version}" for s, m in by_scope.items()})
        return Champions(MappingProxyType(by_scope))

    async def _load(self, session: AsyncSession, version_ids: list[int]) -> dict[int, LoadedModel]:
        if not version_ids:
            return {}
        rows = await session.execute(
            select(
                ModelVersion.id, ModelVersion.name, ModelVersion.version, ModelVersion.artifact
            ).where(ModelVersion.id.in_(version_ids))
        )
        loaded: dict[int, LoadedModel] = {}
        for version_id, name, version, artifact in rows:
            try:
                scorer = Scorer.from_artifact(artifact)
            except ScoringError as exc:
                log.error(
                    "model %s v%s does not load; keeping what we have: %s", name, version, exc
                )
                continue
            loaded[version_id] = LoadedModel(version_id, name, version, scorer)
            self._remember(loaded[version_id])
        return loaded

    def _remember(self, model: LoadedModel) -> None:
        self._scorers[model.version_id] = model
        self._scorers.move_to_end(model.version_id)
        in_use = set(self._champions.version_ids().values())
        while len(self._scorers) > self._keep:
            oldest = next(iter(self._scorers))
            if oldest in in_use:
                self._scorers.move_to_end(oldest)
                in_use.discard(oldest)  # never spin: evict it next time round if still over
                continue
            del self._scorers[oldest]
