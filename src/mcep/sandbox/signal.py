"""A simulated signal-cli daemon in multi-account HTTP mode (``signal-cli daemon --http``).

Paths, status codes and bodies follow signal-cli's HTTP server and JSON-RPC handler:

* ``POST /api/v1/rpc``: 405 for other methods, 415 (empty body) unless the content type is
  ``application/json``; otherwise 200 with a JSON-RPC 2.0 response (or a batch of them), 201
  with no body when every request was a notification. Methods: ``send``, ``listAccounts``,
  ``version``; anything else is -32601 "Method not implemented".
* ``GET /api/v1/events[?account=+NUM]``: ``text/event-stream`` of ``event:receive`` with an
  ``id:`` and ``data:{"envelope":..,"account":..}``, a ``:`` keep-alive comment every 15 s;
  ``Last-Event-ID`` replays kept events after that id (all kept events if it is unknown).
  400 with no body for an account the daemon doesn't hold.
* ``GET /api/v1/check``: 200 with no body.

signal-cli has no tokens: what it authorizes is the set of accounts it holds. Outside strict
mode the sandbox holds every account (and, like a single-account daemon, has no account list
for ``listAccounts``); in strict mode it holds exactly the configured ``tokens["signal"]``
numbers and answers others with -32602 "Specified account does not exist".

How behaviour decisions are rendered:

* accept -> ``SUCCESS`` with the send timestamp; receipts and replies go to the account's
  event stream as the drawn fate says (an opt-out arrives as a "STOP" message: Signal itself
  tells the sender nothing).
* rate limited -> ``RATE_LIMIT_FAILURE`` with ``retryAfterSeconds``, under error -5. Signal
  challenges first contacts: when the account never exchanged a message with the recipient the
  result also carries a proof-required ``token`` (a captcha challenge); to a known contact it
  is plain throttling.
* transient, device offline -> ``NETWORK_FAILURE`` under error -1 "Failed to send message".
* not on Signal -> -1 "The user +X is not registered." (the number lookup fails first).
* device banned -> -32603 "Failed to send message: [401] Authorization failed!
  (AuthorizationFailedException)", as when the Signal server refuses the account.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, Router

from mcep.sandbox.behaviour import DecisionKind, Fate, LedgerKey, SendDecision
from mcep.sandbox.state import Action, Mailbox, SandboxState

PLATFORM = "signal"
RPC_PATH = "/api/v1/rpc"
EVENTS_PATH = "/api/v1/events"
CHECK_PATH = "/api/v1/check"
KEEPALIVE_SECONDS = 15.0
KEPT_EVENTS = 1000
DAEMON_VERSION = "0.13.22"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_ALL_ACCOUNTS = "*"

USER_ERROR = -1
RATE_LIMIT_ERROR = -5
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

EMPTY_MESSAGE = (
    "Sending empty message is not allowed, either a message, attachment or sticker must be given."
)
ACCOUNT_REFUSED = (
    "Failed to send message: [401] Authorization failed! (AuthorizationFailedException)"
)

Json = dict[str, Any]


class RpcError(Exception):
    """A JSON-RPC error object to answer with."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def to_json(self) -> Json:
        return {"code": self.code, "message": self.message, "data": self.data}


def build(state: SandboxState) -> Router:
    """The signal-cli daemon's three HTTP paths over the shared sandbox state."""
    daemon = SignalDaemon(state)
    return Router(
        routes=[
            Route(RPC_PATH, daemon.rpc, methods=ALL_METHODS),
            Route(EVENTS_PATH, daemon.events, methods=ALL_METHODS),
            Route(CHECK_PATH, daemon.check, methods=ALL_METHODS),
        ]
    )


# --- wire shapes -------------------------------------------------------------------------


def recipient_address(number: str) -> Json:
    """A ``RecipientAddress`` as signal-cli renders it."""
    return {"uuid": account_uuid(number), "number": number}


