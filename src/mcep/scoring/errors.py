"""Errors the scoring domain raises on purpose, each with a message a person can act on."""

from __future__ import annotations


class ScoringError(Exception):
    """Base of the scoring errors; ``message`` is meant for the person who ran the command."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ScoringInputError(ScoringError):
    """The data or options given for training or scoring can't be used as they are."""


class ModelVersionNotFound(ScoringError):
    """The registry holds no such model version."""


class RollbackUnavailable(ScoringError):
    """There is no earlier champion to go back to."""
