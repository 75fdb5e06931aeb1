"""A/B experiments: assignment, statistics and the test-then-send decision.

Everything here is pure: functions take counts, clocks and seeds as arguments and return
frozen value objects, so the dispatch engine, the API and the CLI share one implementation.
"""
