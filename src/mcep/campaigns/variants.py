"""Deterministic, weighted variant assignment: a pure function of campaign and prospect.

A relaunch, a retried job or a second worker all put a prospect in the same variant without
shared state. The launch records the variant on the message, so later weight changes (the
experiments domain's adaptive allocation) never re-assign a prospect already queued.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

_ARM_SALT = "arm"
_BUCKETS = float(2**64)


@dataclass(frozen=True, slots=True)
class WeightedVariant:
    name: str
    weight: float = 1.0


def unit_draw(*parts: str) -> float:
    """A uniform number in [0, 1) fixed by ``parts``, the same on every machine and run."""
    # Length-prefixed, so ("ab", "c") and ("a", "bc") can never hash alike.
    digest = hashlib.sha256("".join(f"{len(p)}:{p}" for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / _BUCKETS


def assign_variant(
    campaign_id: uuid.UUID, prospect_id: uuid.UUID, variants: Sequence[WeightedVariant]
) -> str:
    """The variant this prospect gets in this campaign, in proportion to the weights."""
    total = sum(v.weight for v in variants)
    if not variants or total <= 0:
        raise ValueError("a campaign needs at least one variant with a positive weight")
    point = unit_draw(_ARM_SALT, str(campaign_id), str(prospect_id)) * total
    cumulative = 0.0
    for variant in variants:
        cumulative += variant.weight
        if point < cumulative:
            return variant.name
    return next(v.name for v in reversed(variants) if v.weight > 0)  # float rounding at the top
