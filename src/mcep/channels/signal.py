"""Signal through a signal-cli daemon: JSON-RPC 2.0 over HTTP, events over server-sent events.

The daemon (``signal-cli daemon --http=HOST:PORT``) exposes three paths: ``POST /api/v1/rpc``
for JSON-RPC requests, ``GET /api/v1/events`` for a server-sent event stream of incoming
envelopes (replies and receipts), and ``GET /api/v1/check`` for liveness. A multi-account
daemon needs the sender account as ``account`` in every request's params, so we always send it.

Classification (see CHANNELS.md for the sources):

* ``result.timestamp`` is the message's identity: receipts name it in ``timestamps``, so it is
  our provider message id (as a string).
* A per-recipient ``RATE_LIMIT_FAILURE`` that carries a proof ``token`` is a rate-limit
  *challenge*: only a human solving a captcha (``submitRateLimitChallenge``) clears it, so the
  account is unusable until then -> :class:`DeviceFailure` (with the provider's delay). A
  ``RATE_LIMIT_FAILURE`` without a token is plain throttling -> :class:`RetryLater` with
  ``retryAfterSeconds`` as the delay.
* Errors: -1 user error (classified by the recipient result when present), -3 I/O (retry),
  -4 untrusted identity (permanent for this recipient), -5 rate limit (as above), -6 captcha
  rejected (device), -32602 unknown account (device), -32603 internal (device when the Signal
  server refused the account's credentials, else retry).

The daemon itself has no authentication. If ``DeviceRef.token`` is set it is sent as a bearer
token, for deployments that put an authenticating reverse proxy in front of the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
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

log = logging.getLogger(__name__)

RPC_PATH = "/api/v1/rpc"
EVENTS_PATH = "/api/v1/events"
CHECK_PATH = "/api/v1/check"

# JSON-RPC error codes signal-cli uses on top of the standard ones.
USER_ERROR = -1
IO_ERROR = -3
UNTRUSTED_KEY_ERROR = -4
RATE_LIMIT_ERROR = -5
CAPTCHA_REJECTED_ERROR = -6
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Words in an error message that mean the Signal server refused the account itself.
_ACCOUNT_REFUSED_MARKERS = ("authorization failed", "authorizationfailed", "not registered")
_MAX_REASON = 200

JsonObject = Mapping[str, Any]


# --- send: request and classification ---------------------------------------------------


def build_send_request(*, message: OutboundMessage, device: DeviceRef) -> dict[str, Any]:
    """The JSON-RPC ``send`` request for one message; our message key is the request id."""
    return {
        "jsonrpc": "2.0",
        "method": "send",
        "params": {
            "account": device.address,
            "recipient": [message.recipient],
            "message": message.body,
        },
        "id": message.key,
    }


def classify_http_answer(*, status: int, body: bytes, retry_after: str | None = None) -> SendResult:
    """Classify one answer of ``POST /api/v1/rpc``, whatever its status and body."""
    if status == 200:
        document = _load_json(body)
        if not isinstance(document, Mapping):
            return DeviceFailure(reason="signal-cli answered 200 without a JSON-RPC response")
        return classify_rpc_response(document)
    if status == 429:
        return RetryLater(
            reason="HTTP 429 from signal-cli front", retry_after=_seconds(retry_after)
        )
    if status >= 500:
        return RetryLater(reason=f"signal-cli HTTP {status}", code=str(status))
    # 201 (no response), 404/405 (wrong path), 415 (content type), 401/403 (a proxy refused us):
    # every message through this device would get the same answer.
    return DeviceFailure(reason=f"signal-cli endpoint answered HTTP {status}", code=str(status))


def classify_rpc_response(document: JsonObject) -> SendResult:
    """Classify a JSON-RPC response object to a ``send`` request."""
    error = document.get("error")
    if isinstance(error, Mapping):
        return classify_rpc_error(error)
    result = document.get("result")
    if not isinstance(result, Mapping):
        return DeviceFailure(reason="signal-cli response has neither result nor error")
    failure = _first_failed_result(result)
    if failure is not None:
        return classify_recipient_result(failure)
    timestamp = result.get("timestamp")
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        return Accepted(provider_message_id=str(timestamp))
    return DeviceFailure(reason="signal-cli send result has no timestamp")


def classify_rpc_error(error: JsonObject) -> SendResult:
    """Classify a JSON-RPC error object; a recipient result in ``data.response`` wins."""
    code = error.get("code")
    message = _clip(error.get("message"))
    failure = _first_failed_result(_error_response(error))
    if failure is not None:
        return classify_recipient_result(failure)
    if code == RATE_LIMIT_ERROR:
        return RetryLater(reason="signal-cli: rate limited", code="-5")
    if code == CAPTCHA_REJECTED_ERROR:
        return DeviceFailure(reason="signal-cli: captcha rejected", code="-6")
    if code == UNTRUSTED_KEY_ERROR:
        return PermanentFailure(reason="recipient's identity is not trusted", code="-4")
    if code == USER_ERROR:
        return _classify_user_error(message)
    if code == IO_ERROR:
        return RetryLater(reason=f"signal-cli I/O error: {message}", code="-3")
    return _classify_protocol_error(code, message)


def classify_recipient_result(result: JsonObject) -> SendResult:
    """Classify one entry of ``results`` (a ``SendMessageResult``) that is not a success."""
    kind = str(result.get("type", ""))
    retry_after = _seconds(result.get("retryAfterSeconds"))
    if kind == "UNREGISTERED_FAILURE":
        return PermanentFailure(reason="recipient is not on Signal", code=kind)
    if kind == "IDENTITY_FAILURE":
        return PermanentFailure(reason="recipient's safety number changed", code=kind)
    if kind == "RATE_LIMIT_FAILURE" and result.get("token"):
        # The token is a challenge for a human; it never goes into a reason.
        return DeviceFailure(
            reason="rate-limit challenge: proof (captcha) required",
            code=kind,
            retry_after=retry_after,
        )
    if kind == "RATE_LIMIT_FAILURE":
        return RetryLater(reason="Signal rate limit", retry_after=retry_after, code=kind)
    if kind == "INVALID_PRE_KEY_FAILURE":
        return RetryLater(reason="recipient's pre-keys are stale", code=kind, per_recipient=True)
    return RetryLater(reason=f"send failed: {kind or 'unknown result'}", code=kind or None)


def _classify_user_error(message: str) -> SendResult:
    if "not registered" in message.lower():
        return PermanentFailure(reason="recipient is not on Signal", code="UNREGISTERED_FAILURE")
    return PermanentFailure(reason=f"signal-cli refused the send: {message}", code="-1")


def _classify_protocol_error(code: object, message: str) -> SendResult:
    if code == INTERNAL_ERROR and _mentions_refused_account(message):
        return DeviceFailure(reason="Signal refused the account's credentials", code=str(code))
    if code == INTERNAL_ERROR:
        return RetryLater(reason=f"signal-cli internal error: {message}", code=str(code))
    if code == INVALID_PARAMS:
        return DeviceFailure(reason=f"signal-cli: {message}", code=str(code))
    if code in (PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND):
        return DeviceFailure(reason=f"signal-cli rejected the request: {message}", code=str(code))
    return RetryLater(reason=f"signal-cli error {code}: {message}", code=str(code))


def _mentions_refused_account(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _ACCOUNT_REFUSED_MARKERS)


def _error_response(error: JsonObject) -> JsonObject:
    data = error.get("data")
    response = data.get("response") if isinstance(data, Mapping) else None
    return response if isinstance(response, Mapping) else {}


def _first_failed_result(result: JsonObject) -> JsonObject | None:
    """The first per-recipient result that is not a success (we send to one recipient)."""
    entries = result.get("results")
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("type") != "SUCCESS":
            return entry
    return None


# --- health ------------------------------------------------------------------------------


def classify_accounts(result: object, *, address: str) -> Health:
    """Health from a ``listAccounts`` result: is the sender account known to the daemon?"""
    if not isinstance(result, list):
        return Health(HealthStatus.DEGRADED, "listAccounts returned no list")
    numbers = [entry.get("number") for entry in result if isinstance(entry, Mapping)]
    if address in numbers:
        return Health(HealthStatus.OK, "daemon up, account registered")
    return Health(HealthStatus.DOWN, "account is not registered with the daemon")


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One server-sent event: its id, its type (``message`` if none was given) and its data."""

    id: str | None
    event: str
    data: str


