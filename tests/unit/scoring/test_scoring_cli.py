"""``scoring train-csv`` through Typer's runner: the happy path and every refusal."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mcep.scoring import cli
from mcep.scoring.model import Scorer
from mcep.scoring.registry import InMemoryModelRegistry

runner = CliRunner()
REPORT_KEYS = {"roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "calibration", "model_version"}


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> InMemoryModelRegistry:
    """The registry the command will get from its hook."""
    shared = InMemoryModelRegistry()
    monkeypatch.setattr(cli, "registry_factory", lambda: shared)
    return shared


def test_train_csv_prints_metrics_writes_the_report_and_registers(
    synthetic_csv: Path, tmp_path: Path, registry: InMemoryModelRegistry
) -> None:
    report = tmp_path / "report.json"
    result = runner.invoke(
        cli.app,
        ["train-csv", str(synthetic_csv), "--label", "converted", "--positive", "yes",
         "--drop", "noise", "--report", str(report)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for heading in ("ROC-AUC", "PR-AUC", "log loss", "Brier", "Calibration", "score >="):
        assert heading in result.output
    assert "registered lead-score version 1" in result.output
    document = json.loads(report.read_text())
    assert set(document) >= REPORT_KEYS
    assert document["model_version"] == 1
    assert len(document["calibration"]) == 10
    assert "noise" not in {f["name"] for f in document["features"]}
    [info] = registry.versions("lead-score")
    assert info.metrics["roc_auc"] == document["roc_auc"]
    assert registry.champion("lead-score") is None


def test_the_registered_artifact_scores(
    synthetic_csv: Path, registry: InMemoryModelRegistry
) -> None:
    args = ["train-csv", str(synthetic_csv), "--label", "converted", "--promote", "--name", "x"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    champion = registry.champion("x")
    assert champion is not None and champion.version == 1
    scorer = Scorer.from_artifact(registry.artifact("x", 1))
    score = scorer.score({"replies": 5, "days_since": 2, "channel": "whatsapp"})
    assert 50 < score.score <= 100 and len(score.contributions) > 0


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "input.csv"
    path.write_text(text)
    return path


CONSTANT = "a,converted\n" + "".join(f"{i},no\n" for i in range(40))


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda csv, tmp: [csv, "--label", "outcome"], "label column 'outcome' not found"),
        (lambda csv, tmp: [write(tmp, CONSTANT), "--label", "converted"], "single value ('no')"),
        (
            lambda csv, tmp: [csv, "--label", "converted", "--drop", "duration"],
            "--drop 'duration': no such column",
        ),
        (
            lambda csv, tmp: [csv, "--label", "converted", "--positive", "won"],
            "positive value 'won' not found",
        ),
        (lambda csv, tmp: [write(tmp, ""), "--label", "converted"], "is empty"),
        (lambda csv, tmp: [tmp / "absent.csv", "--label", "converted"], "no such file"),
        (lambda csv, tmp: [csv, "--label", "converted", "--sep", ";;"], "single character"),
        (
            lambda csv, tmp: [csv, "--label", "converted", "--report", tmp / "no" / "r.json"],
            "does not exist",
        ),
    ],
    ids=["no-label", "constant", "unknown-drop", "positive", "empty", "absent", "sep", "report"],
)
def test_bad_input_exits_2_with_a_clear_message_and_registers_nothing(
    synthetic_csv: Path,
    tmp_path: Path,
    registry: InMemoryModelRegistry,
    make_args: Callable[[Path, Path], list[object]],
    message: str,
) -> None:
    args = [str(a) for a in make_args(synthetic_csv, tmp_path)]
    result = runner.invoke(cli.app, ["train-csv", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())  # Rich may wrap long lines
    assert registry.versions("lead-score") == []
    assert not (tmp_path / "no").exists()


def test_missing_label_lists_the_available_columns(
    synthetic_csv: Path, registry: InMemoryModelRegistry
) -> None:
    result = runner.invoke(cli.app, ["train-csv", str(synthetic_csv), "--label", "y"])
    assert result.exit_code == 2
    assert "prospect_id, replies, days_since, channel, noise, converted" in " ".join(
        result.output.split()
    )


def test_tab_separator_is_understood(tmp_path: Path, registry: InMemoryModelRegistry) -> None:
    rng = np.random.default_rng(0)
    lines = ["x\ty"] + [
        f"{v:.3f}\t{'yes' if v + rng.normal() > 0 else 'no'}" for v in rng.normal(size=400)
    ]
    path = write(tmp_path, "\n".join(lines))
    result = runner.invoke(cli.app, ["train-csv", str(path), "--label", "y", "--sep", "\\t"])
    assert result.exit_code == 0, result.output
    assert len(registry.versions("lead-score")) == 1
