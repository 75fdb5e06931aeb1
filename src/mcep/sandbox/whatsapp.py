"""Simulated WhatsApp Business Cloud API (Graph API messages and phone-number endpoints).

Serves ``POST /v{version}/{phone_number_id}/messages`` and ``GET /v{version}/{phone_number_id}``
with Graph's request checks and error shapes, and calls the app back at
``{callback_base}/api/v1/providers/whatsapp/webhook`` with ``statuses``, inbound ``messages``
and ``user_preferences`` changes, signed with ``X-Hub-Signature-256`` as Meta signs them.
As on the real service, a number that is not on WhatsApp (131026) or that stopped marketing
messages (131050) is accepted first and reported ``failed`` by webhook.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcep.sandbox.behaviour import DecisionKind, Fate, LedgerKey
from mcep.sandbox.state import SandboxState

PLATFORM = "whatsapp"
WEBHOOK_PATH = "/api/v1/providers/whatsapp/webhook"
MAX_TEXT_LENGTH = 4096
_VERSION = re.compile(r"^\d{1,3}\.\d$")
_TOKEN = re.compile(r"^[A-Za-z0-9_\-.|]{8,}$")
_DEFAULT_FIELDS = (
    "verified_name",
    "code_verification_status",
    "display_phone_number",
    "quality_rating",
    "platform_type",
    "throughput",
)
_ERROR_HREF = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"

# decision -> (HTTP status, Graph code, title, details, subcode)
_DECISION_ERRORS: Mapping[DecisionKind, tuple[int, int, str, str, int | None]] = {
    DecisionKind.UNAUTHORIZED: (
        401,
        190,
        "Invalid OAuth access token - Cannot parse access token",
        "",
        None,
    ),
    DecisionKind.DEVICE_BANNED: (
        400,
        131031,
        "Business Account locked",
        "Message failed to send because the sending account has been locked.",
        None,
    ),
    DecisionKind.DEVICE_OFFLINE: (
        400,
        131057,
        "Account in maintenance mode",
        "Business account is in maintenance mode, for example during a throughput upgrade.",
        None,
    ),
    DecisionKind.RATE_LIMITED: (
        429,
        130429,
        "Rate limit hit",
        "Message failed to send because there were too many messages sent from this phone "
        "number in a short period of time.",
        2494055,
    ),
    DecisionKind.TRANSIENT: (
        500,
        131000,
        "Something went wrong",
        "Message failed to send due to an unknown error. Try again later.",
        None,
    ),
}
_LATE_FAILURES: Mapping[DecisionKind, tuple[int, str, str]] = {
    DecisionKind.NOT_ON_PLATFORM: (
        131026,
        "Message undeliverable",
        "Unable to deliver message: the recipient is not a WhatsApp user.",
    ),
    DecisionKind.OPTED_OUT: (
        131050,
        "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
        "messages on WhatsApp from your business",
        "The user has stopped marketing messages from this business.",
    ),
}


class _Invalid(Exception):
    """A request Graph would refuse with an error body."""

    def __init__(self, code: int, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def build(state: SandboxState) -> Starlette:
    """The WhatsApp Cloud API routes bound to this run's state."""
    api = _WhatsAppSandbox(state)
    return Starlette(
        routes=[
            Route("/v{version}/{phone_number_id}/messages", api.messages, methods=["POST"]),
            Route("/v{version}/{phone_number_id}", api.phone_number, methods=["GET"]),
        ]
    )


def graph_error(
    code: int,
    message: str,
    *,
    status: int = 400,
    details: str = "",
    subcode: int | None = None,
    trace: str = "Asandbox",
) -> JSONResponse:
    """A Graph API error body: ``{"error": {message, type, code, error_data, fbtrace_id}}``."""
    text = message if code in (190, 2500) else f"(#{code}) {message}"
    error: dict[str, Any] = {"message": text, "type": "OAuthException", "code": code}
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = trace
    return JSONResponse({"error": error}, status_code=status)


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with a webhook body."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


