"""Fleet: sender devices (accounts), their health states, quotas and allocation."""
