"""A simulated BlueBubbles server (the REST API of a Mac running Messages).

Each simulated Mac is a path segment: ``/imessage/<server>/api/v1/...`` (and
``/imessage/api/v1/...`` for one server called ``default``). The segment is the device in the
ledger and in the behaviour model, so a device's ``base_url`` is ``.../imessage/<address>``.

Wire format, after BlueBubbles' own response classes:

* every JSON answer is ``{"status":N,"message":..,"data":..}``; errors carry
  ``"error":{"type":..,"message":..}`` (types "Authentication Error", "Validation Error",
  "iMessage Error", "Gateway Timeout", ...);
* the password comes as the ``guid``, ``password`` or ``token`` query parameter: none is 401
  "Missing server password!"; a wrong one (strict mode: not in ``tokens["imessage"]``) is 401
  "Unauthorized";
* ``GET /api/v1/ping`` -> "Ping received!" / ``"pong"``;
* ``POST /api/v1/message/text`` validates ``chatGuid``, ``message``, ``method`` and, for
  ``apple-script``, a non-empty ``tempGuid`` and ``message``; a ``tempGuid`` still in flight is
  400 "Message is already queued to be sent!";
* ``POST /api/v1/webhook`` registers ``{"url","events"}``; ``GET /api/v1/webhook`` lists them.
  Events are POSTed as ``{"type":..,"data":{message}}``, unsigned.

How behaviour decisions are rendered (BlueBubbles has no rate-limit answer; these mirror what
the Mac does):

* accept -> 200 "Message sent!" with the message (its ``guid`` is the provider id), then
  ``updated-message`` webhooks for delivered and read, ``new-message`` for replies (an opt-out
  arrives as a "STOP" reply: iMessage tells the sender nothing else);
* not on iMessage -> 500 iMessage Error with the message attached, ``error`` 22;
* transient, rate limited -> 504 Gateway Timeout (throttled or stuck sends time out);
* device offline -> 502 from the tunnel in front of the unreachable Mac (plain text);
* device banned -> 500 iMessage Error, AppleScript "invalid index" (-1719): Messages has no
  iMessage account left to send from.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, Router

from mcep.sandbox.behaviour import DecisionKind, Fate, LedgerKey
from mcep.sandbox.state import Action, SandboxState, WebhookTarget

PLATFORM = "imessage"
DEFAULT_SERVER = "default"
NOT_REGISTERED_ERROR = 22
WEBHOOK_EVENT_LABELS = {
    "*": "All Events",
    "new-message": "New Messages",
    "updated-message": "Message Updates",
    "message-send-error": "Message Send Errors",
    "group-name-change": "Group Name Changes",
    "participant-removed": "Participant Removed",
    "participant-added": "Participant Added",
    "participant-left": "Participant Left",
    "chat-read-status-changed": "Chat Read Status Change",
    "typing-indicator": "Typing Indicators",
}
NO_ACCOUNT_ERROR = (
    "Messages got an error: Can't get account 1 whose service type = iMessage. "
    "Invalid index. (-1719)"
)

Json = dict[str, Any]


class HttpError(Exception):
    """A BlueBubbles error answer."""

    def __init__(self, status: int, message: str, error_type: str, error: str, data: Any = None):
        super().__init__(message)
        self.status, self.body = status, error_body(status, message, error_type, error, data)


def error_body(status: int, message: str, error_type: str, error: str, data: Any = None) -> Json:
    body: Json = {
        "status": status,
        "message": message,
        "error": {"type": error_type, "message": error},
    }
    if data is not None:
        body["data"] = data
    return body


def unauthorized(error: str = "Unauthorized") -> HttpError:
    return HttpError(
        401, "You are not authorized to access this resource", "Authentication Error", error
    )


def bad_request(error: str) -> HttpError:
    message = "You've made a bad request! Please check your request params & body"
    return HttpError(400, message, "Validation Error", error)


def success(data: Any, message: str = "Success") -> JSONResponse:
    return JSONResponse({"status": 200, "message": message, "data": data})


def build(state: SandboxState) -> Router:
    """The BlueBubbles routes, for the default server and for ``/<server>/...``."""
    server = BlueBubbles(state)
    routes: list[Route] = []
    for prefix in ("", "/{server}"):
        routes += [
            Route(f"{prefix}/api/v1/ping", server.ping, methods=["GET"]),
            Route(f"{prefix}/api/v1/message/text", server.send_text, methods=["POST"]),
            Route(f"{prefix}/api/v1/webhook", server.webhooks, methods=["GET", "POST"]),
        ]
    return Router(routes=routes)


# --- message rendering -------------------------------------------------------------------


def serialize_message(
    *, guid: str, text: str, address: str, is_from_me: bool, created: int, row_id: int
) -> Json:
    """A message as BlueBubbles' message serializer renders it (one-to-one chat)."""
    return {
        "originalROWID": row_id,
        "guid": guid,
        "text": text,
        "attributedBody": None,
        "handle": serialize_handle(address),
        "handleId": 1,
        "otherHandle": 0,
        "attachments": [],
        "subject": None,
        "error": 0,
        "dateCreated": created,
        "dateRead": None,
        "dateDelivered": None,
        "isFromMe": is_from_me,
        "hasDdResults": False,
        "isArchived": False,
        "itemType": 0,
        "groupTitle": None,
        "groupActionType": 0,
        "balloonBundleId": None,
        "associatedMessageGuid": None,
        "associatedMessageType": None,
        "expressiveSendStyleId": None,
        "threadOriginatorGuid": None,
        "hasPayloadData": False,
        "chats": [serialize_chat(address)],
        "dateEdited": None,
        "dateRetracted": None,
        "partCount": 1,
    }