async def check_subscription(state: SandboxState, *, verify_token: str) -> bool:
    """Do what Meta does when a webhook URL is saved: GET it with a challenge to echo.

    True when the app's route answered 200 with exactly the challenge.
    """
    url = state.callback_url(WEBHOOK_PATH)
    if url is None:
        return False
    challenge = str(1_000_000_000 + state.rng.randrange(1_000_000_000))
    params = {"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": verify_token}
    status, body = await state.get_text(url, params=params)
    return status == 200 and body == challenge


class _WhatsAppSandbox:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    # --- request checks ------------------------------------------------------------------

    def _check_path_and_token(self, request: Request) -> str:
        """The bearer token, after the version and token checks Graph makes."""
        if not _VERSION.match(request.path_params["version"]):
            raise _Invalid(2500, "Unknown path components", status=400)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not token:
            message = "An active access token must be used to query information."
            raise _Invalid(2500, message, status=400)
        if scheme.lower() != "bearer" or not _TOKEN.match(token.strip()):
            raise _Invalid(190, _DECISION_ERRORS[DecisionKind.UNAUTHORIZED][2], status=401)
        return token.strip()

    def _trace(self) -> str:
        return "A" + base64.urlsafe_b64encode(self.state.next_id("fbtrace").to_bytes(6)).decode()

    def _error(self, exc: _Invalid) -> JSONResponse:
        return graph_error(exc.code, exc.message, status=exc.status, trace=self._trace())

    # --- POST /messages ------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        try:
            token = self._check_path_and_token(request)
            payload = await _json_object(request)
            if payload.get("status") == "read":
                return _mark_read(payload)
            to, message_key = _validate_send(payload, self.state.whatsapp_templates)
        except _Invalid as exc:
            return self._error(exc)
        await self.state.simulate_latency()
        return self._decide_and_answer(request, token=token, to=to, message_key=message_key)

    def _decide_and_answer(
        self, request: Request, *, token: str, to: str, message_key: str
    ) -> Response:
        device, wa_id = request.path_params["phone_number_id"], _digits(to)
        decision = self.state.decide(platform=PLATFORM, device=device, recipient=wa_id, token=token)
        if decision.kind in _DECISION_ERRORS:
            status, code, title, details, subcode = _DECISION_ERRORS[decision.kind]
            return graph_error(
                code, title, status=status, details=details, subcode=subcode, trace=self._trace()
            )
        wamid = self._wamid(device, wa_id)
        key = LedgerKey(PLATFORM, device, wa_id, message_key)
        sent = _Sent(device=device, wa_id=wa_id, wamid=wamid, message_key=message_key)
        if decision.kind in _LATE_FAILURES:
            self.state.ledger.record(key, provider_message_id=wamid, at=self.state.now())
            code, title, details = _LATE_FAILURES[decision.kind]
            self._schedule(0.0, _status_value(sent, "failed", error=(code, title, details)))
        else:
            self._schedule_fate(sent, self.state.accept(key, provider_message_id=wamid))
        body = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": wa_id}],
            "messages": [{"id": wamid, "message_status": "accepted"}],
        }
        return JSONResponse(body)

    def _wamid(self, device: str, wa_id: str) -> str:
        serial = self.state.next_id("wamid")
        raw = f"{wa_id}:{device}:{serial:012d}".encode()
        return "wamid.HBgL" + base64.b64encode(raw).decode()

    # --- GET phone number ----------------------------------------------------------------

    async def phone_number(self, request: Request) -> Response:
        try:
            token = self._check_path_and_token(request)
        except _Invalid as exc:
            return self._error(exc)
        device = request.path_params["phone_number_id"]
        behaviour = self.state.behaviour.device(device)
        now = self.state.now()
        for kind, failing in (
            (DecisionKind.UNAUTHORIZED, not self.state.authorized(PLATFORM, token)),
            (DecisionKind.DEVICE_BANNED, behaviour.is_banned(now)),
            (DecisionKind.DEVICE_OFFLINE, behaviour.is_offline(now)),
        ):
            if failing:
                status, code, title, details, _ = _DECISION_ERRORS[kind]
                return graph_error(code, title, status=status, details=details, trace=self._trace())
        fields = request.query_params.get("fields")
        wanted = [f.strip() for f in fields.split(",")] if fields else list(_DEFAULT_FIELDS)
        node = _phone_number_node(device, behaviour.quality_rating, behaviour.messaging_tier)
        node_name = behaviour.display_name or "MCEP Sandbox"
        node["verified_name"] = node_name
        return JSONResponse({**{f: node[f] for f in wanted if f in node}, "id": device})

    # --- callbacks -----------------------------------------------------------------------

    def _schedule_fate(self, sent: _Sent, fate: Fate) -> None:
        self._schedule(0.0, _status_value(sent, "sent"))
        if fate.delivered_after is not None:
            self._schedule(fate.delivered_after, _status_value(sent, "delivered"))
        if fate.read_after is not None:
            self._schedule(fate.read_after, _status_value(sent, "read"))
        if fate.reply_after is not None and fate.reply_text is not None:
            inbound = self._inbound_value(sent, fate.reply_text)
            self._schedule(fate.reply_after, inbound)
        if fate.opt_out_after is not None:
            self.state.scheduler.schedule(fate.opt_out_after, lambda: self._opt_out(sent))

    def _inbound_value(self, sent: _Sent, text: str) -> tuple[str, dict[str, Any]]:
        wamid = (
            "wamid.HBgL" + base64.b64encode(f"in:{self.state.next_id('wamid')}".encode()).decode()
        )
        value = {
            "contacts": [{"profile": {"name": f"Sandbox {sent.wa_id[-4:]}"}, "wa_id": sent.wa_id}],
            "messages": [
                {
                    "from": sent.wa_id,
                    "id": wamid,
                    "timestamp": str(int(time.time())),
                    "text": {"body": text},
                    "type": "text",
                }
            ],
        }
        return "messages", {"device": sent.device, **value}

    async def _opt_out(self, sent: _Sent) -> None:
        state = self.state
        state.mark_opted_out(platform=PLATFORM, device=sent.device, recipient=sent.wa_id)
        preference = {
            "wa_id": sent.wa_id,
            "detail": "User requested to stop marketing messages",
            "category": "marketing_messages",
            "value": "stop",
            "timestamp": int(time.time()),
        }
        value = {"contacts": [{"wa_id": sent.wa_id}], "user_preferences": [preference]}
        await self._deliver(("user_preferences", {"device": sent.device, **value}))

    def _schedule(self, delay: float, change: tuple[str, dict[str, Any]]) -> None:
        if self.state.callback_url(WEBHOOK_PATH) is None:
            return
        self.state.scheduler.schedule(delay, lambda: self._deliver(change))

    async def _deliver(self, change: tuple[str, dict[str, Any]]) -> None:
        url = self.state.callback_url(WEBHOOK_PATH)
        if url is None:
            return
        field, value = change
        body = json.dumps(_envelope(field, dict(value))).encode()
        headers = {"X-Hub-Signature-256": sign(self.state.whatsapp_app_secret, body)}
        await self.state.post_callback(url, body, headers=headers, platform=PLATFORM)


