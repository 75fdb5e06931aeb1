"""iMessage through a BlueBubbles server: its REST API for sending, its webhooks for events.

BlueBubbles runs on a Mac signed in to Messages. Every REST call carries the server password as
the ``password`` query parameter, so request URLs are secret: they never go into a log line,
an exception or a failure reason here (aiohttp errors name the URL, so only the error's type
is ever reported).

Sending is ``POST /api/v1/message/text`` with ``chatGuid`` ``iMessage;-;<address>``, our
message key as ``tempGuid`` and ``method`` ``apple-script``. The answer's ``data.guid`` is the
provider message id that later webhooks name. Failures:

* 401 (missing or wrong password) and 403 -> :class:`DeviceFailure`.
* 400 validation errors -> :class:`PermanentFailure`, except "already queued" (the same
  ``tempGuid`` is still in flight from an earlier attempt) -> :class:`RetryLater`.
* 500 ``iMessage Error``: message error 22 means the address is not registered with iMessage
  -> :class:`PermanentFailure`; an AppleScript "invalid index" (-1719) means Messages has no
  iMessage account to send from (signed out, Apple ID locked) -> :class:`DeviceFailure`; any
  other error -> :class:`RetryLater`.
* 504, other 5xx and timeouts (sends are known to hang for about two minutes) ->
  :class:`RetryLater`. BlueBubbles has no rate-limit answer (Apple throttles by failing or
  stalling sends), so there is never a provider delay to pass on.

BlueBubbles webhooks are unsigned and not retried. They must be received on a per-device
secret URL, checked with :func:`verify_webhook_secret`, then parsed with :func:`parse_webhook`.
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp

from mcep.channels.base import (
    Accepted,
    DeliveryStatus,
    DeviceFailure,
    DeviceRef,
    Health,
    HealthStatus,
    InboundMessage,
    OutboundMessage,
    PermanentFailure,
    Platform,
    ProviderEvent,
    RetryLater,
    SendResult,
    StatusEvent,
)
from mcep.errors import BadRequest

SEND_TEXT_PATH = "/api/v1/message/text"
PING_PATH = "/api/v1/ping"
WEBHOOK_PATH = "/api/v1/webhook"

NEW_MESSAGE = "new-message"
UPDATED_MESSAGE = "updated-message"
MESSAGE_SEND_ERROR = "message-send-error"
WEBHOOK_EVENTS = (NEW_MESSAGE, UPDATED_MESSAGE, MESSAGE_SEND_ERROR)

# Messages' own error code for an address that has no iMessage account.
NOT_REGISTERED_ERROR = 22
# AppleScript's "invalid index" (-1719): Messages has no usable iMessage account to send from
# (signed out, or the Apple ID was locked).
_ACCOUNT_GONE_MARKERS = ("(-1719)",)
IMESSAGE_ERROR_TYPE = "iMessage Error"
_MAX_REASON = 200

JsonObject = Mapping[str, Any]


def chat_guid(address: str) -> str:
    """The one-to-one iMessage chat GUID for a phone number or e-mail address."""
    return f"iMessage;-;{address}"


def build_send_body(message: OutboundMessage) -> dict[str, str]:
    """The JSON body of ``POST /api/v1/message/text`` for one message."""
    return {
        "chatGuid": chat_guid(message.recipient),
        "tempGuid": message.key,
        "message": message.body,
        "method": "apple-script",
    }


# --- send classification -----------------------------------------------------------------


def classify_send_answer(*, status: int, body: bytes) -> SendResult:
    """Classify one answer of the send call, whatever its status and body."""
    document = _load_object(body)
    if status == 200:
        return _classify_success(document)
    if status in (401, 403):
        return DeviceFailure(
            reason=f"BlueBubbles refused the server password ({status})", code=str(status)
        )
    if status == 400:
        return _classify_bad_request(document)
    if status == 404:
        return _classify_not_found(document)
    if status == 500 and _error_type(document) == IMESSAGE_ERROR_TYPE:
        return _classify_imessage_error(document)
    if status >= 500:
        return RetryLater(
            reason=f"BlueBubbles HTTP {status}: {_error_text(document)}", code=str(status)
        )
    return DeviceFailure(reason=f"BlueBubbles answered HTTP {status}", code=str(status))


def _classify_success(document: JsonObject) -> SendResult:
    data = document.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("guid"), str):
        return DeviceFailure(reason="BlueBubbles answered 200 without a message guid")
    if _message_error(data):
        return _classify_imessage_error(document)
    return Accepted(provider_message_id=data["guid"])


def _classify_bad_request(document: JsonObject) -> SendResult:
    text = _error_text(document)
    if "already queued" in text.lower():
        # An earlier attempt with this tempGuid is still being sent: not a new failure.
        return RetryLater(reason="an earlier attempt is still in flight", code="already_queued")
    return PermanentFailure(reason=f"BlueBubbles rejected the message: {text}", code="400")


def _classify_not_found(document: JsonObject) -> SendResult:
    if "error" in document:
        return PermanentFailure(reason=f"BlueBubbles: {_error_text(document)}", code="404")
    return DeviceFailure(reason="no BlueBubbles API at this base URL (404)", code="404")


def _classify_imessage_error(document: JsonObject) -> SendResult:
    data = document.get("data")
    code = _message_error(data) if isinstance(data, Mapping) else 0
    if any(marker in _error_text(document) for marker in _ACCOUNT_GONE_MARKERS):
        return DeviceFailure(reason="Messages has no usable iMessage account", code="-1719")
    if code == NOT_REGISTERED_ERROR:
        return PermanentFailure(reason="recipient is not registered with iMessage", code=str(code))
    return RetryLater(reason=f"iMessage send error: {_error_text(document)}", code=str(code or 500))


def _message_error(data: JsonObject) -> int:
    value = data.get("error")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _error_type(document: JsonObject) -> str:
    error = document.get("error")
    return str(error.get("type", "")) if isinstance(error, Mapping) else ""


def _error_text(document: JsonObject) -> str:
    """The most specific human text of a BlueBubbles error body, clipped."""
    error = document.get("error")
    detail = error.get("message") if isinstance(error, Mapping) else None
    text = detail or document.get("message") or "no detail"
    return str(text)[:_MAX_REASON]


# --- webhooks ----------------------------------------------------------------------------


def verify_webhook_secret(expected: str, given: str) -> bool:
    """Whether the secret in a webhook URL matches the device's, compared in constant time."""
    if not expected:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def parse_webhook(payload: bytes, *, device_address: str) -> list[ProviderEvent]:
    """Parse one BlueBubbles webhook body (``{"type":..,"data":{message}}``) into events.

    ``device_address`` is the account the secret URL belongs to (BlueBubbles doesn't say).
    ``new-message`` from someone else is an :class:`InboundMessage`; ``updated-message`` on a
    message we sent reports delivered and read; ``message-send-error`` reports failed. Other
    event types, group chats, reactions and empty texts yield nothing. A body that is not a
    JSON object with a ``type`` raises :class:`~mcep.errors.BadRequest`.
    """
    document = _load_object(payload)
    kind = document.get("type")
    if not isinstance(kind, str):
        raise BadRequest("webhook body is not a BlueBubbles event")
    message = document.get("data")
    if kind not in WEBHOOK_EVENTS or not isinstance(message, Mapping):
        return []
    if not isinstance(message.get("guid"), str) or _is_group(message):
        return []
    return list(_message_events(kind, message, device_address=device_address))


