"""The jobs a worker can run, by name (``mcep worker --only NAME,...``).

Each domain adds its jobs here, one line each.
"""

from __future__ import annotations

from collections.abc import Callable

from mcep.dispatch.worker import DispatchJob, LeaseSweeperJob
from mcep.experiments.tasks import ExperimentsJob
from mcep.inbound.tasks import SignalReceiverJob
from mcep.scoring.tasks import RetrainingJob, ScoringJob
from mcep.worker.base import Job

JOBS: dict[str, Callable[[], Job]] = {}
JOBS["signal-receiver"] = SignalReceiverJob
JOBS["experiments"] = ExperimentsJob
JOBS["scoring"] = ScoringJob
JOBS["retraining"] = RetrainingJob
JOBS["dispatch"] = DispatchJob
JOBS["leases"] = LeaseSweeperJob