def serialize_handle(address: str) -> Json:
    return {
        "originalROWID": 1,
        "address": address,
        "service": "iMessage",
        "uncanonicalizedId": None,
        "country": "us",
    }


def serialize_chat(address: str) -> Json:
    return {
        "originalROWID": 1,
        "guid": f"iMessage;-;{address}",
        "style": 45,
        "chatIdentifier": address,
        "isArchived": False,
        "displayName": "",
    }


def address_of(chat_guid: str) -> str | None:
    """The address of a one-to-one chat GUID (``<service>;-;<address>``), else ``None``."""
    service, sep, address = chat_guid.partition(";-;")
    return address if sep and service in ("iMessage", "SMS", "any") and address else None


# --- the server --------------------------------------------------------------------------


@dataclass
class _Webhook:
    url: str
    events: frozenset[str]
    id: int
    created: int


@dataclass
class BlueBubbles:
    """The simulated servers: auth, validation, sends, and webhook dispatch."""

    state: SandboxState
    _in_flight: set[tuple[str, str]] = field(default_factory=set)
    _webhooks: dict[str, list[_Webhook]] = field(default_factory=dict)

    # --- endpoints ------------------------------------------------------------------------

    async def ping(self, request: Request) -> Response:
        """``GET /api/v1/ping``."""
        return await self._guarded(request, lambda server: self._ping(server))

    async def send_text(self, request: Request) -> Response:
        """``POST /api/v1/message/text``."""
        body = await _json_body(request)
        return await self._guarded(request, lambda server: self._send(server, request, body))

    async def webhooks(self, request: Request) -> Response:
        """``GET`` lists and ``POST`` creates webhooks of this server."""
        body = await _json_body(request) if request.method == "POST" else {}
        return await self._guarded(
            request, lambda server: self._webhook_call(server, request, body)
        )

    async def _guarded(
        self, request: Request, handler: Callable[[str], Awaitable[Response]]
    ) -> Response:
        server = request.path_params.get("server", DEFAULT_SERVER)
        try:
            self._authorize(request)
            return await handler(server)
        except HttpError as error:
            return JSONResponse(error.body, status_code=error.status)

    def _authorize(self, request: Request) -> None:
        query = request.query_params
        password = query.get("guid") or query.get("password") or query.get("token")
        if not password:
            raise unauthorized("Missing server password!")
        if not self.state.authorized(PLATFORM, password.strip()):
            raise unauthorized()

    async def _ping(self, server: str) -> Response:
        if self.state.behaviour.device(server).is_offline(self.state.now()):
            return _unreachable()
        return success("pong", "Ping received!")

    # --- send -----------------------------------------------------------------------------

    async def _send(self, server: str, request: Request, body: Json) -> Response:
        chat, temp_guid, text = _validate_send(body)
        if (server, temp_guid) in self._in_flight:
            raise bad_request(f"Message is already queued to be sent! (Temp GUID: {temp_guid})")
        self._in_flight.add((server, temp_guid))
        try:
            await self.state.simulate_latency()
            return self._deliver(server, chat, temp_guid, text, token=_password(request))
        finally:
            self._in_flight.discard((server, temp_guid))

    def _deliver(
        self, server: str, address: str, temp_guid: str, text: str, *, token: str
    ) -> Response:
        decision = self.state.decide(
            platform=PLATFORM, device=server, recipient=address, token=token
        )
        message = self._message(text=text, address=address, is_from_me=True)
        if decision.kind is DecisionKind.DEVICE_OFFLINE:
            return _unreachable()
        if decision.kind in (DecisionKind.ACCEPT, DecisionKind.OPTED_OUT):
            key = LedgerKey(PLATFORM, server, address, temp_guid)
            fate = self.state.accept(key, provider_message_id=message["guid"])
            if decision.accepted:
                self._schedule(server, message, fate)
            return success({**message, "tempGuid": temp_guid}, "Message sent!")
        raise _failure(decision.kind, {**message, "tempGuid": temp_guid})

    def _message(self, *, text: str, address: str, is_from_me: bool) -> Json:
        return serialize_message(
            guid=str(uuid.uuid4()).upper(),
            text=text,
            address=address,
            is_from_me=is_from_me,
            created=_now_ms(),
            row_id=self.state.next_id("imessage:rowid"),
        )

    # --- what happens after acceptance ----------------------------------------------------

    def _schedule(self, server: str, message: Json, fate: Fate) -> None:
        later = self.state.scheduler.schedule
        delivered = {**message, "dateDelivered": None}
        if fate.delivered_after is not None:
            later(fate.delivered_after, self._update(server, delivered, "dateDelivered"))
        if fate.read_after is not None:
            later(fate.read_after, self._update(server, delivered, "dateRead"))
        address = message["handle"]["address"]
        if fate.reply_after is not None and fate.reply_text is not None:
            later(fate.reply_after, self._reply(server, address, fate.reply_text))
        if fate.opt_out_after is not None:
            later(fate.opt_out_after, self._reply(server, address, "STOP"))

    def _update(self, server: str, message: Json, field_name: str) -> Action:
        """An ``updated-message``; ``message`` is shared so read keeps the delivered date."""

        async def push() -> None:
            message[field_name] = _now_ms()
            if field_name == "dateRead" and message["dateDelivered"] is None:
                message["dateDelivered"] = message["dateRead"]
            await self.dispatch(server, "updated-message", dict(message))

        return push

    def _reply(self, server: str, address: str, text: str) -> Action:
        async def push() -> None:
            message = self._message(text=text, address=address, is_from_me=False)
            await self.dispatch(server, "new-message", message)

        return push

    async def dispatch(self, server: str, event_type: str, data: Json) -> None:
        """POST ``{"type","data"}`` to every webhook of ``server`` that wants this event."""
        body = json.dumps({"type": event_type, "data": data}, separators=(",", ":")).encode()
        for hook in self._webhooks.get(server, []):
            if "*" in hook.events or event_type in hook.events:
                await self.state.post_callback(hook.url, body, headers={}, platform=PLATFORM)

    # --- webhooks -------------------------------------------------------------------------

    async def _webhook_call(self, server: str, request: Request, body: Json) -> Response:
        if request.method == "GET":
            hooks = self._webhooks.get(server, [])
            return success([_render_hook(h) for h in hooks], "Successfully fetched webhooks!")
        url, events = _validate_webhook(body)
        hook = _Webhook(url, events, self.state.next_id("imessage:webhook"), _now_ms())
        self._webhooks.setdefault(server, []).append(hook)
        self.state.set_webhook(PLATFORM, server, WebhookTarget(url))
        return success(_render_hook(hook), "Successfully created webhook!")


