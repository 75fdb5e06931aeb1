"""Deterministic weighted assignment, hold-out, and Thompson-sampling shares."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mcep.experiments.assignment import Arm, assign, thompson_shares, unit_hash
from mcep.experiments.stats import Counts, sample_ratio_mismatch

ARMS = (Arm("control", 2.0), Arm("short", 1.0), Arm("long", 1.0))


def test_assignment_is_pinned_across_releases() -> None:
    # Pinned outputs: a change here would move live prospects between arms mid-experiment.
    got = [assign("exp-42", f"prospect-{i}", ARMS).arm for i in range(8)]
    assert got == ["control", "long", "control", "short", "long", "long", "control", "control"]


def test_assignment_depends_only_on_experiment_and_prospect() -> None:
    first = [assign("exp-7", f"p{i}", ARMS).arm for i in range(500)]
    again = [assign("exp-7", f"p{i}", list(ARMS)).arm for i in range(500)]
    other_experiment = [assign("exp-8", f"p{i}", ARMS).arm for i in range(500)]
    assert first == again
    assert first != other_experiment  # experiments are bucketed independently


def test_weights_are_respected_on_100k_prospects() -> None:
    arms = [assign("exp-weights", f"prospect-{i}", ARMS).arm for i in range(100_000)]
    counts = Counter(arms)
    observed = [counts[arm.name] for arm in ARMS]
    check = sample_ratio_mismatch(observed, weights=[arm.weight for arm in ARMS])
    assert not check.mismatch
    assert check.p_value > 0.001
    # And the check has teeth: the same counts against equal weights are a glaring mismatch.
    assert sample_ratio_mismatch(observed, weights=[1, 1, 1]).mismatch


def test_holdout_takes_its_share_and_leaves_other_arms_alone() -> None:
    ids = [f"prospect-{i}" for i in range(20_000)]
    without = [assign("exp-h", pid, ARMS).arm for pid in ids]
    assignments = [assign("exp-h", pid, ARMS, holdout=0.1) for pid in ids]
    held = sum(a.held_out for a in assignments)
    # Binomial(20000, 0.1): sd is about 42, so 0.1 +- 0.01 is over four of them.
    assert 0.09 < held / len(ids) < 0.11
    moved = [
        pid
        for pid, before, after in zip(ids, without, assignments, strict=True)
        if not after.held_out and after.arm != before
    ]
    assert moved == []


def test_ids_cannot_be_shifted_between_parts_to_collide() -> None:
    assert unit_hash("exp-1", "23") != unit_hash("exp-12", "3")
    assert unit_hash("a:1", "b") != unit_hash("a", "1:b")


def test_paused_arm_gets_nobody_and_bad_configs_are_rejected() -> None:
    arms = (Arm("control"), Arm("paused", 0.0), Arm("variant"))
    assert "paused" not in {assign("exp-p", f"p{i}", arms).arm for i in range(2000)}
    with pytest.raises(ValueError):
        assign("exp", "p", [Arm("a", 0.0)])
    with pytest.raises(ValueError):
        assign("exp", "p", [Arm("a"), Arm("a")])
    with pytest.raises(ValueError):
        assign("exp", "p", ARMS, holdout=1.0)
    with pytest.raises(ValueError):
        Arm("negative", -1.0)


def test_thompson_shares_favour_the_better_arm_but_keep_the_floor() -> None:
    rng = np.random.default_rng(5)
    arms = [Counts(10, 100), Counts(30, 100), Counts(12, 100)]
    shares = thompson_shares(arms, min_share=0.1, rng=rng)
    assert sum(shares) == pytest.approx(1.0)
    assert min(shares) >= 0.1
    assert shares[1] > 0.75  # 30% vs 10-12% over 100 sends is nearly certain to be best
    assert shares[0] == pytest.approx(0.1, abs=0.01)


def test_thompson_shares_are_even_without_data() -> None:
    shares = thompson_shares([None, None], min_share=0.2, rng=np.random.default_rng(1))
    assert shares == pytest.approx((0.5, 0.5), abs=0.02)
    with pytest.raises(ValueError):
        thompson_shares([None, None, None], min_share=0.4, rng=np.random.default_rng(1))
