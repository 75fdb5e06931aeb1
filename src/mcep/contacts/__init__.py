"""Prospects: identities, consent, opt-out, import and erasure."""
