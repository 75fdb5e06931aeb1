"""Simulated Telegram Bot API under ``/bot{token}/{method}``.

Methods: sendMessage, getMe, getUpdates (long polling, offsets confirm, 409 while a webhook is
set), setWebhook, deleteWebhook, getWebhookInfo. Parameters are read from the query string,
form bodies or JSON, as the real API accepts. Malformed tokens get 404, unknown tokens in
strict mode 401, errors ``{"ok": false, "error_code", "description", "parameters"}``.
Updates (replies and ``my_chat_member`` blocks) go to the registered webhook with
``X-Telegram-Bot-Api-Secret-Token``, or wait in the bot's getUpdates queue. Bots get no
delivered or read receipts, so neither does the sandbox send any. One deliberate difference:
``setWebhook`` accepts plain-HTTP loopback URLs so tests can receive the calls.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcep.sandbox.behaviour import DecisionKind, Fate, LedgerKey, SendDecision
from mcep.sandbox.state import SandboxState, WebhookTarget

PLATFORM = "telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT_LENGTH = 4096
MAX_POLL_TIMEOUT = 50
_TOKEN = re.compile(r"^(\d{1,20}):[A-Za-z0-9_-]+$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_TRUE = {"true", "1", "yes"}

_DECISION_ERRORS: Mapping[DecisionKind, tuple[int, str]] = {
    DecisionKind.UNAUTHORIZED: (401, "Unauthorized"),
    DecisionKind.DEVICE_BANNED: (401, "Unauthorized"),
    DecisionKind.DEVICE_OFFLINE: (502, "Bad Gateway"),
    DecisionKind.TRANSIENT: (500, "Internal Server Error"),
    DecisionKind.NOT_ON_PLATFORM: (400, "Bad Request: chat not found"),
    DecisionKind.OPTED_OUT: (403, "Forbidden: bot was blocked by the user"),
}

Params = dict[str, Any]
Handler = Callable[[str, str, Params], Awaitable[Response]]


class _BadRequest(Exception):
    def __init__(self, description: str, *, code: int = 400) -> None:
        super().__init__(description)
        self.description, self.code = description, code


def error(code: int, description: str, *, parameters: Mapping[str, Any] | None = None) -> Response:
    """A Bot API error body with the same HTTP status as ``error_code``."""
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = dict(parameters)
    return JSONResponse(body, status_code=code)


def ok(result: Any, *, description: str | None = None) -> Response:
    """A Bot API success body."""
    body: dict[str, Any] = {"ok": True, "result": result}
    if description:
        body["description"] = description
    return JSONResponse(body)


def build(state: SandboxState) -> Starlette:
    """The Bot API routes bound to this run's state."""
    api = _TelegramSandbox(state)
    return Starlette(routes=[Route("/bot{token}/{method}", api.dispatch, methods=["GET", "POST"])])


