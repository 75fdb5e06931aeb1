"""Telegram Bot API: sendMessage, getMe, webhooks with a secret token, getUpdates polling.

Every call goes to ``{base_url}/bot{token}/{method}``; ``base_url`` is
``https://api.telegram.org`` for the real service or ``http://127.0.0.1:N/telegram`` for the
sandbox. The token sits in the URL path, so URLs are never logged or put into results or
exceptions. Bots get no delivered or read receipts: only replies and blocks come back.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from mcep.channels.base import (
    Accepted,
    DeviceFailure,
    DeviceRef,
    Health,
    HealthStatus,
    InboundMessage,
    OptOutEvent,
    OutboundMessage,
    PermanentFailure,
    Platform,
    ProviderEvent,
    RetryLater,
    SendResult,
)

log = logging.getLogger(__name__)

SECRET_TOKEN_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT_LENGTH = 4096
DEFAULT_ALLOWED_UPDATES: tuple[str, ...] = ("message", "my_chat_member")

# --- classification ----------------------------------------------------------------------


def classify_error(
    error_code: int, *, description: str = "", parameters: Mapping[str, Any] | None = None
) -> SendResult:
    """Map a Bot API error (``error_code`` first, description only to refine) to a result."""
    parameters = parameters or {}
    tag, reason = str(error_code), description or f"error {error_code}"
    if error_code == 429:
        retry_after = parameters.get("retry_after")
        delay = float(retry_after) if isinstance(retry_after, int | float) else None
        return RetryLater(reason=reason, retry_after=delay, code=tag)
    if error_code in (401, 404):
        return DeviceFailure(reason=f"bot token rejected: {reason}", code=tag)
    if error_code == 403:
        blocked = "blocked" in reason.lower() or "deactivated" in reason.lower()
        return PermanentFailure(reason=reason, code=tag, opted_out=blocked)
    if "migrate_to_chat_id" in parameters:
        return PermanentFailure(reason=f"chat migrated: {reason}", code=f"{tag}_migrated")
    if error_code >= 500 or error_code in (408, 409):
        return RetryLater(reason=reason, code=tag)
    return PermanentFailure(reason=reason, code=tag)


def interpret_response(http_status: int, body: object) -> SendResult:
    """Turn a sendMessage answer (status and decoded JSON, or ``None``) into a result."""
    if isinstance(body, dict) and body.get("ok") is True:
        result = body.get("result")
        message_id = result.get("message_id") if isinstance(result, dict) else None
        chat = result.get("chat") if isinstance(result, dict) else None
        if isinstance(message_id, int) and isinstance(chat, dict) and "id" in chat:
            # Message ids count per chat; the pair is unique for the bot.
            return Accepted(provider_message_id=f"{chat['id']}:{message_id}")
        return RetryLater(reason="ok answer without a message id", code="malformed")
    if isinstance(body, dict) and isinstance(body.get("error_code"), int):
        parameters = body.get("parameters")
        return classify_error(
            body["error_code"],
            description=str(body.get("description", "")),
            parameters=parameters if isinstance(parameters, dict) else None,
        )
    return classify_error(http_status, description=f"HTTP {http_status} without a Bot API body")


# --- requests ----------------------------------------------------------------------------


def chat_id(recipient: str) -> int | str:
    """Numeric chat ids go as integers, ``@channel`` names as strings."""
    stripped = recipient.strip()
    return int(stripped) if stripped.lstrip("-").isdigit() else stripped


def build_send_payload(message: OutboundMessage, device: DeviceRef) -> dict[str, Any]:
    """The sendMessage parameters (``parse_mode`` from the device options, if set)."""
    payload: dict[str, Any] = {"chat_id": chat_id(message.recipient), "text": message.body}
    if parse_mode := device.options.get("parse_mode"):
        payload["parse_mode"] = parse_mode
    return payload


def _method_url(device: DeviceRef, method: str) -> str:
    return f"{device.base_url.rstrip('/')}/bot{device.token}/{method}"


async def _call(
    session: aiohttp.ClientSession,
    device: DeviceRef,
    method: str,
    payload: Mapping[str, Any] | None = None,
    *,
    request_timeout: aiohttp.ClientTimeout | None = None,
) -> tuple[int, object]:
    """POST one method; returns HTTP status and decoded JSON (``None`` if not JSON)."""
    url = _method_url(device, method)
    kwargs: dict[str, Any] = {"json": dict(payload or {})}
    if request_timeout is not None:
        kwargs["timeout"] = request_timeout
    async with session.post(url, **kwargs) as response:
        raw = await response.read()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, None


# --- the adapter -------------------------------------------------------------------------


class TelegramAdapter:
    """Sends with sendMessage, checks the token with getMe, manages the webhook."""

    platform: Platform = Platform.TELEGRAM

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    def __repr__(self) -> str:
        return "TelegramAdapter()"

    async def send(self, message: OutboundMessage, device: DeviceRef) -> SendResult:
        """Send a text message; transport failures are retry-later."""
        try:
            status, body = await _call(
                self._session, device, "sendMessage", build_send_payload(message, device)
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return RetryLater(reason=f"transport error: {type(exc).__name__}", code="transport")
        return interpret_response(status, body)

    async def probe(self, device: DeviceRef) -> Health:
        """getMe: is the token valid, and does it belong to the bot we think it does?"""
        try:
            status, body = await _call(self._session, device, "getMe")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Health(HealthStatus.DOWN, detail=f"unreachable: {type(exc).__name__}")
        return interpret_get_me(status, body, expected_username=device.address)

    async def set_webhook(
        self,
        device: DeviceRef,
        *,
        url: str,
        secret_token: str,
        drop_pending_updates: bool = False,
        allowed_updates: Sequence[str] = DEFAULT_ALLOWED_UPDATES,
    ) -> bool:
        """Ask Telegram to push updates to ``url`` with ``secret_token`` in every request."""
        payload = {
            "url": url,
            "secret_token": secret_token,
            "drop_pending_updates": drop_pending_updates,
            "allowed_updates": list(allowed_updates),
        }
        return await self._ok(device, "setWebhook", payload)

    async def delete_webhook(
        self, device: DeviceRef, *, drop_pending_updates: bool = False
    ) -> bool:
        """Stop pushing updates (needed before getUpdates polling)."""
        return await self._ok(
            device, "deleteWebhook", {"drop_pending_updates": drop_pending_updates}
        )

    async def get_webhook_info(self, device: DeviceRef) -> dict[str, Any] | None:
        """The webhook Telegram has on file, or ``None`` if the call failed."""
        try:
            _, body = await _call(self._session, device, "getWebhookInfo")
        except (aiohttp.ClientError, TimeoutError):
            return None
        if isinstance(body, dict) and body.get("ok") is True and isinstance(body["result"], dict):
            return dict(body["result"])
        return None

    async def _ok(self, device: DeviceRef, method: str, payload: Mapping[str, Any]) -> bool:
        try:
            _, body = await _call(self._session, device, method, payload)
        except (aiohttp.ClientError, TimeoutError):
            return False
        return isinstance(body, dict) and body.get("ok") is True


def interpret_get_me(http_status: int, body: object, *, expected_username: str = "") -> Health:
    """Health from a getMe answer."""
    if not (isinstance(body, dict) and body.get("ok") is True):
        failure = interpret_response(http_status, body)
        status = HealthStatus.DOWN if isinstance(failure, DeviceFailure) else HealthStatus.DEGRADED
        detail = failure.reason if not isinstance(failure, Accepted) else "unexpected answer"
        return Health(status, detail=detail)
    result = body.get("result")
    me: Mapping[str, Any] = result if isinstance(result, dict) else {}
    username = str(me.get("username", ""))
    attributes = {"bot_id": str(me.get("id", "")), "username": username}
    expected = expected_username.removeprefix("@").lower()
    if expected and username.lower() != expected:
        detail = f"token belongs to @{username}, not @{expected}"
        return Health(HealthStatus.DEGRADED, detail=detail, attributes=attributes)
    return Health(HealthStatus.OK, detail=f"@{username}", attributes=attributes)


# --- inbound -----------------------------------------------------------------------------


class UpdatePayloadError(ValueError):
    """The webhook body is not a Telegram Update object."""


def verify_secret_token(expected: str, header: str | None) -> bool:
    """Compare ``X-Telegram-Bot-Api-Secret-Token`` with the secret we set, in constant time."""
    if not expected or header is None:
        return False
    return hmac.compare_digest(expected.encode(), header.encode())


def parse_update(update: bytes | Mapping[str, Any], *, device_address: str) -> list[ProviderEvent]:
    """Replies (text messages in private chats) and blocks (``my_chat_member`` kicked)."""
    data = _load_update(update)
    update_id = data.get("update_id")
    if not isinstance(update_id, int):
        raise UpdatePayloadError("update without an integer update_id")
    event_id = f"{device_address}:{update_id}"
    message = data.get("message")
    if isinstance(message, dict):
        return _inbound(message, event_id=event_id, device=device_address)
    member = data.get("my_chat_member")
    if isinstance(member, dict):
        return _membership(member, event_id=event_id, device=device_address)
    return []


def _load_update(update: bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(update, bytes | bytearray):
        return update
    try:
        data = json.loads(update)
    except ValueError as exc:
        raise UpdatePayloadError("update body is not JSON") from exc
    if not isinstance(data, dict):
        raise UpdatePayloadError("update body is not a JSON object")
    return data


def _inbound(message: Mapping[str, Any], *, event_id: str, device: str) -> list[ProviderEvent]:
    chat, sender = message.get("chat"), message.get("from")
    if not isinstance(chat, dict) or chat.get("type") != "private":
        return []
    if isinstance(sender, dict) and sender.get("is_bot") is True:
        return []
    text = message.get("text", message.get("caption", ""))
    at = _date(message.get("date"))
    return [InboundMessage(event_id, str(chat.get("id")), device, str(text), at)]


def _membership(member: Mapping[str, Any], *, event_id: str, device: str) -> list[ProviderEvent]:
    chat, new = member.get("chat"), member.get("new_chat_member")
    if not isinstance(chat, dict) or chat.get("type") != "private" or not isinstance(new, dict):
        return []
    if new.get("status") != "kicked":
        return []
    at = _date(member.get("date"))
    return [OptOutEvent(event_id, str(chat.get("id")), device, at, reason="blocked the bot")]


def _date(value: object) -> datetime:
    if isinstance(value, int):
        return datetime.fromtimestamp(value, UTC)
    return datetime.now(UTC)


# --- getUpdates long polling -------------------------------------------------------------


class PollingError(Exception):
    """getUpdates can't go on: bad token (401/404) or a webhook is set / another poller (409)."""

    def __init__(self, error_code: int, description: str) -> None:
        super().__init__(f"getUpdates failed with {error_code}: {description}")
        self.error_code = error_code
        self.description = description


