"""WhatsApp Business Cloud API: sends, error classification, webhook checks and parsing.

Sends go to ``{base_url}/v{api_version}/{phone_number_id}/messages`` with a bearer token; with
``base_url`` ``https://graph.facebook.com`` this is Meta's API, with the sandbox's
``http://127.0.0.1:N/whatsapp`` it is the sandbox. Errors are classified by the Graph error
``code`` (see CHANNELS.md), never by HTTP status alone. Webhook POSTs must be checked with
:func:`verify_signature` over the raw body before :func:`parse_webhook` reads them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
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
    OptOutEvent,
    OutboundMessage,
    PermanentFailure,
    Platform,
    ProviderEvent,
    RetryLater,
    SendResult,
    StatusEvent,
)

log = logging.getLogger(__name__)

DEFAULT_API_VERSION = "21.0"
SIGNATURE_HEADER = "X-Hub-Signature-256"
HEALTH_FIELDS = (
    "verified_name,display_phone_number,quality_rating,messaging_limit_tier,status,throughput"
)

# --- error classification ----------------------------------------------------------------

# Delays Meta documents for some codes (it sends no Retry-After of its own).
DOCUMENTED_DELAYS: Mapping[int, float] = {131056: 6.0, 131049: 24 * 3600.0, 131057: 60.0}
_AUTH_CODES = frozenset({0, 190})
_ACCOUNT_BLOCKED_CODES = frozenset({131031, 368, 130497, 133010})
_PERMISSION_CODES = frozenset({10, *range(200, 300)})
_THROUGHPUT_CODES = frozenset({4, 80007, 130429})
_SPAM_LIMIT_CODES = frozenset({131048, 131064})
_TRANSIENT_CODES = frozenset({1, 2, 131000, 131016, 133004})
_BAD_REQUEST_CODES = frozenset({100, 131008, 131009})


def classify_error(
    code: int, *, http_status: int = 400, message: str = "", retry_after: float | None = None
) -> SendResult:
    """Map a Graph API error code to a send outcome (the table in CHANNELS.md).

    ``retry_after`` (from a Retry-After header, if any) wins over documented delays. Unknown
    codes are retried when the HTTP status says the server or throttling failed, and are
    permanent for other 4xx answers, so a request we built wrong is surfaced, not looped.
    """
    tag = str(code)
    reason = message.strip() or f"Graph API error {code}"
    delay = retry_after if retry_after is not None else DOCUMENTED_DELAYS.get(code)
    if code in _AUTH_CODES or code in _PERMISSION_CODES:
        return DeviceFailure(reason=f"authentication failed: {reason}", code=tag)
    if code in _ACCOUNT_BLOCKED_CODES:
        return DeviceFailure(reason=f"account blocked: {reason}", code=tag)
    if code in _THROUGHPUT_CODES or code in _TRANSIENT_CODES or code == 131057:
        return RetryLater(reason=reason, retry_after=delay, code=tag)
    if code in (131056, 131049):
        return RetryLater(reason=reason, retry_after=delay, code=tag, per_recipient=True)
    if code in _SPAM_LIMIT_CODES:
        return RetryLater(reason=f"device degraded: {reason}", retry_after=delay, code=tag)
    if code == 131047:
        return PermanentFailure(reason=reason, code=tag, needs_template=True)
    if code == 131050:
        return PermanentFailure(reason=reason, code=tag, opted_out=True)
    if code in (131026, 131030) or code in _BAD_REQUEST_CODES or 132000 <= code < 133000:
        return PermanentFailure(reason=reason, code=tag)
    if http_status >= 500 or http_status in (408, 429):
        return RetryLater(reason=reason, retry_after=delay, code=tag)
    return PermanentFailure(reason=f"unclassified: {reason}", code=tag)


def interpret_send_response(
    http_status: int, body: object, *, retry_after: float | None = None
) -> SendResult:
    """Turn the messages endpoint's answer (status and decoded JSON, or ``None``) into a result."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), int):
            return classify_error(
                error["code"],
                http_status=http_status,
                message=str(error.get("message", "")),
                retry_after=retry_after,
            )
        message_id = _first_message_id(body)
        if 200 <= http_status < 300 and message_id:
            return Accepted(provider_message_id=message_id)
    return _classify_http_status(http_status, retry_after=retry_after)


def _first_message_id(body: Mapping[str, Any]) -> str | None:
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        message_id = messages[0].get("id")
        return message_id if isinstance(message_id, str) and message_id else None
    return None


def _classify_http_status(http_status: int, *, retry_after: float | None) -> SendResult:
    """An answer without a usable body: judge by the status only."""
    reason = f"HTTP {http_status} without a Graph API body"
    if http_status in (401, 403):
        return DeviceFailure(reason=reason, code=f"http_{http_status}")
    if 400 <= http_status < 500 and http_status not in (408, 429):
        return PermanentFailure(reason=reason, code=f"http_{http_status}")
    return RetryLater(reason=reason, retry_after=retry_after, code=f"http_{http_status}")


# --- requests ----------------------------------------------------------------------------


