"""Every error becomes an RFC 9457 ``application/problem+json`` answer; none leaks internals."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mcep.errors import MCEPError, TooManyRequests

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def problem(
    status: int, *, code: str, title: str, detail: str, errors: list[dict[str, str]] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://mcep.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _field_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _mcep_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MCEPError)
    response = problem(
        exc.status_code,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        errors=[{"field": p.field, "message": p.message} for p in exc.problems],
    )
    if isinstance(exc, TooManyRequests) and exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    if exc.status_code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        errors.append({"field": _field_name(loc), "message": message})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(
        422, code="validation_failed", title="Validation failed", detail=detail, errors=errors
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(
        exc.status_code,
        code=f"http_{exc.status_code}",
        title=str(exc.detail),
        detail=str(exc.detail),
    )


async def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    log.info("integrity error mapped to 409: %s", type(exc).__name__)
    return problem(
        409,
        code="conflict",
        title="Conflict",
        detail="the change conflicts with existing data (a duplicate or a missing reference)",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(MCEPError, _mcep_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
