"""Device allocation: least loaded in turn, sticky per prospect, within daily quotas."""

from __future__ import annotations

import uuid
from collections import Counter

from mcep.channels.base import Platform
from mcep.fleet.allocator import DeviceAllocator, DeviceSlot
from mcep.fleet.models import DeviceStatus

WA = Platform.WHATSAPP


def ids(n: int) -> list[uuid.UUID]:
    return sorted(uuid.uuid4() for _ in range(n))


def test_equal_devices_are_filled_in_turn() -> None:
    devices = ids(3)
    allocator = DeviceAllocator([DeviceSlot(d, WA) for d in devices])
    chosen = [allocator.allocate(WA, prospect_id=uuid.uuid4()) for _ in range(9)]
    assert chosen[:3] == devices and Counter(chosen) == dict.fromkeys(devices, 3)


def test_least_loaded_first() -> None:
    busy, idle = ids(2)
    allocator = DeviceAllocator([DeviceSlot(busy, WA, used_today=5), DeviceSlot(idle, WA)])
    chosen = [allocator.allocate(WA, prospect_id=uuid.uuid4()) for _ in range(6)]
    assert chosen[:5] == [idle] * 5 and allocator.load(busy) + allocator.load(idle) == 11


def test_sticky_per_prospect() -> None:
    a, b = ids(2)
    prospect = uuid.uuid4()
    allocator = DeviceAllocator(
        [DeviceSlot(a, WA, used_today=100), DeviceSlot(b, WA)], sticky={(prospect, WA): a}
    )
    assert allocator.allocate(WA, prospect_id=prospect) == a  # despite its load
    assert allocator.allocate(WA, prospect_id=uuid.uuid4()) == b
    fresh = uuid.uuid4()
    first = allocator.allocate(WA, prospect_id=fresh)
    assert allocator.allocate(WA, prospect_id=fresh) == first


def test_quota_and_status_limit_the_choice() -> None:
    full, quarantined, ok = ids(3)
    prospect = uuid.uuid4()
    allocator = DeviceAllocator(
        [
            DeviceSlot(full, WA, daily_quota=2, used_today=2),
            DeviceSlot(quarantined, WA, status=DeviceStatus.QUARANTINED),
            DeviceSlot(ok, WA, daily_quota=1),
            DeviceSlot(uuid.uuid4(), Platform.TELEGRAM),
        ],
        sticky={(prospect, WA): quarantined},
    )
    assert allocator.has_capacity(WA, prospect_id=prospect)
    assert allocator.allocate(WA, prospect_id=prospect) == ok  # sticky device is quarantined
    assert not allocator.has_capacity(WA, prospect_id=uuid.uuid4())
    assert allocator.allocate(WA, prospect_id=uuid.uuid4()) is None
    assert allocator.allocate(Platform.SIGNAL, prospect_id=prospect) is None


def test_two_thousand_devices_allocate_quickly() -> None:
    import time

    allocator = DeviceAllocator([DeviceSlot(d, WA, daily_quota=1000) for d in ids(2000)])
    started = time.perf_counter()
    for _ in range(10_000):
        allocator.allocate(WA, prospect_id=uuid.uuid4())
    assert time.perf_counter() - started < 1.0
