"""Telegram Bot API wire format: payloads, error classification, updates, secret token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcep.channels.base import (
    Accepted,
    DeviceFailure,
    DeviceRef,
    HealthStatus,
    InboundMessage,
    OptOutEvent,
    OutboundMessage,
    PermanentFailure,
    Platform,
    RetryLater,
)
from mcep.channels.telegram import (
    UpdatePayloadError,
    build_send_payload,
    chat_id,
    classify_error,
    interpret_get_me,
    interpret_response,
    parse_update,
    verify_secret_token,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers" / "telegram"
BOT = DeviceRef("bot-1", Platform.TELEGRAM, "mcep_demo_bot", "https://api.telegram.org", "1:x")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_send_payload_matches_the_documented_request() -> None:
    message = OutboundMessage(key="k", recipient="5342492667", body="Hello from MCEP")
    assert build_send_payload(message, BOT) == fixture("send_message_request.json")


def test_parse_mode_comes_from_device_options() -> None:
    device = DeviceRef("b", Platform.TELEGRAM, "x", "http://x", "1:x", {"parse_mode": "HTML"})
    payload = build_send_payload(OutboundMessage("k", "42", "<b>hi</b>"), device)
    assert payload["parse_mode"] == "HTML"


@pytest.mark.parametrize(
    ("recipient", "expected"), [("42", 42), ("-1001234", -1001234), ("@channel", "@channel")]
)
def test_chat_ids(recipient: str, expected: int | str) -> None:
    assert chat_id(recipient) == expected


def test_accepted_answer_yields_chat_and_message_id() -> None:
    result = interpret_response(200, fixture("send_message_response.json"))
    assert result == Accepted("5342492667:123")


def test_429_carries_the_providers_delay() -> None:
    assert interpret_response(429, fixture("error_429.json")) == RetryLater(
        reason="Too Many Requests: retry after 15", retry_after=15.0, code="429"
    )


def test_blocked_is_a_permanent_opt_out() -> None:
    result = interpret_response(403, fixture("error_403_blocked.json"))
    assert isinstance(result, PermanentFailure)
    assert result.opted_out and result.code == "403"


def test_cannot_initiate_is_permanent_but_not_an_opt_out() -> None:
    result = interpret_response(403, fixture("error_403_cant_initiate.json"))
    assert isinstance(result, PermanentFailure) and not result.opted_out


@pytest.mark.parametrize(
    ("name", "expected", "code"),
    [
        ("error_400_chat_not_found.json", PermanentFailure, "400"),
        ("error_401.json", DeviceFailure, "401"),
        ("error_404.json", DeviceFailure, "404"),
        ("error_409_webhook_active.json", RetryLater, "409"),
    ],
)
def test_error_fixtures(name: str, expected: type, code: str) -> None:
    result = interpret_response(fixture(name)["error_code"], fixture(name))
    assert isinstance(result, expected)
    assert not isinstance(result, Accepted) and result.code == code


def test_code_wins_over_http_status_and_description() -> None:
    body = {
        "ok": False,
        "error_code": 429,
        "description": "whatever",
        "parameters": {"retry_after": 3},
    }
    assert interpret_response(200, body) == RetryLater("whatever", retry_after=3.0, code="429")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (502, None, RetryLater),
        (500, "<html>", RetryLater),
        (401, None, DeviceFailure),
        (400, None, PermanentFailure),
        (200, {"ok": True, "result": {}}, RetryLater),
    ],
)
def test_answers_without_a_bot_api_body(status: int, body: object, expected: type) -> None:
    assert isinstance(interpret_response(status, body), expected)


def test_migrated_chat_is_permanent() -> None:
    result = classify_error(
        400,
        description="Bad Request: group chat was upgraded",
        parameters={"migrate_to_chat_id": -100},
    )
    assert isinstance(result, PermanentFailure) and result.code == "400_migrated"


def test_get_me_health() -> None:
    body = fixture("get_me_response.json")
    health = interpret_get_me(200, body, expected_username="@mcep_demo_bot")
    assert health.status is HealthStatus.OK
    assert health.attributes == {"bot_id": "7172552019", "username": "mcep_demo_bot"}
    other = interpret_get_me(200, body, expected_username="someone_else_bot")
    assert other.status is HealthStatus.DEGRADED
    assert interpret_get_me(401, fixture("error_401.json")).status is HealthStatus.DOWN
    assert interpret_get_me(429, fixture("error_429.json")).status is HealthStatus.DEGRADED


def test_reply_update_is_an_inbound_message() -> None:
    (event,) = parse_update(fixture("update_message.json"), device_address="mcep_demo_bot")
    assert isinstance(event, InboundMessage)
    assert event.event_id == "mcep_demo_bot:448152148"
    assert (event.sender, event.device_address) == ("5342492667", "mcep_demo_bot")
    assert event.text == "Yes please, tell me more"
    assert event.at.timestamp() == 1737277060


def test_block_update_is_an_opt_out() -> None:
    raw = (FIXTURES / "update_my_chat_member_kicked.json").read_bytes()
    (event,) = parse_update(raw, device_address="mcep_demo_bot")
    assert isinstance(event, OptOutEvent)
    assert event.sender == "5342492667"


def test_unblock_group_and_bot_messages_are_ignored() -> None:
    unblock = fixture("update_my_chat_member_kicked.json")
    unblock["my_chat_member"]["new_chat_member"]["status"] = "member"
    assert parse_update(unblock, device_address="b") == []
    group = fixture("update_message.json")
    group["message"]["chat"] = {"id": -5, "type": "group", "title": "g"}
    assert parse_update(group, device_address="b") == []
    from_bot = fixture("update_message.json")
    from_bot["message"]["from"]["is_bot"] = True
    assert parse_update(from_bot, device_address="b") == []
    assert parse_update({"update_id": 1, "edited_message": {}}, device_address="b") == []


@pytest.mark.parametrize("raw", [b"nope", b"[1]", b'{"message": {}}'])
def test_malformed_updates_raise(raw: bytes) -> None:
    with pytest.raises(UpdatePayloadError):
        parse_update(raw, device_address="b")


def test_secret_token_check() -> None:
    assert verify_secret_token("s3cr3t_token-1", "s3cr3t_token-1")
    assert not verify_secret_token("s3cr3t_token-1", "s3cr3t_token-2")
    assert not verify_secret_token("s3cr3t_token-1", None)
    assert not verify_secret_token("", "")
    assert not verify_secret_token("abc", "ab\u00e9")
