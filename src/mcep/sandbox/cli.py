"""``mcep sandbox``: serve the simulated providers on a chosen port.

Each provider lives under its own prefix, so any client of the real API works against it by
changing only its base URL: ``http://HOST:PORT/telegram`` (bot URLs
``.../telegram/bot<token>/<method>``), ``http://HOST:PORT/whatsapp`` (sends to
``.../whatsapp/v<version>/<phone number id>/messages``), ``/signal`` and ``/imessage``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable

import typer
import uvicorn
from rich.console import Console

from mcep.sandbox.app import PROVIDER_PREFIXES, create_sandbox_app
from mcep.sandbox.behaviour import Behaviour, Delay
from mcep.sandbox.state import SandboxState

app = typer.Typer(
    help="Serve the simulated WhatsApp, Telegram, Signal and iMessage APIs.",
    pretty_exceptions_enable=False,
)
console = Console()


def parse_tokens(values: Iterable[str]) -> dict[str, frozenset[str]]:
    """``PLATFORM=TOKEN`` pairs to the strict-mode token sets, per platform."""
    tokens: dict[str, set[str]] = {}
    for value in values:
        platform, sep, token = value.partition("=")
        platform = platform.strip().lower()
        if not sep or not token or platform not in PROVIDER_PREFIXES:
            raise typer.BadParameter(
                f"expected PLATFORM=TOKEN with PLATFORM one of {sorted(PROVIDER_PREFIXES)}"
            )
        tokens.setdefault(platform, set()).add(token)
    return {platform: frozenset(found) for platform, found in tokens.items()}


@app.callback(invoke_without_command=True)
def serve(
    port: int = typer.Option(8765, help="Port to listen on"),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on"),
    strict: bool = typer.Option(
        False, help="Accept only the --token values; others get the provider's unauthorized error"
    ),
    token: list[str] = typer.Option(
        [], "--token", help="PLATFORM=TOKEN accepted in strict mode (repeatable)"
    ),
    callback_base: str | None = typer.Option(
        None, help="Base URL of MCEP's API, for WhatsApp webhooks"
    ),
    whatsapp_app_secret: str = typer.Option(
        "sandbox-app-secret",
        envvar="MCEP_SANDBOX_WHATSAPP_APP_SECRET",
        help="App secret that signs WhatsApp webhooks",
    ),
    seed: int = typer.Option(0, help="Random seed of the behaviour model"),
    latency_ms: float = typer.Option(0.0, help="Lowest send latency (ms)"),
    latency_max_ms: float = typer.Option(0.0, help="Highest send latency (ms)"),
    transient_error_rate: float = typer.Option(0.0, help="Share of sends failing transiently"),
    rate_limit_rate: float = typer.Option(0.0, help="Share of sends answered 429"),
    retry_after: float = typer.Option(1.0, help="Seconds a 429 asks to wait"),
    not_on_platform_rate: float = typer.Option(0.0, help="Share of recipients without an account"),
    deliver: float = typer.Option(1.0, help="Probability a message is delivered"),
    read: float = typer.Option(0.5, help="Probability a delivered message is read"),
    reply: float = typer.Option(0.0, help="Probability of a reply"),
    opt_out: float = typer.Option(0.0, help="Probability the person opts out or blocks"),
) -> None:
    """Serve the sandbox until interrupted."""
    behaviour = Behaviour(
        seed=seed,
        latency=Delay(latency_ms / 1000, max(latency_ms, latency_max_ms) / 1000),
        transient_error_rate=transient_error_rate,
        rate_limit_rate=rate_limit_rate,
        retry_after=retry_after,
        not_on_platform_rate=not_on_platform_rate,
        deliver_probability=deliver,
        read_probability=read,
        reply_probability=reply,
        opt_out_probability=opt_out,
    )
    state = SandboxState(
        behaviour=behaviour,
        strict=strict,
        tokens=parse_tokens(token),
        callback_base=callback_base,
        whatsapp_app_secret=whatsapp_app_secret,
    )
    asyncio.run(_serve(state, host=host, port=port))


_BOT_TOKEN_IN_PATH = re.compile(r"/bot[^/]+/")
_PASSWORD_IN_QUERY = re.compile(r"(password|token)=[^&\s]*", re.IGNORECASE)


class RedactSecrets(logging.Filter):
    """Keep bot tokens and BlueBubbles passwords out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def _redact(text: str) -> str:
    text = _BOT_TOKEN_IN_PATH.sub("/bot<redacted>/", text)
    return _PASSWORD_IN_QUERY.sub(r"\1=<redacted>", text)


async def _serve(state: SandboxState, *, host: str, port: int) -> None:
    config = uvicorn.Config(create_sandbox_app(state), host=host, port=port, log_level="info")
    logging.getLogger("uvicorn.access").addFilter(RedactSecrets())
    base = f"http://{host}:{port}"
    for prefix in PROVIDER_PREFIXES:
        console.print(f"{prefix:>9}: [bold]{base}/{prefix}[/]")
    console.print(f"    stats: {base}/_sandbox/stats")
    try:
        await uvicorn.Server(config).serve()
    finally:
        await state.aclose()
