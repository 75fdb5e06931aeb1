"""``mcep scoring``: train lead-score models on historical outcomes and show how they do."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mcep.scoring.dataset import load_csv
from mcep.scoring.errors import ScoringError, ScoringInputError
from mcep.scoring.metrics import Evaluation
from mcep.scoring.model import TrainedModel, dump_model
from mcep.scoring.registry import (
    MODEL_NAME,
    InMemoryModelRegistry,
    ModelRegistry,
    ModelVersionInfo,
)
from mcep.scoring.training import TrainingConfig, train_model

INPUT_ERROR = 2

# The composition root replaces this with the database-backed registry.
registry_factory: Callable[[], ModelRegistry] = InMemoryModelRegistry

app = typer.Typer(
    help="Lead scoring: train calibrated models on past outcomes and judge them on held-out rows.",
    no_args_is_help=True,
)


@app.callback()
def scoring() -> None:
    """Lead scoring models."""


@app.command("train-csv")
def train_csv(
    path: Path = typer.Argument(..., help="CSV of past outcomes, one row per prospect"),
    label: str = typer.Option(..., "--label", help="Column holding the outcome"),
    positive: str | None = typer.Option(
        None, "--positive", help="Outcome value that counts as a lead (inferred for yes/true/1)"
    ),
    drop: list[str] = typer.Option(
        [], "--drop", help="Column to leave out, e.g. one known only after the outcome (repeat)"
    ),
    sep: str = typer.Option(",", "--sep", help="Field separator (one character; \\t for tab)"),
    report: Path | None = typer.Option(None, "--report", help="Write the metrics as JSON here"),
    name: str = typer.Option(MODEL_NAME, "--name", help="Model family to register under"),
    promote: bool = typer.Option(False, "--promote", help="Make the new version the champion"),
    seed: int = typer.Option(0, "--seed", help="Seed for the split and the boosting"),
) -> None:
    """Train on a CSV, print hold-out metrics and calibration, and register the model.

    Bad input stops before anything is registered, with exit code 2.
    """
    console, errors = Console(), Console(stderr=True)
    try:
        _check_report_path(report)
        with errors.status("reading the table") as status:
            table = load_csv(path, label=label, positive=positive, drop=drop, sep=_separator(sep))
            model = train_model(
                table, config=TrainingConfig(seed=seed), progress=lambda m: status.update(m)
            )
    except ScoringInputError as exc:
        errors.print(f"[bold red]error:[/] {escape(exc.message)}")
        raise typer.Exit(INPUT_ERROR) from None
    registry = registry_factory()
    source = csv_source(
        path, label=table.label, positive=table.positive, rows=len(table.y), dropped=drop
    )
    info = registry.register(
        name, artifact=dump_model(model), metrics=model.summary_metrics(), source=source
    )
    refusal = _promote(registry, name, info.version) if promote else None
    _show(console, model, info, promoted=promote and refusal is None)
    if report is not None:
        _write_report(report, model.report(model_version=info.version), errors)
        console.print(f"report written to {escape(str(report))}")
    if refusal is not None:
        errors.print(f"[bold red]not promoted:[/] {escape(refusal)}")
        raise typer.Exit(INPUT_ERROR)


def _promote(registry: ModelRegistry, name: str, version: int) -> str | None:
    """Promote; the reason in words if the registry refuses."""
    try:
        registry.promote(name, version)
    except ScoringError as exc:
        return exc.message
    return None


def csv_source(
    path: Path, *, label: str, positive: str, rows: int, dropped: Sequence[str] = ()
) -> dict[str, object]:
    """Where a CSV-trained model's rows came from: the file's name, size and SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return {
        "kind": "csv",
        "file": path.name,
        "sha256": digest.hexdigest(),
        "rows": rows,
        "label": label,
        "positive": positive,
        "dropped": list(dropped),
    }


def _write_report(report: Path, document: dict[str, object], errors: Console) -> None:
    try:
        report.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    except OSError as exc:
        errors.print(f"[bold red]error:[/] could not write {escape(str(report))}: {exc.strerror}")
        raise typer.Exit(1) from None


def _separator(sep: str) -> str:
    value = {"\\t": "\t", "tab": "\t"}.get(sep, sep)
    if len(value) != 1:
        raise ScoringInputError(f"--sep must be a single character, got {sep!r}")
    return value


def _check_report_path(report: Path | None) -> None:
    """Refuse a report path that can't be written before spending time on training."""
    if report is None:
        return
    folder = report.parent
    if not folder.is_dir():
        raise ScoringInputError(f"--report {report}: folder {folder} does not exist")
    if report.is_dir() or not os.access(folder, os.W_OK):
        raise ScoringInputError(f"--report {report}: can't write a file there")


# --- output ------------------------------------------------------------------------------


def _show(console: Console, model: TrainedModel, info: ModelVersionInfo, *, promoted: bool) -> None:
    e, training = model.evaluation, model.info
    for note in training.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(_headline_table(e))
    console.print(_threshold_table(e))
    console.print(_calibration_table(e))
    losses = ", ".join(f"{k} {v:.4f}" for k, v in sorted(training.calibration_log_loss.items()))
    console.print(
        f"calibration: [bold]{training.calibration_method}[/] (validation log loss: {losses}); "
        f"{training.best_iteration} trees, {len(model.feature_names)} features"
    )
    state = "and promoted to champion" if promoted else "(not promoted)"
    console.print(f"registered [bold]{escape(info.name)}[/] version {info.version} {state}")


def _headline_table(e: Evaluation) -> Table:
    table = Table(title=f"Hold-out metrics ({e.n} rows, {e.positives} positive)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    low, high = e.roc_auc_ci95
    rows: Sequence[tuple[str, str]] = (
        ("ROC-AUC", f"{e.roc_auc:.4f}  (95% CI {low:.3f}-{high:.3f})"),
        ("PR-AUC", f"{e.pr_auc:.4f}  (base rate {e.positives / e.n:.4f})"),
        ("log loss", f"{e.log_loss:.4f}"),
        ("Brier score", f"{e.brier:.4f}"),
        ("accuracy at 50", f"{e.accuracy:.4f}"),
        ("calibration error (ECE)", f"{e.ece:.4f}"),
    )
    for row in rows:
        table.add_row(*row)
    return table


def _threshold_table(e: Evaluation) -> Table:
    table = Table(title="At the PM thresholds (score >= threshold counts as a lead)")
    for column in ("score >=", "flagged", "precision", "recall", "accuracy"):
        table.add_column(column, justify="right")
    for t in e.thresholds:
        precision = "-" if t.precision is None else f"{t.precision:.3f}"
        table.add_row(
            f"{100 * t.threshold:.0f}",
            str(t.flagged),
            precision,
            f"{t.recall:.3f}",
            f"{t.accuracy:.3f}",
        )
    return table


def _calibration_table(e: Evaluation) -> Table:
    table = Table(title="Calibration: predicted vs observed, by score band")
    for column in ("score band", "rows", "mean predicted", "observed rate"):
        table.add_column(column, justify="right")
    for b in e.calibration:
        table.add_row(
            f"{100 * b.lower:.0f}-{100 * b.upper:.0f}",
            str(b.count),
            "-" if b.mean_predicted is None else f"{b.mean_predicted:.3f}",
            "-" if b.observed_rate is None else f"{b.observed_rate:.3f}",
        )
    return table
