"""Lead scoring: prospect features, model training and calibration, fast inference, registry.

Everything here is pure or in memory: the database-backed registry and the worker that keeps
scores current live elsewhere and depend on these modules, never the other way round.
"""
