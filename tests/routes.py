"""The API's routes as its OpenAPI document lists them (the public, stable view)."""

from __future__ import annotations

from mcep.app import create_app

METHODS = {"get", "post", "put", "patch", "delete"}


def api_routes() -> set[tuple[str, str]]:
    paths = create_app().openapi()["paths"]
    return {
        (method.upper(), path)
        for path, operations in paths.items()
        for method in operations
        if method in METHODS
    }