# --- validation and failures -------------------------------------------------------------


def _validate_send(body: Json) -> tuple[str, str, str]:
    """``(address, tempGuid, text)`` of a valid apple-script send, else a 400."""
    chat, text = body.get("chatGuid"), body.get("message")
    temp_guid, method = body.get("tempGuid"), body.get("method") or "apple-script"
    if not isinstance(chat, str) or not chat:
        raise bad_request("The chatGuid field is required.")
    if "message" not in body or not isinstance(text, str):
        raise bad_request("The message field must be present.")
    if method not in ("apple-script", "private-api"):
        raise bad_request("The selected method is invalid.")
    if method == "apple-script" and (not isinstance(temp_guid, str) or not temp_guid):
        raise bad_request("A 'tempGuid' is required when sending via AppleScript")
    if not text:
        raise bad_request("A 'message' is required when sending via AppleScript")
    address = address_of(chat)
    if address is None:
        raise HttpError(
            404, "The requested resource was not found", "Database Error", "Chat does not exist!"
        )
    return address, str(temp_guid or uuid.uuid4()), text


def _validate_webhook(body: Json) -> tuple[str, frozenset[str]]:
    url, events = body.get("url"), body.get("events")
    if not isinstance(url, str) or not isinstance(events, list):
        raise bad_request("The url and events fields are required.")
    if not url:
        raise bad_request("Webhook URL is required!")
    if not url.startswith("http"):
        raise bad_request("Webhook URL must include an HTTP scheme!")
    for event in events:
        if not isinstance(event, str):
            raise bad_request("Webhook events must be strings!")
        if event not in WEBHOOK_EVENT_LABELS:
            allowed = ",".join(WEBHOOK_EVENT_LABELS)
            raise bad_request(f"Invalid webhook event: {event}! Webhook must be one of: {allowed}")
    return url, frozenset(events)