class _TelegramSandbox:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.methods: dict[str, Handler] = {
            "sendmessage": self.send_message,
            "getme": self.get_me,
            "getupdates": self.get_updates,
            "setwebhook": self.set_webhook,
            "deletewebhook": self.delete_webhook,
            "getwebhookinfo": self.get_webhook_info,
        }

    async def dispatch(self, request: Request) -> Response:
        token, method = request.path_params["token"], request.path_params["method"]
        match = _TOKEN.match(token)
        handler = self.methods.get(method.lower())
        if match is None or handler is None:
            return error(404, "Not Found")
        try:
            params = await _params(request)
            return await handler(match.group(1), token, params)
        except _BadRequest as exc:
            return error(exc.code, exc.description)

    def _account_problem(self, bot_id: str, token: str) -> Response | None:
        """401 for unknown (strict) or banned bots, 502 while "offline"; else ``None``."""
        behaviour, now = self.state.behaviour.device(bot_id), self.state.now()
        if not self.state.authorized(PLATFORM, token) or behaviour.is_banned(now):
            return error(401, "Unauthorized")
        if behaviour.is_offline(now):
            return error(502, "Bad Gateway")
        return None

    # --- sendMessage ---------------------------------------------------------------------

    async def send_message(self, bot_id: str, token: str, params: Params) -> Response:
        chat = params.get("chat_id")
        if chat is None or chat == "":
            raise _BadRequest("Bad Request: chat_id is empty")
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _BadRequest("Bad Request: message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise _BadRequest("Bad Request: message is too long")
        await self.state.simulate_latency()
        chat_key = str(chat)
        decision = self.state.decide(
            platform=PLATFORM, device=bot_id, recipient=chat_key, token=token
        )
        if not decision.accepted:
            return _render_refusal(decision)
        message_id = self.state.next_id(f"telegram:message:{bot_id}:{chat_key}")
        key = LedgerKey(PLATFORM, bot_id, chat_key, text)
        fate = self.state.accept(key, provider_message_id=f"{bot_id}:{chat_key}:{message_id}")
        self._schedule_fate(bot_id, chat_key, fate)
        message = {
            "message_id": message_id,
            "from": self._bot_user(bot_id),
            "chat": _chat(chat_key),
            "date": int(time.time()),
            "text": text,
        }
        return ok(message)

    # --- getMe ---------------------------------------------------------------------------

    async def get_me(self, bot_id: str, token: str, params: Params) -> Response:
        problem = self._account_problem(bot_id, token)
        if problem is not None:
            return problem
        me = {
            **self._bot_user(bot_id),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        return ok(me)

    def _bot_user(self, bot_id: str) -> dict[str, Any]:
        name = self.state.behaviour.device(bot_id).display_name or "MCEP Sandbox"
        return {
            "id": int(bot_id),
            "is_bot": True,
            "first_name": name,
            "username": bot_username(bot_id),
        }

    # --- getUpdates ----------------------------------------------------------------------

    async def get_updates(self, bot_id: str, token: str, params: Params) -> Response:
        problem = self._account_problem(bot_id, token)
        if problem is not None:
            return problem
        if self.state.webhook(PLATFORM, bot_id) is not None:
            description = (
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first"
            )
            return error(409, description)
        offset = _int(params, "offset", 0)
        limit = min(max(_int(params, "limit", 100), 1), 100)
        wait = min(max(_int(params, "timeout", 0), 0), MAX_POLL_TIMEOUT)
        box = self.state.mailbox(PLATFORM, bot_id)
        if offset < 0:
            tail = box.peek(limit=len(box))[offset:]
            if tail:
                box.confirm(tail[0][0])
            return ok([item for _, item in tail[:limit]])
        if offset > 0:
            box.confirm(offset)
        items = await box.wait(from_id=offset, limit=limit, max_wait=wait)
        return ok([item for _, item in items])

    # --- webhooks ------------------------------------------------------------------------

    async def set_webhook(self, bot_id: str, token: str, params: Params) -> Response:
        problem = self._account_problem(bot_id, token)
        if problem is not None:
            return problem
        url = str(params.get("url") or "")
        secret = params.get("secret_token")
        if secret is not None and not _SECRET.match(str(secret)):
            raise _BadRequest("Bad Request: secret token contains unallowed characters")
        box = self.state.mailbox(PLATFORM, bot_id)
        if _bool(params, "drop_pending_updates"):
            box.confirm(box.peek(limit=len(box))[-1][0] + 1 if len(box) else 0)
        if not url:
            return self._remove_webhook(bot_id)
        if not url.startswith(("http://", "https://")):
            raise _BadRequest("Bad Request: bad webhook: HTTPS url must be provided for webhook")
        target = WebhookTarget(url=url, secret=str(secret) if secret is not None else None)
        already = self.state.webhook(PLATFORM, bot_id) == target
        self.state.set_webhook(PLATFORM, bot_id, target)
        self._flush_pending(bot_id)
        return ok(True, description="Webhook is already set" if already else "Webhook was set")

    async def delete_webhook(self, bot_id: str, token: str, params: Params) -> Response:
        problem = self._account_problem(bot_id, token)
        if problem is not None:
            return problem
        box = self.state.mailbox(PLATFORM, bot_id)
        if _bool(params, "drop_pending_updates") and len(box):
            box.confirm(box.peek(limit=len(box))[-1][0] + 1)
        return self._remove_webhook(bot_id)

    def _remove_webhook(self, bot_id: str) -> Response:
        existed = self.state.webhook(PLATFORM, bot_id) is not None
        self.state.set_webhook(PLATFORM, bot_id, None)
        return ok(
            True, description="Webhook was deleted" if existed else "Webhook is already deleted"
        )

    async def get_webhook_info(self, bot_id: str, token: str, params: Params) -> Response:
        problem = self._account_problem(bot_id, token)
        if problem is not None:
            return problem
        target = self.state.webhook(PLATFORM, bot_id)
        info: dict[str, Any] = {
            "url": target.url if target else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self.state.mailbox(PLATFORM, bot_id)),
        }
        if target is not None:
            info["max_connections"] = 40
            info["ip_address"] = "127.0.0.1"
        return ok(info)

    # --- updates -------------------------------------------------------------------------

    def _schedule_fate(self, bot_id: str, chat: str, fate: Fate) -> None:
        scheduler = self.state.scheduler
        if fate.reply_after is not None and fate.reply_text is not None:
            text = fate.reply_text
            scheduler.schedule(fate.reply_after, lambda: self._reply(bot_id, chat, text))
        if fate.opt_out_after is not None:
            scheduler.schedule(fate.opt_out_after, lambda: self._block(bot_id, chat))

    async def _reply(self, bot_id: str, chat: str, text: str) -> None:
        message_id = self.state.next_id(f"telegram:message:{bot_id}:{chat}")
        message = {
            "message_id": message_id,
            "from": _person(chat),
            "chat": _chat(chat),
            "date": int(time.time()),
            "text": text,
        }
        await self._push(bot_id, {"message": message})

    async def _block(self, bot_id: str, chat: str) -> None:
        self.state.mark_opted_out(platform=PLATFORM, device=bot_id, recipient=chat)
        bot = self._bot_user(bot_id)
        change = {
            "chat": _chat(chat),
            "from": _person(chat),
            "date": int(time.time()),
            "old_chat_member": {"user": bot, "status": "member"},
            "new_chat_member": {"user": bot, "status": "kicked", "until_date": 0},
        }
        await self._push(bot_id, {"my_chat_member": change})

    async def _push(self, bot_id: str, content: dict[str, Any]) -> None:
        """Give the update an id; send it to the webhook if one is set, else queue it."""
        update = {"update_id": self.state.next_id(f"telegram:update:{bot_id}"), **content}
        target = self.state.webhook(PLATFORM, bot_id)
        if target is None:
            self.state.mailbox(PLATFORM, bot_id).put(update, item_id=update["update_id"])
            return
        await self._post(target, update)

    async def _post(self, target: WebhookTarget, update: dict[str, Any]) -> None:
        headers = {SECRET_HEADER: target.secret} if target.secret else {}
        body = json.dumps(update).encode()
        await self.state.post_callback(target.url, body, headers=headers, platform=PLATFORM)

    def _flush_pending(self, bot_id: str) -> None:
        """Updates queued before the webhook was set go to it, as Telegram does."""
        box = self.state.mailbox(PLATFORM, bot_id)
        pending = box.peek(limit=len(box))
        target = self.state.webhook(PLATFORM, bot_id)
        if not pending or target is None:
            return
        box.confirm(pending[-1][0] + 1)
        for _, update in pending:
            self.state.scheduler.schedule(0.0, functools.partial(self._post, target, update))


# --- helpers -----------------------------------------------------------------------------


def bot_username(bot_id: str) -> str:
    """The sandbox's username for a bot id (``sandbox<id>_bot``)."""
    return f"sandbox{bot_id}_bot"


def _render_refusal(decision: SendDecision) -> Response:
    if decision.kind is DecisionKind.RATE_LIMITED:
        seconds = max(1, math.ceil(decision.retry_after or 1))
        description = f"Too Many Requests: retry after {seconds}"
        return error(429, description, parameters={"retry_after": seconds})
    code, description = _DECISION_ERRORS[decision.kind]
    return error(code, description)


def _chat(chat: str) -> dict[str, Any]:
    if chat.startswith("@"):
        return {
            "id": -1000000000000 - len(chat),
            "title": chat[1:],
            "username": chat[1:],
            "type": "channel",
        }
    return {"id": _maybe_int(chat), "first_name": f"User{chat[-4:]}", "type": "private"}


def _person(chat: str) -> dict[str, Any]:
    return {
        "id": _maybe_int(chat),
        "is_bot": False,
        "first_name": f"User{chat[-4:]}",
        "language_code": "en",
    }


def _maybe_int(value: str) -> int | str:
    return int(value) if value.lstrip("-").isdigit() else value


async def _params(request: Request) -> Params:
    """Query string, then form or JSON body, as the Bot API merges them."""
    params: Params = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    if request.method != "POST":
        return params
    if content_type.startswith("application/json"):
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise _BadRequest("Bad Request: can't parse JSON object") from exc
        if not isinstance(body, dict):
            raise _BadRequest("Bad Request: can't parse JSON object")
        params.update(body)
    elif content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _int(params: Params, name: str, default: int) -> int:
    value = params.get(name, default)
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise _BadRequest(f"Bad Request: invalid {name} specified") from exc


def _bool(params: Params, name: str) -> bool:
    value = params.get(name, False)
    return value is True or str(value).lower() in _TRUE