def _message_events(
    kind: str, message: JsonObject, *, device_address: str
) -> Iterator[ProviderEvent]:
    if not message.get("isFromMe"):
        if kind == NEW_MESSAGE:
            inbound = _inbound(message, device_address=device_address)
            if inbound is not None:
                yield inbound
        return
    if kind == MESSAGE_SEND_ERROR or _message_error(message):
        yield _status(message, DeliveryStatus.FAILED, at=_from_ms(message.get("dateCreated")))
        return
    yield from _progress(message)


def _progress(message: JsonObject) -> Iterator[StatusEvent]:
    """Delivered and read as far as this snapshot of the message shows them."""
    if message.get("dateDelivered"):
        yield _status(message, DeliveryStatus.DELIVERED, at=_from_ms(message["dateDelivered"]))
    if message.get("dateRead"):
        yield _status(message, DeliveryStatus.READ, at=_from_ms(message["dateRead"]))


def _status(message: JsonObject, status: DeliveryStatus, *, at: datetime) -> StatusEvent:
    guid = str(message["guid"])
    code = _message_error(message)
    return StatusEvent(
        event_id=f"imessage:{guid}:{status.value}",
        provider_message_id=guid,
        status=status,
        at=at,
        error_code=str(code) if status is DeliveryStatus.FAILED else None,
        error_reason=_failure_reason(code) if status is DeliveryStatus.FAILED else None,
        message_key=temp_guid if isinstance(temp_guid := message.get("tempGuid"), str) else None,
    )


