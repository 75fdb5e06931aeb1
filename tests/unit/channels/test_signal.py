"""signal-cli adapter: request building, classification, SSE parsing and envelope parsing."""

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
    DeviceRef,
    HealthStatus,
    InboundMessage,
    OutboundMessage,
    PermanentFailure,
    Platform,
    RetryLater,
    StatusEvent,
)
from mcep.channels.signal import (
    SseEvent,
    SseParser,
    build_send_request,
    classify_accounts,
    classify_http_answer,
    classify_recipient_result,
    classify_rpc_error,
    classify_rpc_response,
    parse_receive_event,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers" / "signal"
DEVICE = DeviceRef(
    id="dev-1",
    platform=Platform.SIGNAL,
    address="+15550009999",
    base_url="http://signal.invalid",
    token="",
)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# --- the request ---------------------------------------------------------------------------


def test_send_request_has_the_documented_shape_plus_account_and_our_key_as_id() -> None:
    documented = fixture("rpc_send_request.json")
    message = OutboundMessage(key="msg-0001", recipient="+YYY", body="MESSAGE")

    request = build_send_request(message=message, device=DEVICE)

    assert request["jsonrpc"] == documented["jsonrpc"]
    assert request["method"] == documented["method"]
    assert request["params"]["recipient"] == documented["params"]["recipient"]
    assert request["params"]["message"] == documented["params"]["message"]
    assert request["params"]["account"] == DEVICE.address
    assert request["id"] == "msg-0001"


# --- answers -------------------------------------------------------------------------------


def test_documented_minimal_send_response_gives_the_timestamp_as_id() -> None:
    result = classify_http_answer(status=200, body=fixture_bytes("rpc_send_response_manpage.json"))
    assert result == Accepted(provider_message_id="999")


def test_send_response_with_results_gives_the_timestamp_as_id() -> None:
    result = classify_http_answer(status=200, body=fixture_bytes("rpc_send_response.json"))
    assert result == Accepted(provider_message_id="1631458508784")


def test_plain_rate_limit_is_retry_later_with_the_providers_delay() -> None:
    result = classify_http_answer(status=200, body=fixture_bytes("rpc_error_rate_limit.json"))
    assert isinstance(result, RetryLater)
    assert result.retry_after == 90
    assert result.code == "RATE_LIMIT_FAILURE"


def test_proof_required_challenge_is_a_device_failure_and_hides_the_token() -> None:
    body = fixture_bytes("rpc_error_proof_required.json")
    token = fixture("rpc_error_proof_required.json")["error"]["data"]["response"]["results"][0][
        "token"
    ]

    result = classify_http_answer(status=200, body=body)

    assert isinstance(result, DeviceFailure)
    assert result.retry_after == 86400
    assert token not in repr(result)


def test_unregistered_recipient_is_permanent() -> None:
    result = classify_http_answer(status=200, body=fixture_bytes("rpc_error_unregistered.json"))
    assert isinstance(result, PermanentFailure)
    assert result.code == "UNREGISTERED_FAILURE"


def test_network_failure_under_user_error_is_retry_later() -> None:
    result = classify_http_answer(status=200, body=fixture_bytes("rpc_error_send_failed.json"))
    assert isinstance(result, RetryLater)
    assert result.code == "NETWORK_FAILURE"


def test_untrusted_identity_is_permanent_for_the_recipient() -> None:
    result = classify_http_answer(status=200, body=fixture_bytes("rpc_error_untrusted.json"))
    assert isinstance(result, PermanentFailure)
    assert result.code == "IDENTITY_FAILURE"


def test_unknown_account_is_a_device_failure() -> None:
    result = classify_http_answer(status=200, body=fixture_bytes("rpc_error_unknown_account.json"))
    assert isinstance(result, DeviceFailure)


@pytest.mark.parametrize(
    ("kind", "extra", "expected"),
    [
        ("UNREGISTERED_FAILURE", {}, PermanentFailure),
        ("IDENTITY_FAILURE", {}, PermanentFailure),
        ("NETWORK_FAILURE", {}, RetryLater),
        ("INVALID_PRE_KEY_FAILURE", {}, RetryLater),
        ("RATE_LIMIT_FAILURE", {}, RetryLater),
        ("RATE_LIMIT_FAILURE", {"token": "challenge"}, DeviceFailure),
        ("SOMETHING_NEW", {}, RetryLater),
    ],
)
def test_every_recipient_result_type_is_classified(
    kind: str, extra: dict[str, str], expected: type
) -> None:
    assert isinstance(classify_recipient_result({"type": kind, **extra}), expected)


def test_a_success_result_with_a_failed_entry_is_classified_by_the_failure() -> None:
    document = {"result": {"timestamp": 5, "results": [{"type": "UNREGISTERED_FAILURE"}]}}
    assert isinstance(classify_rpc_response(document), PermanentFailure)


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (-1, "Failed to send message", PermanentFailure),
        (-1, "The user +1 is not registered.", PermanentFailure),
        (-3, "Connection closed", RetryLater),
        (-4, "Failed to send message due to untrusted identities", PermanentFailure),
        (-5, "Failed to send message due to rate limiting", RetryLater),
        (-6, "Captcha rejected", DeviceFailure),
        (-32602, "Specified account does not exist", DeviceFailure),
        (-32601, "Method not implemented", DeviceFailure),
        (-32600, "method field must be set", DeviceFailure),
        (-32700, "Unexpected character", DeviceFailure),
        (-32603, "Failed to send message: [413] Rate limit exceeded: 413", RetryLater),
        (
            -32603,
            "Failed to send message: [401] Authorization failed! (AuthorizationFailedException)",
            DeviceFailure,
        ),
        (-99, "who knows", RetryLater),
    ],
)
def test_every_json_rpc_error_code_is_classified(code: int, message: str, expected: type) -> None:
    assert isinstance(
        classify_rpc_error({"code": code, "message": message, "data": None}), expected
    )