def normalise_number(recipient: str) -> str:
    """E.164 without the plus or separators, as WhatsApp's ``to`` and ``wa_id`` use it."""
    return "".join(ch for ch in recipient if ch.isdigit())


def build_send_payload(message: OutboundMessage) -> dict[str, Any]:
    """The JSON body of a text or template send; our key rides in ``biz_opaque_callback_data``."""
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": normalise_number(message.recipient),
        "biz_opaque_callback_data": message.key,
    }
    template = message.template
    if template is None:
        payload["type"] = "text"
        payload["text"] = {"body": message.body}
        return payload
    body: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
    if template.body_parameters:
        parameters = [{"type": "text", "text": value} for value in template.body_parameters]
        body["components"] = [{"type": "body", "parameters": parameters}]
    payload["type"] = "template"
    payload["template"] = body
    return payload


def api_version(device: DeviceRef) -> str:
    """The Graph API version for this device, without the leading ``v``."""
    return device.options.get("api_version", DEFAULT_API_VERSION).removeprefix("v")


def phone_number_url(device: DeviceRef) -> str:
    """``{base}/v{version}/{phone_number_id}``."""
    return f"{device.base_url.rstrip('/')}/v{api_version(device)}/{device.address}"


def _auth(device: DeviceRef) -> dict[str, str]:
    return {"Authorization": f"Bearer {device.token}"}


async def _read_json(response: aiohttp.ClientResponse) -> object:
    raw = await response.read()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _retry_after_header(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# --- the adapter -------------------------------------------------------------------------


class WhatsAppAdapter:
    """Sends through the Cloud API messages endpoint and reads phone-number health."""

    platform: Platform = Platform.WHATSAPP

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    def __repr__(self) -> str:
        return "WhatsAppAdapter()"

    async def send(self, message: OutboundMessage, device: DeviceRef) -> SendResult:
        """Send a text or template message; transport failures are retry-later."""
        url = f"{phone_number_url(device)}/messages"
        try:
            async with self._session.post(
                url, json=build_send_payload(message), headers=_auth(device)
            ) as response:
                body = await _read_json(response)
                retry_after = _retry_after_header(response)
                return interpret_send_response(response.status, body, retry_after=retry_after)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return RetryLater(reason=f"transport error: {type(exc).__name__}", code="transport")

    async def mark_read(self, device: DeviceRef, *, message_id: str) -> bool:
        """Mark an inbound message read (blue ticks); ``True`` if the API said success."""
        payload = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
        url = f"{phone_number_url(device)}/messages"
        try:
            async with self._session.post(url, json=payload, headers=_auth(device)) as response:
                body = await _read_json(response)
        except (aiohttp.ClientError, TimeoutError):
            return False
        return isinstance(body, dict) and body.get("success") is True

    async def probe(self, device: DeviceRef) -> Health:
        """Quality rating, messaging tier and status of the phone number, from the API."""
        try:
            async with self._session.get(
                phone_number_url(device), params={"fields": HEALTH_FIELDS}, headers=_auth(device)
            ) as response:
                body = await _read_json(response)
                return interpret_phone_number(response.status, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Health(HealthStatus.DOWN, detail=f"unreachable: {type(exc).__name__}")


_DOWN_STATUSES = frozenset({"BANNED", "DELETED", "DISCONNECTED"})
_DEGRADED_STATUSES = frozenset({"FLAGGED", "RESTRICTED", "RATE_LIMITED", "PENDING"})


def interpret_phone_number(http_status: int, body: object) -> Health:
    """Health from the phone-number node (or its error)."""
    if not isinstance(body, dict) or "error" in body or not 200 <= http_status < 300:
        return _health_from_error(interpret_send_response(http_status, body))
    quality = str(body.get("quality_rating", "UNKNOWN"))
    number_status = str(body.get("status", "CONNECTED"))
    throughput = body.get("throughput")
    attributes = {
        "quality_rating": quality,
        "messaging_limit_tier": str(body.get("messaging_limit_tier", "")),
        "status": number_status,
        "throughput": str(throughput.get("level", "")) if isinstance(throughput, dict) else "",
    }
    if number_status in _DOWN_STATUSES:
        return Health(HealthStatus.DOWN, detail=f"number {number_status}", attributes=attributes)
    if quality in ("RED", "YELLOW") or number_status in _DEGRADED_STATUSES:
        detail = f"quality {quality}, number {number_status}"
        return Health(HealthStatus.DEGRADED, detail=detail, attributes=attributes)
    return Health(HealthStatus.OK, detail=f"quality {quality}", attributes=attributes)


def _health_from_error(result: SendResult) -> Health:
    if isinstance(result, Accepted):
        return Health(HealthStatus.DEGRADED, detail="unexpected answer to a health query")
    status = HealthStatus.DOWN if isinstance(result, DeviceFailure) else HealthStatus.DEGRADED
    return Health(status, detail=result.reason, attributes={"error_code": result.code or ""})


# --- webhooks ----------------------------------------------------------------------------


class WebhookPayloadError(ValueError):
    """The webhook body is not the JSON object Meta sends."""


def verify_signature(app_secret: str, raw_body: bytes, header: str | None) -> bool:
    """Check ``X-Hub-Signature-256: sha256=<hex>`` over the raw body, in constant time."""
    if not header or not app_secret:
        return False
    scheme, _, digest = header.strip().partition("=")
    if scheme.lower() != "sha256" or not digest:
        return False
    expected = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), digest.lower().encode())