def account_uuid(number: str) -> str:
    """A stable ACI for a simulated number."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-signal:{number}"))


def success_response(result: Any, request_id: Any) -> Json:
    return {"jsonrpc": "2.0", "result": result, "id": request_id}


def error_response(error: RpcError, request_id: Any) -> Json:
    return {"jsonrpc": "2.0", "error": error.to_json(), "id": request_id}


def envelope(*, source: str, timestamp: int, **content: Json) -> Json:
    """An incoming envelope from ``source`` carrying one message kind."""
    return {
        "source": source,
        "sourceNumber": source,
        "sourceUuid": account_uuid(source),
        "sourceName": "",
        "sourceDevice": 1,
        "timestamp": timestamp,
        "serverReceivedTimestamp": timestamp,
        "serverDeliveredTimestamp": timestamp,
        **content,
    }


def receipt_envelope(*, source: str, when: int, kind: str, timestamps: list[int]) -> Json:
    """A delivery or read receipt from ``source`` for our sends at ``timestamps``."""
    receipt = {
        "when": when,
        "isDelivery": kind == "delivery",
        "isRead": kind == "read",
        "isViewed": False,
        "timestamps": timestamps,
    }
    return envelope(source=source, timestamp=when, receiptMessage=receipt)


def data_envelope(*, source: str, timestamp: int, text: str) -> Json:
    """A text message from ``source``."""
    data = {
        "timestamp": timestamp,
        "message": text,
        "expiresInSeconds": 0,
        "isExpirationUpdate": False,
        "viewOnce": False,
    }
    return envelope(source=source, timestamp=timestamp, dataMessage=data)


def send_result(number: str, decision: SendDecision, *, challenge: bool) -> Json:
    """One ``SendMessageResult`` for a decision that is not an account-level failure."""
    result: Json = {"recipientAddress": recipient_address(number), "type": _result_type(decision)}
    if decision.kind is DecisionKind.RATE_LIMITED:
        if challenge:
            result["token"] = str(uuid.uuid4())
        result["retryAfterSeconds"] = math.ceil(decision.retry_after or 0)
    return result


def _result_type(decision: SendDecision) -> str:
    if decision.kind in (DecisionKind.ACCEPT, DecisionKind.OPTED_OUT):
        return "SUCCESS"
    if decision.kind is DecisionKind.RATE_LIMITED:
        return "RATE_LIMIT_FAILURE"
    return "NETWORK_FAILURE"


def all_failed_error(response: Json) -> RpcError:
    """The error signal-cli raises when no recipient succeeded, by the kinds of failure."""
    kinds = {r["type"] for r in response["results"]}
    if kinds == {"RATE_LIMIT_FAILURE"}:
        message = "Failed to send message due to rate limiting"
        return RpcError(RATE_LIMIT_ERROR, message, {"response": response})
    return RpcError(USER_ERROR, "Failed to send message", {"response": response})


# --- the daemon --------------------------------------------------------------------------


@dataclass
class SignalDaemon:
    """The simulated daemon: JSON-RPC dispatch, sends, and per-account event mailboxes."""

    state: SandboxState
    _last_timestamp: dict[str, int] = field(default_factory=dict)
    _contacts: set[tuple[str, str]] = field(default_factory=set)

    # --- HTTP endpoints -------------------------------------------------------------------

    async def rpc(self, request: Request) -> Response:
        """``POST /api/v1/rpc``: one JSON-RPC request or a batch."""
        if request.method != "POST":
            return Response(status_code=405)
        if not request.headers.get("content-type", "").startswith("application/json"):
            return Response(status_code=415)
        try:
            document = json.loads(await request.body())
        except ValueError as exc:
            return JSONResponse(error_response(RpcError(PARSE_ERROR, str(exc)), None))
        if isinstance(document, list):
            answers = [a for a in [await self.handle(item) for item in document] if a is not None]
            return JSONResponse(answers) if answers else Response(status_code=201)
        answer = await self.handle(document)
        return JSONResponse(answer) if answer is not None else Response(status_code=201)

    async def check(self, request: Request) -> Response:
        """``GET /api/v1/check``: the daemon is running."""
        return Response(status_code=200 if request.method == "GET" else 405)

    async def events(self, request: Request) -> Response:
        """``GET /api/v1/events``: the account's (or every account's) incoming envelopes."""
        if request.method != "GET":
            return Response(status_code=405)
        account = request.query_params.get("account") or _ALL_ACCOUNTS
        if account != _ALL_ACCOUNTS and not self.state.authorized(PLATFORM, account):
            return Response(status_code=400)
        mailbox = self.state.mailbox(PLATFORM, account)
        start = _resume_from(mailbox, request.headers.get("last-event-id"))
        return StreamingResponse(_sse(mailbox, start), media_type="text/event-stream")

    # --- JSON-RPC -------------------------------------------------------------------------

    async def handle(self, document: object) -> Json | None:
        """Answer one request object; ``None`` for a valid notification (no ``id``)."""
        request_id = document.get("id") if isinstance(document, dict) else None
        try:
            method, params = _parse_request(document)
            result = await self._call(method, params)
        except RpcError as error:
            answer = error_response(error, request_id)
        else:
            answer = success_response(result, request_id)
        is_notification = isinstance(document, dict) and "id" not in document
        return None if is_notification and "result" in answer else answer

    async def _call(self, method: str, params: Json) -> Any:
        if method == "send":
            return await self._send(params)
        if method == "listAccounts":
            return self._list_accounts()
        if method == "version":
            return {"version": DAEMON_VERSION}
        raise RpcError(METHOD_NOT_FOUND, "Method not implemented")

    def _list_accounts(self) -> list[Json]:
        if not self.state.strict:
            raise RpcError(METHOD_NOT_FOUND, "Method not implemented")
        return [{"number": n} for n in sorted(self.state.tokens.get(PLATFORM, frozenset()))]

    # --- send -----------------------------------------------------------------------------

    async def _send(self, params: Json) -> Json:
        account = self._account(params)
        recipients, text = _send_params(params)
        await self.state.simulate_latency()
        decisions = {
            r: self.state.decide(platform=PLATFORM, device=account, recipient=r, token=account)
            for r in recipients
        }
        _raise_account_failures(decisions)
        timestamp = self._timestamp(account)
        results = [
            self._render(account, r, d, text=text, timestamp=timestamp)
            for r, d in decisions.items()
        ]
        response = {"timestamp": timestamp, "results": results}
        if all(r["type"] != "SUCCESS" for r in results):
            raise all_failed_error(response)
        return response

    def _account(self, params: Json) -> str:
        account = params.get("account")
        if not isinstance(account, str) or not account:
            raise RpcError(INVALID_PARAMS, "Method requires valid account parameter")
        if not self.state.authorized(PLATFORM, account):
            raise RpcError(INVALID_PARAMS, "Specified account does not exist")
        return account

    def _render(
        self, account: str, number: str, decision: SendDecision, *, text: str, timestamp: int
    ) -> Json:
        challenge = (account, number) not in self._contacts
        if decision.kind in (DecisionKind.ACCEPT, DecisionKind.OPTED_OUT):
            key = LedgerKey(PLATFORM, account, number, text)
            fate = self.state.accept(key, provider_message_id=str(timestamp))
            self._contacts.add((account, number))
            if decision.accepted:
                self._schedule(fate, account=account, number=number, timestamp=timestamp)
        return send_result(number, decision, challenge=challenge)

    def _timestamp(self, account: str) -> int:
        """Milliseconds since the epoch, strictly increasing per account (it is an identity)."""
        now = max(int(time.time() * 1000), self._last_timestamp.get(account, 0) + 1)
        self._last_timestamp[account] = now
        return now

    # --- what happens after acceptance ----------------------------------------------------

    def _schedule(self, fate: Fate, *, account: str, number: str, timestamp: int) -> None:
        later = self.state.scheduler.schedule
        if fate.delivered_after is not None:
            later(fate.delivered_after, self._receipt(account, number, "delivery", timestamp))
        if fate.read_after is not None:
            later(fate.read_after, self._receipt(account, number, "read", timestamp))
        if fate.reply_after is not None and fate.reply_text is not None:
            later(fate.reply_after, self._message(account, number, fate.reply_text))
        if fate.opt_out_after is not None:
            later(fate.opt_out_after, self._message(account, number, "STOP"))

    def _receipt(self, account: str, number: str, kind: str, sent: int) -> Action:
        async def push() -> None:
            when = self._timestamp(number)
            self.publish(
                account, receipt_envelope(source=number, when=when, kind=kind, timestamps=[sent])
            )

        return push

    def _message(self, account: str, number: str, text: str) -> Action:
        async def push() -> None:
            self._contacts.add((account, number))
            self.publish(
                account, data_envelope(source=number, timestamp=self._timestamp(number), text=text)
            )

        return push

    def publish(self, account: str, envelope_: Json) -> None:
        """Queue an envelope on the account's stream and on the all-accounts stream."""
        data = json.dumps({"envelope": envelope_, "account": account}, separators=(",", ":"))
        for name in (account, _ALL_ACCOUNTS):
            mailbox = self.state.mailbox(PLATFORM, name)
            item_id = mailbox.put(data)
            mailbox.confirm(before=item_id - KEPT_EVENTS + 1)