def test_documented_invalid_request_error_is_a_device_failure() -> None:
    result = classify_http_answer(status=200, body=fixture_bytes("rpc_error_invalid_request.json"))
    assert isinstance(result, DeviceFailure)
    assert result.code == "-32600"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (415, b"", DeviceFailure),
        (404, b"", DeviceFailure),
        (405, b"", DeviceFailure),
        (201, b"", DeviceFailure),
        (401, b"", DeviceFailure),
        (500, b"", RetryLater),
        (503, b"<html>", RetryLater),
        (200, b"not json", DeviceFailure),
        (200, b"[]", DeviceFailure),
        (200, b'{"jsonrpc":"2.0","result":{},"id":1}', DeviceFailure),
        (200, b'{"jsonrpc":"2.0","result":{"timestamp":true},"id":1}', DeviceFailure),
    ],
)
def test_every_http_answer_is_classified(status: int, body: bytes, expected: type) -> None:
    assert isinstance(classify_http_answer(status=status, body=body), expected)


def test_429_from_a_front_proxy_keeps_its_retry_after() -> None:
    result = classify_http_answer(status=429, body=b"", retry_after="12")
    assert result == RetryLater(reason="HTTP 429 from signal-cli front", retry_after=12.0)


# --- health --------------------------------------------------------------------------------


def test_accounts_list_with_our_number_is_ok_and_without_is_down() -> None:
    listed = [{"number": "+15550009999"}, {"number": "+15550008888"}]
    assert classify_accounts(listed, address="+15550009999").status is HealthStatus.OK
    assert classify_accounts(listed, address="+15550007777").status is HealthStatus.DOWN
    assert classify_accounts({"x": 1}, address="+1").status is HealthStatus.DEGRADED


# --- server-sent events --------------------------------------------------------------------


def parse_stream(text: str) -> list[SseEvent]:
    parser = SseParser()
    events = []
    for line in text.splitlines():
        event = parser.feed(line)
        if event is not None:
            events.append(event)
    return events


def test_sse_stream_sample_skips_keep_alives_and_keeps_ids() -> None:
    events = parse_stream((FIXTURES / "events_stream.txt").read_text())

    assert [e.id for e in events] == ["41", "42", "43", "44"]
    assert {e.event for e in events} == {"receive"}
    assert json.loads(events[0].data)["envelope"]["receiptMessage"]["isDelivery"] is True


