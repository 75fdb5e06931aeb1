"""A simple sender-device allocator: sticky per prospect, else least loaded, within quota.

Pure and in memory: the launch reads the devices, their load today and each prospect's last
device in bulk, then asks for one device per recipient. Ties in load go to the lowest id, so
equal devices are filled in turn (round robin). The fleet issue replaces this with a
health- and warm-up-aware allocator behind the same two calls.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mcep.channels.base import Platform
from mcep.fleet.models import DeviceStatus


@dataclass(frozen=True, slots=True)
class DeviceSlot:
    id: uuid.UUID
    platform: Platform
    status: DeviceStatus = DeviceStatus.ACTIVE
    daily_quota: int | None = None
    used_today: int = 0


class DeviceAllocator:
    """Hands out active devices of a platform; ``sticky`` maps (prospect, platform) to the
    device that last messaged that prospect for this PM."""

    def __init__(
        self,
        devices: Iterable[DeviceSlot],
        *,
        sticky: Mapping[tuple[uuid.UUID, Platform], uuid.UUID] | None = None,
    ) -> None:
        active = [d for d in devices if d.status is DeviceStatus.ACTIVE]
        self._load = {d.id: d.used_today for d in active}
        self._quota = {d.id: d.daily_quota for d in active}
        self._platform = {d.id: d.platform for d in active}
        self._heaps: dict[Platform, list[tuple[int, uuid.UUID]]] = {p: [] for p in Platform}
        for d in active:
            self._heaps[d.platform].append((d.used_today, d.id))
        for heap in self._heaps.values():
            heapq.heapify(heap)
        self._sticky = dict(sticky or {})

    def _has_room(self, device_id: uuid.UUID) -> bool:
        quota = self._quota[device_id]
        return quota is None or self._load[device_id] < quota

    def _least_loaded(self, platform: Platform) -> uuid.UUID | None:
        """The top of the platform's heap after dropping stale and full entries."""
        heap = self._heaps[platform]
        while heap:
            load, device_id = heap[0]
            if load == self._load[device_id] and self._has_room(device_id):
                return device_id
            # Every load change pushed a fresh entry, so a stale or full one can simply go.
            heapq.heappop(heap)
        return None

    def _sticky_device(self, platform: Platform, prospect_id: uuid.UUID) -> uuid.UUID | None:
        device_id = self._sticky.get((prospect_id, platform))
        if device_id is None or device_id not in self._load or not self._has_room(device_id):
            return None
        return device_id

    def has_capacity(self, platform: Platform, *, prospect_id: uuid.UUID) -> bool:
        return (
            self._sticky_device(platform, prospect_id) is not None
            or self._least_loaded(platform) is not None
        )

    def allocate(self, platform: Platform, *, prospect_id: uuid.UUID) -> uuid.UUID | None:
        """A device for one message to ``prospect_id``, counted against its quota."""
        device_id = self._sticky_device(platform, prospect_id) or self._least_loaded(platform)
        if device_id is None:
            return None
        self._load[device_id] += 1
        heapq.heappush(self._heaps[platform], (self._load[device_id], device_id))
        self._sticky[(prospect_id, platform)] = device_id
        return device_id

    def load(self, device_id: uuid.UUID) -> int:
        return self._load[device_id]
