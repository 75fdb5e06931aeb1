"""A synthetic outcomes table whose true probabilities are known, and a model trained on it."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

from mcep.scoring.dataset import LabelledTable, load_csv
from mcep.scoring.model import TrainedModel
from mcep.scoring.training import TrainingConfig, train_model

ROWS = 8000
CHANNELS = ("whatsapp", "telegram", "signal")
CHANNEL_EFFECT = {"whatsapp": 0.8, "telegram": 0.0, "signal": -0.8, "unknown": 0.3}


def true_probability(replies: float, days: float, channel: str) -> float:
    """The chance of conversion the synthetic rows are drawn from."""
    return float(expit(-2.0 + 0.9 * replies - 0.05 * days + CHANNEL_EFFECT[channel]))


def write_synthetic_csv(path: Path, *, rows: int = ROWS, seed: int = 7) -> list[float]:
    """Write the table; returns each row's true probability, in file order."""
    rng = np.random.default_rng(seed)
    truths = []
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prospect_id", "replies", "days_since", "channel", "noise", "converted"])
        for i in range(rows):
            replies = int(rng.poisson(1.5))
            days = float(rng.uniform(0, 60))
            channel = str(rng.choice([*CHANNELS, "unknown"], p=[0.35, 0.3, 0.25, 0.1]))
            p = true_probability(replies, days, channel)
            truths.append(p)
            converted = "yes" if rng.random() < p else "no"
            # Some cells are placeholders, as in real exports.
            days_cell = "n/a" if rng.random() < 0.03 else f"{days:.2f}"
            writer.writerow([f"p{i:05d}", replies, days_cell, channel, rng.normal(), converted])
    return truths


@pytest.fixture(scope="session")
def synthetic_rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    """The synthetic CSV and each row's true probability."""
    path = tmp_path_factory.mktemp("scoring") / "outcomes.csv"
    return path, write_synthetic_csv(path)


@pytest.fixture(scope="session")
def synthetic_csv(synthetic_rows: tuple[Path, list[float]]) -> Path:
    return synthetic_rows[0]


@pytest.fixture
def outcomes_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write a synthetic CSV of a chosen size and seed; returns its path."""

    def write(*, rows: int, seed: int) -> Path:
        path = tmp_path / f"outcomes-{rows}-{seed}.csv"
        write_synthetic_csv(path, rows=rows, seed=seed)
        return path

    return write


@pytest.fixture(scope="session")
def synthetic_table(synthetic_csv: Path) -> LabelledTable:
    return load_csv(synthetic_csv, label="converted")


@pytest.fixture(scope="session")
def trained_model(synthetic_table: LabelledTable) -> TrainedModel:
    return train_model(synthetic_table, config=TrainingConfig(seed=3, num_threads=1))