def test_sse_multi_line_data_optional_space_and_default_event_type() -> None:
    events = parse_stream("data: first\ndata:second\n\n: comment\nretry: 10\n\n")
    assert events == [SseEvent(id=None, event="message", data="first\nsecond")]


def test_sse_id_persists_across_events_without_id() -> None:
    events = parse_stream("id: 7\ndata: a\n\ndata: b\n\n")
    assert [e.id for e in events] == ["7", "7"]


# --- envelopes -----------------------------------------------------------------------------


def test_delivery_receipt_yields_one_status_event_per_acknowledged_timestamp() -> None:
    data = (FIXTURES / "event_receive_receipt.json").read_text()

    events = parse_receive_event(data)

    assert [e.provider_message_id for e in events if isinstance(e, StatusEvent)] == [
        "1631458508784",
        "1631458508790",
    ]
    first = events[0]
    assert isinstance(first, StatusEvent)
    assert first.status is DeliveryStatus.DELIVERED
    assert first.at == datetime.fromtimestamp(1631458509.1, tz=UTC)


def test_read_receipt_is_read_and_has_its_own_event_id() -> None:
    receipt = fixture("event_receive_receipt.json")
    read = json.loads(json.dumps(receipt))
    read["envelope"]["receiptMessage"].update(isDelivery=False, isRead=True)

    delivered_ids = {e.event_id for e in parse_receive_event(json.dumps(receipt))}
    read_events = parse_receive_event(json.dumps(read))

    assert {e.status for e in read_events if isinstance(e, StatusEvent)} == {DeliveryStatus.READ}
    assert delivered_ids.isdisjoint({e.event_id for e in read_events})


def test_event_ids_are_stable_across_replays() -> None:
    data = (FIXTURES / "event_receive_receipt.json").read_text()
    assert parse_receive_event(data) == parse_receive_event(data)


def test_data_message_is_an_inbound_message_to_the_account() -> None:
    [event] = parse_receive_event((FIXTURES / "event_receive_data_message.json").read_text())

    assert isinstance(event, InboundMessage)
    assert event.sender == "+15550100001"
    assert event.device_address == "+15550009999"
    assert event.text == "Yes please, tell me more"
    assert event.at == datetime.fromtimestamp(1631458600.123, tz=UTC)


def test_documented_receive_example_parses() -> None:
    data = (FIXTURES / "event_receive_data_message_manpage.json").read_text()
    [event] = parse_receive_event(data)
    assert isinstance(event, InboundMessage)
    assert (event.sender, event.text) == ("+33123456789", "foobar")


@pytest.mark.parametrize(
    "payload",
    [
        (FIXTURES / "event_receive_typing.json").read_text(),
        "not json",
        "[]",
        json.dumps({"account": "+1", "exception": {"message": "x"}, "envelope": {}}),
    ],
)
def test_envelopes_that_are_not_ours_yield_nothing(payload: str) -> None:
    assert parse_receive_event(payload) == []


def test_group_messages_and_empty_bodies_are_not_replies() -> None:
    message = fixture("event_receive_data_message.json")
    group = json.loads(json.dumps(message))
    group["envelope"]["dataMessage"]["groupInfo"] = {"groupId": "abc", "type": "DELIVER"}
    empty = json.loads(json.dumps(message))
    empty["envelope"]["dataMessage"]["message"] = None

    assert parse_receive_event(json.dumps(group)) == []
    assert parse_receive_event(json.dumps(empty)) == []


def test_out_of_range_times_do_not_break_parsing() -> None:
    receipt = fixture("event_receive_receipt.json")
    receipt["envelope"]["receiptMessage"]["when"] = 10**30

    [first, _] = parse_receive_event(json.dumps(receipt))

    assert isinstance(first, StatusEvent)
    assert first.at.tzinfo is UTC


def test_odd_account_lists_are_classified_not_raised() -> None:
    listed = [{"number": ["+1"]}, {"number": {"x": 1}}, "junk", {"number": "+15550009999"}]
    assert classify_accounts(listed, address="+15550009999").status is HealthStatus.OK
