"""Placeholder for the simulated signal provider (its own module replaces this)."""

from __future__ import annotations

from starlette.routing import Router

from mcep.sandbox.state import SandboxState


def build(state: SandboxState) -> Router:
    """An empty router until the provider module is written."""
    return Router(routes=[])