@dataclass(frozen=True, slots=True)
class _Sent:
    """An accepted message, as the callbacks about it need to know it."""

    device: str
    wa_id: str
    wamid: str
    message_key: str


# --- pure helpers ------------------------------------------------------------------------


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        payload = json.loads(await request.body())
    except ValueError as exc:
        raise _Invalid(100, "Invalid parameter") from exc
    if not isinstance(payload, dict):
        raise _Invalid(100, "Invalid parameter")
    if payload.get("messaging_product") != "whatsapp":
        raise _Invalid(100, "The parameter messaging_product is required.")
    return payload


def _mark_read(payload: Mapping[str, Any]) -> Response:
    if not isinstance(payload.get("message_id"), str):
        raise _Invalid(100, "The parameter message_id is required.")
    return JSONResponse({"success": True})


def _validate_send(
    payload: Mapping[str, Any], templates: Mapping[str, int] | None
) -> tuple[str, str]:
    """The ``to`` number and the ledger's message key, or :class:`_Invalid`."""
    to = payload.get("to")
    if not isinstance(to, str) or not _digits(to):
        raise _Invalid(100, "The parameter to is required.")
    kind = payload.get("type", "text")
    if kind == "text":
        content = _text_body(payload)
    elif kind == "template":
        content = _template_key(payload, templates)
    else:
        raise _Invalid(131009, "Parameter value is not valid")
    opaque = payload.get("biz_opaque_callback_data")
    return to, opaque if isinstance(opaque, str) and opaque else content


