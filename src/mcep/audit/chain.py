"""Pure hashing rules of the audit chain."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class EntryFields:
    """The hashed content of an audit entry (everything but the hashes themselves)."""

    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]


def canonical_json(fields: EntryFields) -> str:
    """Sorted keys, no whitespace, UTC timestamp at microsecond precision: one text per entry."""
    document = {
        "action": fields.action,
        "actor": fields.actor,
        "at": fields.at.isoformat(timespec="microseconds"),
        "details": fields.details,
        "object_id": fields.object_id,
        "object_type": fields.object_type,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, fields: EntryFields) -> str:
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(canonical_json(fields).encode("utf-8"))
    return digest.hexdigest()


def merkle_root(leaves: list[bytes]) -> str:
    """Root of a SHA-256 Merkle tree over ``leaves``: one audit entry can vouch for a batch."""
    level = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    if not level:
        return hashlib.sha256(b"").hexdigest()
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level), 2)
        ]
    return level[0].hex()
