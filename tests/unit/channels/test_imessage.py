"""BlueBubbles adapter: request body, classification of every answer, webhook parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mcep.channels.base import (
    Accepted,
    DeliveryStatus,
    DeviceFailure,
    InboundMessage,
    OutboundMessage,
    PermanentFailure,
    RetryLater,
    StatusEvent,
)
from mcep.channels.imessage import (
    build_send_body,
    chat_guid,
    classify_send_answer,
    parse_webhook,
    verify_webhook_secret,
)
from mcep.errors import BadRequest

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers" / "imessage"
ACCOUNT = "sender@icloud.example"
SENT_GUID = "5C4D3A2B-1E0F-4A9B-8C7D-6E5F4A3B2C1D"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def with_data(name: str, **changes: Any) -> bytes:
    document = fixture(name)
    document["data"].update(changes)
    return json.dumps(document).encode()


# --- the request ---------------------------------------------------------------------------


def test_send_body_matches_the_documented_request() -> None:
    documented = fixture("send_text_request.json")
    message = OutboundMessage(
        key=documented["tempGuid"], recipient="+15551234567", body=documented["message"]
    )
    assert build_send_body(message) == documented


def test_one_to_one_chat_guid_for_phone_and_email() -> None:
    assert chat_guid("+15551234567") == "iMessage;-;+15551234567"
    assert chat_guid("alex@example.com") == "iMessage;-;alex@example.com"


# --- answers -------------------------------------------------------------------------------


def test_sent_answer_gives_the_message_guid() -> None:
    result = classify_send_answer(status=200, body=fixture_bytes("send_text_response.json"))
    assert result == Accepted(provider_message_id=SENT_GUID)


@pytest.mark.parametrize("name", ["error_missing_password.json", "error_wrong_password.json"])
def test_password_refusals_are_device_failures(name: str) -> None:
    result = classify_send_answer(status=401, body=fixture_bytes(name))
    assert isinstance(result, DeviceFailure)
    assert result.code == "401"


def test_validation_error_is_permanent() -> None:
    result = classify_send_answer(status=400, body=fixture_bytes("error_temp_guid_required.json"))
    assert isinstance(result, PermanentFailure)
    assert "tempGuid" in result.reason


def test_already_queued_means_an_earlier_attempt_is_in_flight() -> None:
    result = classify_send_answer(status=400, body=fixture_bytes("error_already_queued.json"))
    assert isinstance(result, RetryLater)
    assert result.code == "already_queued"


def test_not_registered_with_imessage_is_permanent() -> None:
    result = classify_send_answer(status=500, body=fixture_bytes("error_not_registered.json"))
    assert isinstance(result, PermanentFailure)
    assert result.code == "22"


def test_other_imessage_errors_are_retried() -> None:
    body = with_data("error_not_registered.json", error=4)
    result = classify_send_answer(status=500, body=body)
    assert isinstance(result, RetryLater)


def test_no_imessage_account_left_on_the_mac_is_a_device_failure() -> None:
    body = {
        "status": 500,
        "message": "Message Send Error",
        "error": {
            "type": "iMessage Error",
            "message": "Messages got an error: Can't get account 1 whose service type = "
            "iMessage. Invalid index. (-1719)",
        },
    }
    result = classify_send_answer(status=500, body=json.dumps(body).encode())
    assert isinstance(result, DeviceFailure)


def test_a_200_carrying_a_message_error_is_not_accepted() -> None:
    body = with_data("send_text_response.json", error=22)
    assert isinstance(classify_send_answer(status=200, body=body), PermanentFailure)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (504, fixture_bytes("error_gateway_timeout.json"), RetryLater),
        (502, b"502 Bad Gateway", RetryLater),
        (
            500,
            b'{"status":500,"message":"Server Error","error":{"type":"Server Error"}}',
            RetryLater,
        ),
        (503, b"", RetryLater),
        (403, b"", DeviceFailure),
        (404, b"<html>not here</html>", DeviceFailure),
        (
            404,
            b'{"status":404,"message":"x","error":{"type":"Database Error",'
            b'"message":"Chat does not exist!"}}',
            PermanentFailure,
        ),
        (418, b"", DeviceFailure),
        (200, b"not json", DeviceFailure),
        (200, b'{"status":200,"message":"Message sent!","data":{}}', DeviceFailure),
    ],
)
def test_every_answer_is_classified(status: int, body: bytes, expected: type) -> None:
    assert isinstance(classify_send_answer(status=status, body=body), expected)


# --- webhook secret ------------------------------------------------------------------------


def test_webhook_secret_matches_only_itself() -> None:
    assert verify_webhook_secret("6f1c2b9e4d8a", "6f1c2b9e4d8a")
    assert not verify_webhook_secret("6f1c2b9e4d8a", "6f1c2b9e4d8b")
    assert not verify_webhook_secret("6f1c2b9e4d8a", "")
    assert not verify_webhook_secret("", "")


# --- webhooks ------------------------------------------------------------------------------


def parse(name: str) -> list[Any]:
    return list(parse_webhook(fixture_bytes(name), device_address=ACCOUNT))


def test_new_message_from_a_person_is_inbound() -> None:
    [event] = parse("webhook_new_message.json")
    assert isinstance(event, InboundMessage)
    assert event.sender == "+15551234567"
    assert event.device_address == ACCOUNT
    assert event.text == "Yes please, tell me more"
    assert event.at == datetime.fromtimestamp(1717171800, tz=UTC)


def test_updated_message_with_date_delivered_is_delivered() -> None:
    [event] = parse("webhook_updated_message_delivered.json")
    assert isinstance(event, StatusEvent)
    assert (event.provider_message_id, event.status) == (SENT_GUID, DeliveryStatus.DELIVERED)
    assert event.at == datetime.fromtimestamp(1717171719, tz=UTC)


def test_updated_message_with_date_read_is_delivered_and_read() -> None:
    events = parse("webhook_updated_message_read.json")
    assert [(e.status, e.at) for e in events] == [
        (DeliveryStatus.DELIVERED, datetime.fromtimestamp(1717171719, tz=UTC)),
        (DeliveryStatus.READ, datetime.fromtimestamp(1717171760, tz=UTC)),
    ]


def test_repeated_updates_keep_their_event_ids() -> None:
    delivered = parse("webhook_updated_message_delivered.json")
    read = parse("webhook_updated_message_read.json")
    assert delivered[0].event_id == read[0].event_id
    assert read[0].event_id != read[1].event_id


def test_send_error_is_failed_with_the_messages_error_code() -> None:
    [event] = parse("webhook_message_send_error.json")
    assert isinstance(event, StatusEvent)
    assert event.status is DeliveryStatus.FAILED
    assert event.error_code == "22"


def test_temp_guid_when_echoed_becomes_the_message_key() -> None:
    document = fixture("webhook_updated_message_delivered.json")
    document["data"]["tempGuid"] = "our-key"
    [event] = parse_webhook(json.dumps(document).encode(), device_address=ACCOUNT)
    assert isinstance(event, StatusEvent)
    assert event.message_key == "our-key"


def test_group_chats_reactions_and_other_events_yield_nothing() -> None:
    group = fixture("webhook_new_message.json")
    group["data"]["chats"][0]["guid"] = "iMessage;+;chat123456"
    tapback = fixture("webhook_new_message.json")
    tapback["data"]["associatedMessageType"] = "love"
    typing = {"type": "typing-indicator", "data": {"display": True, "guid": "iMessage;-;+1"}}

    for document in (group, tapback, typing):
        assert parse_webhook(json.dumps(document).encode(), device_address=ACCOUNT) == []


def test_a_body_that_is_not_an_event_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        parse_webhook(b"not json", device_address=ACCOUNT)
    with pytest.raises(BadRequest):
        parse_webhook(b'{"data": {}}', device_address=ACCOUNT)


def test_out_of_range_dates_do_not_break_parsing() -> None:
    document = fixture("webhook_updated_message_delivered.json")
    document["data"]["dateDelivered"] = 10**30
    [event] = parse_webhook(json.dumps(document).encode(), device_address=ACCOUNT)
    assert isinstance(event, StatusEvent)
    assert event.at.tzinfo is UTC