class SseParser:
    """Incremental parser for a ``text/event-stream`` body (WHATWG server-sent events).

    Feed it lines as they arrive; it yields complete events at each blank line. Comment lines
    (``:`` keep-alives) and ``retry`` fields are skipped, and a partial event is dropped when
    the stream breaks, as the specification requires.
    """

    def __init__(self) -> None:
        self._id: str | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SseEvent | None:
        """Take one line (without its line ending); return an event when one completes."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    @property
    def last_event_id(self) -> str | None:
        """The last id seen, to resume with ``Last-Event-ID`` after a reconnect."""
        return self._id

    def _dispatch(self) -> SseEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SseEvent(self._id, self._event or "message", "\n".join(self._data))
        self._event, self._data = "", []
        return event


def parse_receive_event(data: str) -> list[ProviderEvent]:
    """Turn one ``event:receive`` data payload (``{"account":..,"envelope":..}``) into events.

    Receipts become one :class:`StatusEvent` per acknowledged send timestamp; a one-to-one data
    message with text becomes an :class:`InboundMessage`. Typing, sync, group and undecryptable
    envelopes are not ours to report and yield nothing; so does a payload that is not JSON.
    """
    document = _load_json(data.encode())
    if not isinstance(document, Mapping):
        return []
    envelope = document.get("envelope")
    account = str(document.get("account") or "")
    if not isinstance(envelope, Mapping) or "exception" in document:
        return []
    return list(_envelope_events(envelope, account=account))


def _envelope_events(envelope: JsonObject, *, account: str) -> Iterator[ProviderEvent]:
    source = str(envelope.get("sourceNumber") or envelope.get("sourceUuid") or "")
    receipt = envelope.get("receiptMessage")
    if isinstance(receipt, Mapping):
        yield from _receipt_events(receipt, account=account, source=source)
    data_message = envelope.get("dataMessage")
    if isinstance(data_message, Mapping):
        inbound = _inbound(data_message, envelope, account=account, source=source)
        if inbound is not None:
            yield inbound


def _receipt_events(receipt: JsonObject, *, account: str, source: str) -> Iterator[StatusEvent]:
    if receipt.get("isRead"):
        status = DeliveryStatus.READ
    elif receipt.get("isDelivery"):
        status = DeliveryStatus.DELIVERED
    else:
        return  # "viewed" receipts are for view-once media; nothing we send
    at = _from_ms(receipt.get("when"))
    for timestamp in _timestamps(receipt.get("timestamps")):
        yield StatusEvent(
            event_id=f"signal:{account}:{source}:{status.value}:{timestamp}",
            provider_message_id=str(timestamp),
            status=status,
            at=at,
        )


def _inbound(
    data_message: JsonObject, envelope: JsonObject, *, account: str, source: str
) -> InboundMessage | None:
    text = data_message.get("message")
    if not isinstance(text, str) or not text or data_message.get("groupInfo") or not source:
        return None
    timestamp = envelope.get("timestamp") or data_message.get("timestamp")
    return InboundMessage(
        event_id=f"signal:{account}:{source}:message:{timestamp}",
        sender=source,
        device_address=account,
        text=text,
        at=_from_ms(timestamp),
    )


def _timestamps(value: object) -> Iterable[int]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]


# --- the adapter -------------------------------------------------------------------------


class SignalAdapter:
    """Sends through, probes, and listens to a signal-cli daemon over its HTTP interface."""

    platform = Platform.SIGNAL

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        send_timeout: float | None = None,
        probe_timeout: float = 5.0,
        idle_timeout: float = 45.0,
    ) -> None:
        """Timeouts in seconds; ``send_timeout`` ``None`` keeps the session's own.

        ``idle_timeout`` bounds silence on the event stream (the daemon pings every 15 s).
        """
        self._session = session
        self._send_timeout = (
            aiohttp.ClientTimeout(total=send_timeout)
            if send_timeout is not None
            else session.timeout
        )
        self._probe_timeout = aiohttp.ClientTimeout(total=probe_timeout)
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=probe_timeout, sock_read=idle_timeout
        )

    async def send(self, message: OutboundMessage, device: DeviceRef) -> SendResult:
        """Send one text message; every outcome is classified, nothing raises."""
        request = build_send_request(message=message, device=device)
        try:
            async with self._session.post(
                _url(device, RPC_PATH),
                json=request,
                headers=_headers(device),
                timeout=self._send_timeout,
            ) as response:
                body = await response.read()
                retry_after = response.headers.get("Retry-After")
                return classify_http_answer(
                    status=response.status, body=body, retry_after=retry_after
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            return RetryLater(reason=f"signal-cli unreachable: {type(exc).__name__}")

    async def probe(self, device: DeviceRef) -> Health:
        """Daemon liveness (``/api/v1/check``), then whether it holds the sender account."""
        try:
            async with self._session.get(
                _url(device, CHECK_PATH), headers=_headers(device), timeout=self._probe_timeout
            ) as response:
                if response.status != 200:
                    return Health(HealthStatus.DOWN, f"check answered HTTP {response.status}")
            return await self._probe_account(device)
        except (TimeoutError, aiohttp.ClientError) as exc:
            return Health(HealthStatus.DOWN, f"signal-cli unreachable: {type(exc).__name__}")

    async def _probe_account(self, device: DeviceRef) -> Health:
        request = {"jsonrpc": "2.0", "method": "listAccounts", "id": "probe"}
        async with self._session.post(
            _url(device, RPC_PATH),
            json=request,
            headers=_headers(device),
            timeout=self._probe_timeout,
        ) as response:
            document = _load_json(await response.read()) if response.status == 200 else None
        if not isinstance(document, Mapping):
            return Health(HealthStatus.DEGRADED, "daemon up, listAccounts unanswered")
        error = document.get("error")
        if isinstance(error, Mapping) and error.get("code") == METHOD_NOT_FOUND:
            return Health(HealthStatus.OK, "daemon up (single-account mode)")
        return classify_accounts(document.get("result"), address=device.address)

    async def events(
        self,
        device: DeviceRef,
        *,
        last_event_id: str | None = None,
        reconnect_delay: float = 1.0,
        max_reconnect_delay: float = 30.0,
    ) -> AsyncGenerator[ProviderEvent, None]:
        """Receipts and replies for ``device``'s account, forever, reconnecting as needed.

        Reconnects resume with ``Last-Event-ID`` when the daemon numbers its events (it keeps
        the last 1000), so consumers must de-duplicate on ``event_id``; the ids are derived
        from the envelope (account, source, kind, timestamp) and are stable across replays.
        Stop it by cancelling the consuming task or closing the generator.
        """
        cursor = _Cursor(last_event_id)
        delay = reconnect_delay
        while True:
            stream = self._stream_once(device, cursor=cursor)
            try:
                async for event in stream:
                    delay = reconnect_delay
                    yield event
            except (TimeoutError, ValueError, aiohttp.ClientError) as exc:
                log.info(
                    "signal event stream of device %s broke: %s", device.id, type(exc).__name__
                )
            finally:
                await stream.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_reconnect_delay)

    async def _stream_once(
        self, device: DeviceRef, *, cursor: _Cursor
    ) -> AsyncGenerator[ProviderEvent, None]:
        """One connection to the event stream; advances ``cursor`` past each event read."""
        headers = {**_headers(device), "Accept": "text/event-stream"}
        if cursor.last_event_id:
            headers["Last-Event-ID"] = cursor.last_event_id
        async with self._session.get(
            _url(device, EVENTS_PATH),
            params={"account": device.address},
            headers=headers,
            timeout=self._stream_timeout,
        ) as response:
            if response.status != 200:
                log.warning("signal event stream of device %s: HTTP %s", device.id, response.status)
                return
            parser = SseParser()
            async for line in _lines(response.content):
                sse = parser.feed(line)
                if sse is None:
                    continue
                cursor.last_event_id = sse.id or cursor.last_event_id
                if sse.event == "receive":
                    for event in parse_receive_event(sse.data):
                        yield event


@dataclass(slots=True)
class _Cursor:
    """Where a reconnecting event stream resumes."""

    last_event_id: str | None


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[str]:
    """Split a byte stream into lines (LF or CRLF) with no limit on line length."""
    buffer = b""
    async for chunk in content.iter_any():
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            yield raw.removesuffix(b"\r").decode("utf-8", "replace")


# --- small helpers -----------------------------------------------------------------------


def _url(device: DeviceRef, path: str) -> str:
    return device.base_url.rstrip("/") + path


def _headers(device: DeviceRef) -> dict[str, str]:
    return {"Authorization": f"Bearer {device.token}"} if device.token else {}


def _load_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _seconds(value: object) -> float | None:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def _from_ms(value: object) -> datetime:
    """An epoch-milliseconds value as a UTC time; now if it is missing or out of range."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        with contextlib.suppress(OverflowError, OSError, ValueError):
            return datetime.fromtimestamp(value / 1000, tz=UTC)
    return datetime.now(tz=UTC)


def _clip(value: object) -> str:
    text = str(value) if value is not None else ""
    return text[:_MAX_REASON]