@dataclass(frozen=True, slots=True)
class PolledUpdate:
    """One update from getUpdates: its id (to persist as the next offset minus one) and events."""

    update_id: int
    events: list[ProviderEvent] = field(default_factory=list)


async def poll_updates(
    session: aiohttp.ClientSession,
    device: DeviceRef,
    *,
    offset: int | None = None,
    poll_timeout: int = 30,
    limit: int = 100,
    allowed_updates: Sequence[str] = DEFAULT_ALLOWED_UPDATES,
    error_backoff: float = 1.0,
) -> AsyncIterator[PolledUpdate]:
    """Long-poll getUpdates for ever, yielding updates one by one.

    An update is confirmed (by asking for ``update_id + 1``) only on the next call, after the
    consumer has handled it, so a crash redelivers rather than loses. 429 waits the given
    ``retry_after``; transport errors and 5xx wait ``error_backoff``; 401, 404 and 409 raise
    :class:`PollingError`. Stop by breaking out of the loop.
    """
    request_timeout = aiohttp.ClientTimeout(total=poll_timeout + 15)
    while True:
        payload: dict[str, Any] = {
            "timeout": poll_timeout,
            "limit": limit,
            "allowed_updates": list(allowed_updates),
        }
        if offset is not None:
            payload["offset"] = offset
        updates = await _fetch_updates(session, device, payload, request_timeout, error_backoff)
        for update in updates:
            update_id = int(update["update_id"])
            yield PolledUpdate(update_id, parse_update(update, device_address=device.address))
            offset = update_id + 1


async def _fetch_updates(
    session: aiohttp.ClientSession,
    device: DeviceRef,
    payload: Mapping[str, Any],
    request_timeout: aiohttp.ClientTimeout,
    error_backoff: float,
) -> list[dict[str, Any]]:
    """One getUpdates call; waits and returns ``[]`` on retryable failures."""
    try:
        status, body = await _call(
            session, device, "getUpdates", payload, request_timeout=request_timeout
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("getUpdates transport error: %s", type(exc).__name__)
        await asyncio.sleep(error_backoff)
        return []
    if isinstance(body, dict) and body.get("ok") is True and isinstance(body["result"], list):
        return [u for u in body["result"] if isinstance(u, dict) and "update_id" in u]
    error_code = body.get("error_code") if isinstance(body, dict) else None
    code = error_code if isinstance(error_code, int) else status
    if code in (401, 404, 409):
        description = body.get("description", "") if isinstance(body, dict) else ""
        raise PollingError(code, str(description))
    result = interpret_response(status, body)
    retry_after = result.retry_after if isinstance(result, RetryLater) else None
    await asyncio.sleep(retry_after if retry_after is not None else error_backoff)
    return []
