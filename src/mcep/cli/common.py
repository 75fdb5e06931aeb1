"""Helpers every CLI command shares: settings, a runtime, one transaction, clean errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.db import migrate
from mcep.errors import MCEPError
from mcep.runtime import Runtime, build_runtime
from mcep.settings import Settings

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)


def fail(message: str, *, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; an MCEPError becomes a message and a non-zero exit."""
    try:
        return asyncio.run(coro)
    except MCEPError as exc:
        fail(exc.detail, code=2 if exc.status_code < 500 else 1)


@asynccontextmanager
async def open_runtime(
    settings: Settings | None = None, *, upgrade: bool = False
) -> AsyncIterator[Runtime]:
    runtime = build_runtime(settings or Settings())
    try:
        if upgrade:
            await migrate.upgrade(runtime.engine)
        yield runtime
    finally:
        await runtime.aclose()


async def in_transaction(runtime: Runtime, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction: committed if it returns, rolled back if it raises."""
    async with runtime.sessions() as session, session.begin():
        return await work(session)
