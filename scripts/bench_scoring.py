"""Lead-score inference speed: single-prospect latency (p50/p99) and batch throughput.

Two models are measured: one trained on the bank marketing table (if present) and a heavier
synthetic one of 30 features and about 300 trees, the size the design's targets assume
(p99 < 2 ms for one prospect through the raw Booster, > 50,000 rows/s in batch).

    .venv/bin/python scripts/bench_scoring.py [--data PATH] [--repeat 5000]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mcep.scoring.dataset import LabelledTable, load_csv, type_columns
from mcep.scoring.model import Scorer, TrainedModel
from mcep.scoring.training import TrainingConfig, train_model

BANK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bank-marketing"
DEFAULT_DATA = BANK / "bank-additional-full.csv"


def latency_ms(call: Callable[[], object], *, repeat: int) -> tuple[float, float]:
    """p50 and p99 of one call, in milliseconds, after a warm-up, with the collector off."""
    for _ in range(min(200, repeat)):
        call()
    timings = np.empty(repeat)
    gc.disable()
    try:
        for i in range(repeat):
            start = time.perf_counter_ns()
            call()
            timings[i] = time.perf_counter_ns() - start
    finally:
        gc.enable()
    p50, p99 = np.percentile(timings, [50, 99]) / 1e6
    return float(p50), float(p99)


def rows_per_second(call: Callable[[], object], rows: int, *, rounds: int = 5) -> float:
    best = min(_timed(call) for _ in range(rounds))
    return rows / best


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def synthetic_table(*, rows: int = 40_000, features: int = 30, seed: int = 0) -> LabelledTable:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(rows, features))
    weights = rng.normal(size=features) / np.sqrt(features)
    logit = data @ weights + 0.5 * np.sin(3 * data[:, 0]) - 1.5
    y = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    raw = pd.DataFrame({f"f{j:02d}": data[:, j].astype(str) for j in range(features)})
    kinds, frame, _ = type_columns(raw)
    return LabelledTable(frame, y, label="y", positive="1", kinds=kinds)


def bench(name: str, model: TrainedModel, table: LabelledTable, *, repeat: int) -> None:
    scorer = Scorer(model)
    matrix = model.schema.encode_frame(table.features)
    one_row = matrix[:1].copy()
    prospect = {column: table.features[column].iloc[0] for column in scorer.feature_names}
    booster = model.booster
    trees = booster.current_iteration()
    print(f"\n{name}: {trees} trees, {len(scorer.feature_names)} features, {len(matrix)} rows")
    singles = {
        "raw Booster.predict, encoded row": lambda: booster.predict(one_row, num_threads=1),
        "Scorer.score(mapping), no explanation": lambda: scorer.score(prospect, explain=False),
        "Scorer.score(mapping) + top-5 pred_contrib": lambda: scorer.score(prospect),
    }
    for label, call in singles.items():
        p50, p99 = latency_ms(call, repeat=repeat)
        print(f"  single  {label:<44} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms")
    batch = rows_per_second(lambda: scorer.score_batch(matrix), len(matrix))
    with_encoding = rows_per_second(lambda: scorer.score_batch(table.features), len(matrix))
    print(f"  batch   Scorer.score_batch(encoded matrix)          {batch:12,.0f} rows/s")
    explained = rows_per_second(lambda: booster.predict(matrix[:5000], pred_contrib=True), 5000)
    print(f"  batch   Scorer.score_batch(typed frame, encoding)   {with_encoding:12,.0f} rows/s")
    print(f"  batch   Booster pred_contrib (explanations)         {explained:12,.0f} rows/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=5000)
    args = parser.parse_args()
    if args.data.is_file():
        bank = load_csv(args.data, label="y", positive="yes", drop=["duration"], sep=";")
        bench("bank marketing", train_model(bank), bank, repeat=args.repeat)
    else:
        print(f"{args.data} not found: skipping the bank marketing model")
    heavy = synthetic_table()
    config = TrainingConfig(learning_rate=0.01, max_rounds=300, early_stopping_rounds=300)
    bench("synthetic, design size", train_model(heavy, config=config), heavy, repeat=args.repeat)


if __name__ == "__main__":
    main()
