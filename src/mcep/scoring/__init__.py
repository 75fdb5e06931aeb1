"""Lead scoring: prospect features, calibrated models, a registry, real-time scores, feedback.

The pure core (no I/O): :mod:`~mcep.scoring.features` (a prospect's vector from its events,
batch or incremental), :mod:`~mcep.scoring.dataset`, :mod:`~mcep.scoring.training`,
:mod:`~mcep.scoring.metrics`, :mod:`~mcep.scoring.model` (artifact and fast scorer) and the
in-memory :mod:`~mcep.scoring.registry`.

Around it, in the database: :mod:`~mcep.scoring.store` (model versions, champions per scope,
promotion and rollback, audited), :mod:`~mcep.scoring.champion` (each process's champions in
memory, swapped atomically), :mod:`~mcep.scoring.realtime` (the event log folded into
features, scores, history and qualified leads, behind a durable cursor),
:mod:`~mcep.scoring.retraining` (advisor feedback to a challenger that must beat the champion),
the worker jobs in :mod:`~mcep.scoring.tasks`, the REST routes in :mod:`~mcep.scoring.api` and
the ``mcep scoring`` commands in :mod:`~mcep.scoring.commands`.

Rules worth knowing:

- A prospect is scored by its PM's champion (scope ``pm:<id>``) or else the global one. With no
  champion at all, features are kept current and scores stay empty; the first champion comes
  from ``mcep scoring train-feedback`` (advisor verdicts) or ``train-csv --promote`` on a
  history whose columns are engagement features.
- A PM's lead threshold is that of its most recently updated engagement profile, 70 without one.
- ``qualified`` fires once, when a score first reaches the threshold; only an advisor's
  ``reset`` feedback re-arms it. Opted-out prospects never qualify.
- Anyone signed in may read the registry; admins and compliance promote and roll back.
"""