def _render_hook(hook: _Webhook) -> Json:
    events = [{"label": WEBHOOK_EVENT_LABELS[e], "value": e} for e in sorted(hook.events)]
    return {"id": hook.id, "url": hook.url, "events": events, "created": hook.created}


def _failure(kind: DecisionKind, message: Json) -> HttpError:
    if kind is DecisionKind.NOT_ON_PLATFORM:
        failed = {**message, "error": NOT_REGISTERED_ERROR}
        text = "Message sent with an error. See attached message"
        return HttpError(500, text, "iMessage Error", "Message failed to send!", failed)
    if kind is DecisionKind.DEVICE_BANNED:
        return HttpError(500, "Message Send Error", "iMessage Error", NO_ACCOUNT_ERROR)
    if kind is DecisionKind.UNAUTHORIZED:
        return unauthorized()
    # Transient errors, throttling and an offline Messages app: the send hangs and times out.
    return HttpError(504, "Gateway Timeout", "Gateway Timeout", "Gateway Timeout")


def _unreachable() -> Response:
    """What the tunnel in front of an unreachable Mac answers."""
    return PlainTextResponse("502 Bad Gateway", status_code=502)


async def _json_body(request: Request) -> Json:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _password(request: Request) -> str:
    query: Mapping[str, str] = request.query_params
    return (query.get("guid") or query.get("password") or query.get("token") or "").strip()


def _now_ms() -> int:
    return int(time.time() * 1000)