# --- helpers -----------------------------------------------------------------------------


def _parse_request(document: object) -> tuple[str, Json]:
    """The method and params of a request object, or the JSON-RPC error for it."""
    if not isinstance(document, dict):
        raise RpcError(INVALID_REQUEST, "request must be an object")
    method, params = document.get("method"), document.get("params") or {}
    if not isinstance(method, str):
        raise RpcError(INVALID_REQUEST, "method field must be set")
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "params must be an object")
    return method, params


def _send_params(params: Json) -> tuple[list[str], str]:
    recipients = params.get("recipient") or params.get("recipients")
    if isinstance(recipients, str):
        recipients = [recipients]
    if (
        not isinstance(recipients, list)
        or not recipients
        or not all(isinstance(r, str) for r in recipients)
    ):
        raise RpcError(USER_ERROR, "No recipients given")
    text = params.get("message") or ""
    if not isinstance(text, str) or not text:
        raise RpcError(USER_ERROR, EMPTY_MESSAGE)
    return list(dict.fromkeys(recipients)), text


def _raise_account_failures(decisions: dict[str, SendDecision]) -> None:
    """Failures that stop the whole send before any message goes out."""
    for number, decision in decisions.items():
        if decision.kind is DecisionKind.DEVICE_BANNED:
            raise RpcError(INTERNAL_ERROR, ACCOUNT_REFUSED)
        if decision.kind is DecisionKind.UNAUTHORIZED:
            raise RpcError(INVALID_PARAMS, "Specified account does not exist")
        if decision.kind is DecisionKind.NOT_ON_PLATFORM:
            raise RpcError(USER_ERROR, f"The user {number} is not registered.")


def _resume_from(mailbox: Mailbox, last_event_id: str | None) -> int:
    """Where a (re)connecting reader starts: after its last id, else only new events."""
    kept = mailbox.peek(limit=KEPT_EVENTS + 1)
    newest = kept[-1][0] if kept else 0
    if last_event_id is None:
        return newest + 1
    if last_event_id.isdigit() and kept and kept[0][0] - 1 <= int(last_event_id) <= newest:
        return int(last_event_id) + 1
    return 0


async def _sse(mailbox: Mailbox, start: int) -> AsyncIterator[bytes]:
    """The event stream: kept and new events from ``start``, keep-alive comments between."""
    next_id = start
    while True:
        items = await mailbox.wait(from_id=next_id, limit=100, max_wait=KEEPALIVE_SECONDS)
        if not items:
            yield b":\n"
            continue
        for item_id, data in items:
            yield f"id:{item_id}\nevent:receive\ndata:{data}\n\n".encode()
            next_id = item_id + 1
