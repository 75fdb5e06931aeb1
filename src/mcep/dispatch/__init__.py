"""Dispatch: the outbox of messages, leases, retry policy, send windows and the event log."""
