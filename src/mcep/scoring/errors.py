"""Errors the scoring domain raises on purpose, each with a message a person can act on.

They are :class:`mcep.errors.MCEPError` subclasses, so the API answers them with their own
status and the CLI prints their message.
"""

from __future__ import annotations

from mcep.errors import MCEPError


class ScoringError(MCEPError):
    """Base of the scoring errors; ``message`` is meant for the person who ran the command."""

    status_code = 422
    code = "scoring_error"
    title = "Scoring error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ScoringInputError(ScoringError):
    """The data or options given for training or scoring can't be used as they are."""

    code = "scoring_input"
    title = "Unusable scoring input"


class ModelVersionNotFound(ScoringError):
    """The registry holds no such model version."""

    status_code = 404
    code = "model_version_not_found"
    title = "No such model version"


class RollbackUnavailable(ScoringError):
    """There is no earlier champion to go back to."""

    status_code = 409
    code = "rollback_unavailable"
    title = "Nothing to roll back to"


class ModelNotUsable(ScoringError):
    """A version can't become champion: its artifact doesn't load, or prospects lack its inputs."""

    code = "model_not_usable"
    title = "Model can't score prospects"
