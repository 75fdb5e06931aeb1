"""One error hierarchy for the whole platform, mapped to RFC 9457 problem responses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """What is wrong with one input field."""

    field: str
    message: str


class MCEPError(Exception):
    """Base of every error MCEP raises on purpose; carries its HTTP meaning."""

    status_code: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(self, detail: str, *, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.problems = problems or []


class BadRequest(MCEPError):
    status_code = 400
    code = "bad_request"
    title = "Bad request"


class ValidationFailed(MCEPError):
    status_code = 422
    code = "validation_failed"
    title = "Validation failed"

    @classmethod
    def of(cls, field: str, message: str) -> ValidationFailed:
        return cls(f"{field}: {message}", problems=[FieldProblem(field, message)])


class Unauthorized(MCEPError):
    status_code = 401
    code = "unauthorized"
    title = "Not authenticated"


class Forbidden(MCEPError):
    status_code = 403
    code = "forbidden"
    title = "Not allowed"


class NotFound(MCEPError):
    status_code = 404
    code = "not_found"
    title = "Not found"


class Conflict(MCEPError):
    status_code = 409
    code = "conflict"
    title = "Conflict"


class TooManyRequests(MCEPError):
    status_code = 429
    code = "too_many_requests"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
