"""The worker role: long-running jobs (dispatch, scoring, experiments, receivers, sweeps)."""
