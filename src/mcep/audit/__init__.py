"""The tamper-evident audit chain every domain writes to."""