def verify_subscription(params: Mapping[str, str], verify_token: str) -> str | None:
    """The ``hub.challenge`` to echo if this GET is a valid subscription check, else ``None``."""
    if params.get("hub.mode") != "subscribe" or not verify_token:
        return None
    offered = params.get("hub.verify_token", "")
    if not hmac.compare_digest(offered.encode(), verify_token.encode()):
        return None
    return params.get("hub.challenge")


def parse_webhook(payload: bytes) -> list[ProviderEvent]:
    """Statuses, inbound messages and marketing opt-outs in a (verified) webhook body."""
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise WebhookPayloadError("webhook body is not JSON") from exc
    if not isinstance(data, dict):
        raise WebhookPayloadError("webhook body is not a JSON object")
    if data.get("object") != "whatsapp_business_account":
        log.warning("ignoring WhatsApp webhook for object %r", data.get("object"))
        return []
    events: list[ProviderEvent] = []
    for entry in _dicts(data.get("entry")):
        for change in _dicts(entry.get("changes")):
            events.extend(_parse_change(change))
    return events


def _parse_change(change: Mapping[str, Any]) -> list[ProviderEvent]:
    value = change.get("value")
    if not isinstance(value, dict):
        return []
    metadata = value.get("metadata")
    device = str(metadata.get("phone_number_id", "")) if isinstance(metadata, dict) else ""
    field = change.get("field")
    if field == "messages":
        statuses = [e for s in _dicts(value.get("statuses")) for e in _parse_status(s, device)]
        inbound = [e for m in _dicts(value.get("messages")) for e in _parse_message(m, device)]
        return [*statuses, *inbound]
    if field == "user_preferences":
        return [e for p in _dicts(value.get("user_preferences")) for e in _parse_pref(p, device)]
    return []


_STATUS_MAP = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "played": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
}


def _parse_status(item: Mapping[str, Any], device: str) -> list[ProviderEvent]:
    wamid, status = item.get("id"), _STATUS_MAP.get(str(item.get("status")))
    if not isinstance(wamid, str) or status is None:
        log.warning("skipping WhatsApp status without id or known status")
        return []
    at = _timestamp(item.get("timestamp"))
    error = next(iter(_dicts(item.get("errors"))), {})
    code = error.get("code")
    reason = error.get("title") or error.get("message")
    key = item.get("biz_opaque_callback_data")
    event = StatusEvent(
        event_id=f"{wamid}:{item.get('status')}",
        provider_message_id=wamid,
        status=status,
        at=at,
        error_code=str(code) if code is not None else None,
        error_reason=str(reason) if reason else None,
        message_key=key if isinstance(key, str) else None,
    )
    if code != 131050:
        return [event]
    recipient = str(item.get("recipient_id", ""))
    opt_out = OptOutEvent(f"{wamid}:opt-out", recipient, device, at, reason="131050 marketing")
    return [event, opt_out]


def _parse_message(item: Mapping[str, Any], device: str) -> list[ProviderEvent]:
    wamid, sender, kind = item.get("id"), item.get("from"), item.get("type")
    if not isinstance(wamid, str) or not isinstance(sender, str) or kind in _IGNORED_TYPES:
        return []
    text = _message_text(item)
    return [InboundMessage(wamid, sender, device, text, _timestamp(item.get("timestamp")))]


_IGNORED_TYPES = frozenset({"reaction", "system", "unsupported", "request_welcome"})


def _message_text(item: Mapping[str, Any]) -> str:
    """The words of an inbound message: text body, button text, reply title or caption."""
    kind = str(item.get("type"))
    content = item.get(kind)
    if not isinstance(content, dict):
        return ""
    if kind == "text":
        return str(content.get("body", ""))
    if kind == "button":
        return str(content.get("text", ""))
    if kind == "interactive":
        reply = content.get("button_reply") or content.get("list_reply") or {}
        return str(reply.get("title", "")) if isinstance(reply, dict) else ""
    return str(content.get("caption", ""))


def _parse_pref(item: Mapping[str, Any], device: str) -> list[ProviderEvent]:
    if item.get("category") != "marketing_messages" or item.get("value") != "stop":
        return []
    sender, raw_ts = str(item.get("wa_id", "")), item.get("timestamp")
    event_id = f"pref:{device}:{sender}:{raw_ts}:stop"
    reason = str(item.get("detail") or "stopped marketing messages")
    return [OptOutEvent(event_id, sender, device, _timestamp(raw_ts), reason=reason)]


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _timestamp(value: object) -> datetime:
    try:
        return datetime.fromtimestamp(int(str(value)), UTC)
    except (TypeError, ValueError, OverflowError):
        return datetime.now(UTC)
