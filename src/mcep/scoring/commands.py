"""``mcep scoring``: the lead-scoring commands, wired to the database.

``train-csv`` (see :mod:`mcep.scoring.cli`) registers into the database here; ``train-feedback``
trains on advisors' verdicts; ``models list|promote|rollback`` govern the registry. Every
registry change is audited with the actor ``cli:<login>``.

How a first champion comes about: the scoring job leaves scores empty until one exists.
``mcep scoring train-feedback`` learns one from advisor feedback (at least 20 verdicts of each
kind); ``mcep scoring train-csv FILE --label ... --promote`` does from an exported history whose
columns are engagement features (``contacts_sent``, ``reply_rate``, ``intent_interest``, ...).
A table of other columns (the bank marketing one, say) is registered and reported on, but
refused as a champion: prospects don't have its inputs, so all would score the same.
"""

from __future__ import annotations

import getpass
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.cli.common import console, open_runtime, run
from mcep.scoring import cli
from mcep.scoring.models import GLOBAL_SCOPE
from mcep.scoring.registry import MODEL_NAME, ModelVersionInfo
from mcep.scoring.retraining import RetrainResult
from mcep.scoring.settings import ScoringSettings
from mcep.scoring.store import DatabaseModelRegistry, SyncModelRegistry
from mcep.scoring.tasks import train_on_feedback
from mcep.scoring.training import TrainingConfig
from mcep.settings import Settings

app = typer.Typer(
    help="Lead scoring: train models, register them in the database, promote and roll back.",
    no_args_is_help=True,
)
models_app = typer.Typer(help="The model registry: versions and champions.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def cli_actor() -> str:
    """How the audit chain names whoever ran the command."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


@asynccontextmanager
async def _transaction(settings: Settings) -> AsyncIterator[AsyncSession]:
    async with (
        open_runtime(settings, upgrade=True) as runtime,
        runtime.sessions() as session,
        session.begin(),
    ):
        yield session


def database_registry() -> SyncModelRegistry:
    """The registry ``train-csv`` registers into: the configured database."""
    settings = Settings()
    return SyncModelRegistry(lambda: _transaction(settings), actor=cli_actor())


@app.callback()
def scoring() -> None:
    """Lead scoring models, kept in the database."""
    cli.registry_factory = database_registry


app.command("train-csv")(cli.train_csv)


@app.command("train-feedback")
def train_feedback(
    min_gain: float = typer.Option(
        0.01, "--min-gain", help="ROC-AUC the challenger must gain over the champion"
    ),
    min_auc: float = typer.Option(
        0.6, "--min-auc", help="ROC-AUC a first champion must reach when there is none"
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for the split and the boosting"),
) -> None:
    """Train a challenger on advisor feedback; promote it only if it beats the champion."""
    settings = ScoringSettings(retrain_min_gain=min_gain, retrain_min_auc=min_auc)

    async def work() -> RetrainResult:
        async with open_runtime(upgrade=True) as runtime:
            return await train_on_feedback(
                runtime, settings, config=TrainingConfig(seed=seed), actor=cli_actor()
            )

    with console.status("training on advisor feedback"):
        result = run(work())
    c = result.comparison
    console.print(
        f"registered {MODEL_NAME} version {result.version} "
        f"({'promoted' if result.promoted else 'not promoted'}): {escape(c.reason)}"
    )
    console.print(
        f"hold-out: {c.holdout_rows} rows, {c.holdout_positives} positive; "
        f"challenger ROC-AUC {c.challenger['roc_auc']:.4f}"
        + (f", champion v{c.champion_version} {c.champion['roc_auc']:.4f}" if c.champion else "")
    )


# --- models --------------------------------------------------------------------------------


@models_app.command("list")
def list_models(
    name: str = typer.Option(MODEL_NAME, "--name", help="Model family"),
    limit: int = typer.Option(20, "--limit", min=1, max=500, help="How many, newest first"),
) -> None:
    """Registered versions with their hold-out metrics and the scopes they are champion of."""

    async def work() -> tuple[list[ModelVersionInfo], dict[str, ModelVersionInfo]]:
        async with _transaction(Settings()) as session:
            registry = DatabaseModelRegistry(session, actor=cli_actor())
            versions, _ = await registry.versions(name, limit=limit)
            return versions, await registry.champions(name)

    versions, champions = run(work())
    table = Table(title=f"{name}: {len(versions)} most recent versions")
    for column in ("version", "created", "by", "source", "ROC-AUC", "log loss", "champion of"):
        table.add_column(column)
    for v in versions:
        scopes = ", ".join(sorted(s for s, c in champions.items() if c.id == v.id))
        table.add_row(
            str(v.version),
            v.created_at.strftime("%Y-%m-%d %H:%M"),
            escape(v.created_by),
            escape(str(v.source.get("file") or v.source.get("kind") or "-")),
            _number(v.metrics.get("roc_auc")),
            _number(v.metrics.get("log_loss")),
            scopes or "-",
        )
    console.print(table)


@models_app.command("promote")
def promote(
    version: int = typer.Argument(..., min=1, help="Version number to make champion"),
    scope: str = typer.Option(GLOBAL_SCOPE, "--scope", help="global or pm:<PM id>"),
    reason: str | None = typer.Option(None, "--reason", help="Why, for the audit trail"),
    name: str = typer.Option(MODEL_NAME, "--name", help="Model family"),
) -> None:
    """Make a version the champion of a scope (audited)."""

    async def work() -> ModelVersionInfo:
        async with _transaction(Settings()) as session:
            registry = DatabaseModelRegistry(session, actor=cli_actor())
            return await registry.promote(name, version, scope=scope, reason=reason)

    info = run(work())
    console.print(f"{escape(name)} version {info.version} is now champion of {escape(scope)}")


@models_app.command("rollback")
def rollback(
    scope: str = typer.Option(GLOBAL_SCOPE, "--scope", help="global or pm:<PM id>"),
    name: str = typer.Option(MODEL_NAME, "--name", help="Model family"),
) -> None:
    """Reinstate the previous champion of a scope (audited)."""

    async def work() -> ModelVersionInfo:
        async with _transaction(Settings()) as session:
            return await DatabaseModelRegistry(session, actor=cli_actor()).rollback(
                name, scope=scope
            )

    info = run(work())
    console.print(f"{escape(name)} version {info.version} is champion of {escape(scope)} again")


def _number(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"
