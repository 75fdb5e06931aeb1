"""Users, roles, tokens, API keys and the per-PM access rules."""