def _failure_reason(code: int) -> str:
    if code == NOT_REGISTERED_ERROR:
        return "recipient is not registered with iMessage"
    return f"iMessage send error {code}"


def _inbound(message: JsonObject, *, device_address: str) -> InboundMessage | None:
    text = message.get("text")
    handle = message.get("handle")
    sender = handle.get("address") if isinstance(handle, Mapping) else None
    if not isinstance(text, str) or not text.strip() or not isinstance(sender, str):
        return None
    if message.get("associatedMessageType"):  # a tapback on another message, not a reply
        return None
    return InboundMessage(
        event_id=f"imessage:{message['guid']}:inbound",
        sender=sender,
        device_address=device_address,
        text=text,
        at=_from_ms(message.get("dateCreated")),
    )


def _is_group(message: JsonObject) -> bool:
    chats = message.get("chats")
    if not isinstance(chats, list):
        return False
    return any(isinstance(c, Mapping) and ";+;" in str(c.get("guid", "")) for c in chats)


# --- the adapter -------------------------------------------------------------------------


class IMessageAdapter:
    """Sends through and probes BlueBubbles servers; webhooks are parsed by the functions above."""

    platform = Platform.IMESSAGE

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        send_timeout: float = 60.0,
        probe_timeout: float = 5.0,
    ) -> None:
        """``send_timeout`` bounds hanging AppleScript sends; past it the send is retried later."""
        self._session = session
        self._send_timeout = aiohttp.ClientTimeout(total=send_timeout)
        self._probe_timeout = aiohttp.ClientTimeout(total=probe_timeout)

    async def send(self, message: OutboundMessage, device: DeviceRef) -> SendResult:
        """Send one text message; every outcome is classified, nothing raises."""
        try:
            async with self._session.post(
                _url(device, SEND_TEXT_PATH),
                params=_auth(device),
                json=build_send_body(message),
                timeout=self._send_timeout,
            ) as response:
                return classify_send_answer(status=response.status, body=await response.read())
        except (TimeoutError, aiohttp.ClientError) as exc:
            return RetryLater(reason=f"BlueBubbles unreachable: {type(exc).__name__}")

    async def probe(self, device: DeviceRef) -> Health:
        """``GET /api/v1/ping``: up, refused (wrong password) or unreachable."""
        try:
            async with self._session.get(
                _url(device, PING_PATH), params=_auth(device), timeout=self._probe_timeout
            ) as response:
                return _ping_health(response.status, _load_object(await response.read()))
        except (TimeoutError, aiohttp.ClientError) as exc:
            return Health(HealthStatus.DOWN, f"BlueBubbles unreachable: {type(exc).__name__}")

    async def register_webhook(
        self, device: DeviceRef, *, url: str, events: tuple[str, ...] = WEBHOOK_EVENTS
    ) -> bool:
        """Ask the server to POST ``events`` to ``url`` (our secret per-device URL)."""
        try:
            async with self._session.post(
                _url(device, WEBHOOK_PATH),
                params=_auth(device),
                json={"url": url, "events": list(events)},
                timeout=self._probe_timeout,
            ) as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False


def _ping_health(status: int, document: JsonObject) -> Health:
    if status == 200 and document.get("data") == "pong":
        return Health(HealthStatus.OK, "pong")
    if status == 200:
        return Health(HealthStatus.DEGRADED, "ping answered without pong")
    if status in (401, 403):
        return Health(HealthStatus.DOWN, "BlueBubbles refused the server password")
    return Health(HealthStatus.DOWN, f"ping answered HTTP {status}")


# --- small helpers -----------------------------------------------------------------------


def _url(device: DeviceRef, path: str) -> str:
    return device.base_url.rstrip("/") + path


def _auth(device: DeviceRef) -> dict[str, str]:
    return {"password": device.token}


def _load_object(body: bytes) -> JsonObject:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return document if isinstance(document, Mapping) else {}


def _from_ms(value: object) -> datetime:
    """An epoch-milliseconds value as a UTC time; now if it is missing or out of range."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        with contextlib.suppress(OverflowError, OSError, ValueError):
            return datetime.fromtimestamp(value / 1000, tz=UTC)
    return datetime.now(tz=UTC)