def _text_body(payload: Mapping[str, Any]) -> str:
    text = payload.get("text")
    body = text.get("body") if isinstance(text, dict) else None
    if not isinstance(body, str) or not body:
        raise _Invalid(100, "The parameter text['body'] is required.")
    if len(body) > MAX_TEXT_LENGTH:
        raise _Invalid(100, "Param text['body'] must be at most 4096 characters long.")
    return body


def _template_key(payload: Mapping[str, Any], templates: Mapping[str, int] | None) -> str:
    template = payload.get("template")
    if not isinstance(template, dict) or not isinstance(template.get("name"), str):
        raise _Invalid(100, "The parameter template['name'] is required.")
    language = template.get("language")
    if not isinstance(language, dict) or not isinstance(language.get("code"), str):
        raise _Invalid(100, "The parameter template['language']['code'] is required.")
    params = _body_parameters(template)
    name = template["name"]
    if templates is not None and name not in templates:
        raise _Invalid(132001, "Template name does not exist in the translation")
    if templates is not None and templates[name] != len(params):
        raise _Invalid(132000, "Number of parameters does not match the expected number of params")
    return f"template:{name}:{language['code']}:" + "|".join(params)


def _body_parameters(template: Mapping[str, Any]) -> list[str]:
    components = template.get("components") or []
    if not isinstance(components, list):
        raise _Invalid(100, "Invalid parameter")
    texts: list[str] = []
    for component in components:
        if isinstance(component, dict) and component.get("type") == "body":
            for parameter in component.get("parameters") or []:
                if not isinstance(parameter, dict) or not isinstance(parameter.get("text"), str):
                    raise _Invalid(131008, "Required parameter is missing")
                texts.append(parameter["text"])
    return texts


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


def _display_number(device: str) -> str:
    return "1555" + (_digits(device)[-7:] or "0").zfill(7)


def _waba_id(device: str) -> str:
    return str(int.from_bytes(hashlib.sha256(device.encode()).digest()[:6]) + 10**14)


def _phone_number_node(device: str, quality: str, tier: str) -> dict[str, Any]:
    return {
        "code_verification_status": "VERIFIED",
        "display_phone_number": _display_number(device),
        "quality_rating": quality,
        "messaging_limit_tier": tier,
        "platform_type": "CLOUD_API",
        "status": "CONNECTED",
        "throughput": {"level": "STANDARD"},
    }


def _status_value(
    sent: _Sent, status: str, *, error: tuple[int, str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    item: dict[str, Any] = {
        "id": sent.wamid,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": sent.wa_id,
    }
    if sent.message_key:
        item["biz_opaque_callback_data"] = sent.message_key
    if error is None:
        conversation: dict[str, Any] = {"id": hashlib.sha256(sent.wamid.encode()).hexdigest()[:32]}
        if status == "sent":
            conversation["expiration_timestamp"] = str(int(time.time()) + 24 * 3600)
        item["conversation"] = {**conversation, "origin": {"type": "marketing"}}
        item["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "marketing"}
    else:
        code, title, details = error
        item["errors"] = [
            {
                "code": code,
                "title": title,
                "message": title,
                "error_data": {"details": details},
                "href": _ERROR_HREF,
            }
        ]
    return "messages", {"device": sent.device, "statuses": [item]}


def _envelope(field: str, value: dict[str, Any]) -> dict[str, Any]:
    """Wrap one change the way Meta does: object, entry[id, changes[value, field]]."""
    device = value.pop("device")
    metadata = {"display_phone_number": _display_number(device), "phone_number_id": device}
    full_value = {"messaging_product": "whatsapp", "metadata": metadata, **value}
    change = {"value": full_value, "field": field}
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": _waba_id(device), "changes": [change]}],
    }
