"""WhatsApp Cloud API wire format: payloads, error classification, webhook checks and parsing."""

from __future__ import annotations

import hashlib
import hmac
import json
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
    OptOutEvent,
    OutboundMessage,
    PermanentFailure,
    Platform,
    RetryLater,
    StatusEvent,
    WhatsAppTemplate,
)
from mcep.channels.whatsapp import (
    DEFAULT_API_VERSION,
    WebhookPayloadError,
    build_send_payload,
    classify_error,
    interpret_phone_number,
    interpret_send_response,
    parse_webhook,
    phone_number_url,
    verify_signature,
    verify_subscription,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers" / "whatsapp"
SECRET = "app-secret-from-the-dashboard"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def raw_fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# --- outgoing payloads -------------------------------------------------------------------


def test_text_payload_matches_the_documented_request() -> None:
    message = OutboundMessage(key="msg-7f3a", recipient="+1 650-555-1234", body="Hello from MCEP")
    assert build_send_payload(message) == fixture("send_text_request.json")


def test_template_payload_carries_parameters_in_order() -> None:
    template = WhatsAppTemplate("appointment_reminder", "en_US", ("Alex", "Tuesday 10:00"))
    message = OutboundMessage(key="msg-7f3b", recipient="16505551234", body="", template=template)
    assert build_send_payload(message) == fixture("send_template_request.json")


def test_template_without_parameters_has_no_components() -> None:
    template = WhatsAppTemplate("hello_world", "en_US")
    payload = build_send_payload(OutboundMessage("k", "16505551234", "", template=template))
    assert payload["template"] == {"name": "hello_world", "language": {"code": "en_US"}}


def test_url_uses_the_configured_version_or_the_default() -> None:
    device = DeviceRef("d", Platform.WHATSAPP, "1065", "https://graph.facebook.com/", "t")
    assert phone_number_url(device) == f"https://graph.facebook.com/v{DEFAULT_API_VERSION}/1065"
    pinned = DeviceRef("d", Platform.WHATSAPP, "1065", "http://x", "t", {"api_version": "v23.0"})
    assert phone_number_url(pinned) == "http://x/v23.0/1065"


def test_token_is_not_in_the_device_repr() -> None:
    device = DeviceRef("d", Platform.WHATSAPP, "1065", "http://x", "EAAsecret-token")
    assert "EAAsecret-token" not in repr(device)


# --- answers -----------------------------------------------------------------------------


def test_accepted_answer_yields_the_wamid() -> None:
    result = interpret_send_response(200, fixture("send_response.json"))
    assert result == Accepted("wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA")


@pytest.mark.parametrize(
    ("name", "status", "expected_type", "code"),
    [
        ("error_rate_limit.json", 429, RetryLater, "130429"),
        ("error_rate_limit.json", 400, RetryLater, "130429"),
        ("error_auth.json", 401, DeviceFailure, "190"),
        ("error_account_locked.json", 400, DeviceFailure, "131031"),
        ("error_pair_rate_limit.json", 400, RetryLater, "131056"),
        ("error_invalid_parameter.json", 400, PermanentFailure, "100"),
    ],
)
def test_error_fixtures_are_classified_by_code(
    name: str, status: int, expected_type: type, code: str
) -> None:
    result = interpret_send_response(status, fixture(name))
    assert isinstance(result, expected_type)
    assert not isinstance(result, Accepted)
    assert result.code == code


def test_pair_limit_is_per_recipient_with_the_documented_delay() -> None:
    result = interpret_send_response(400, fixture("error_pair_rate_limit.json"))
    assert result == RetryLater(
        reason=fixture("error_pair_rate_limit.json")["error"]["message"],
        retry_after=6.0,
        code="131056",
        per_recipient=True,
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (0, DeviceFailure),
        (190, DeviceFailure),
        (4, RetryLater),
        (80007, RetryLater),
        (130429, RetryLater),
        (131056, RetryLater),
        (131048, RetryLater),
        (131064, RetryLater),
        (131047, PermanentFailure),
        (131026, PermanentFailure),
        (131049, RetryLater),
        (131050, PermanentFailure),
        (131030, PermanentFailure),
        (100, PermanentFailure),
        (131008, PermanentFailure),
        (131009, PermanentFailure),
        (132000, PermanentFailure),
        (132016, PermanentFailure),
        (131031, DeviceFailure),
        (368, DeviceFailure),
        (130497, DeviceFailure),
        (131057, RetryLater),
        (131000, RetryLater),
    ],
)
def test_classification_table(code: int, expected: type) -> None:
    assert isinstance(classify_error(code), expected)


def test_special_flags_of_the_table() -> None:
    assert classify_error(131047) == PermanentFailure(
        reason="Graph API error 131047", code="131047", needs_template=True
    )
    opted = classify_error(131050)
    assert isinstance(opted, PermanentFailure) and opted.opted_out
    capped = classify_error(131049)
    assert isinstance(capped, RetryLater)
    assert capped.retry_after == 86400.0 and capped.per_recipient
    assert classify_error(131057, retry_after=3.0) == RetryLater(
        reason="Graph API error 131057", retry_after=3.0, code="131057"
    )
    degraded = classify_error(131048)
    assert isinstance(degraded, RetryLater) and degraded.reason.startswith("device degraded")


def test_unknown_codes_retry_on_server_errors_and_fail_on_client_errors() -> None:
    assert isinstance(classify_error(999999, http_status=503), RetryLater)
    assert isinstance(classify_error(999999, http_status=400), PermanentFailure)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (502, None, RetryLater),
        (200, None, RetryLater),
        (200, {"messages": []}, RetryLater),
        (401, "<html>", DeviceFailure),
        (404, None, PermanentFailure),
        (429, None, RetryLater),
    ],
)
def test_answers_without_a_graph_body_are_still_classified(
    status: int, body: object, expected: type
) -> None:
    assert isinstance(interpret_send_response(status, body), expected)


# --- health ------------------------------------------------------------------------------


def test_phone_number_health_reads_quality_and_tier() -> None:
    health = interpret_phone_number(200, fixture("phone_number.json"))
    assert health.status is HealthStatus.OK
    assert health.attributes["quality_rating"] == "GREEN"
    assert health.attributes["messaging_limit_tier"] == "TIER_1K"
    assert health.attributes["throughput"] == "STANDARD"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"quality_rating": "RED"}, HealthStatus.DEGRADED),
        ({"quality_rating": "YELLOW"}, HealthStatus.DEGRADED),
        ({"status": "FLAGGED"}, HealthStatus.DEGRADED),
        ({"status": "BANNED"}, HealthStatus.DOWN),
    ],
)
def test_phone_number_health_degrades(change: dict[str, str], expected: HealthStatus) -> None:
    assert (
        interpret_phone_number(200, {**fixture("phone_number.json"), **change}).status is expected
    )


def test_phone_number_errors_map_to_down_or_degraded() -> None:
    assert interpret_phone_number(401, fixture("error_auth.json")).status is HealthStatus.DOWN
    locked = interpret_phone_number(400, fixture("error_account_locked.json"))
    assert locked.status is HealthStatus.DOWN
    assert locked.attributes["error_code"] == "131031"
    throttled = interpret_phone_number(429, fixture("error_rate_limit.json"))
    assert throttled.status is HealthStatus.DEGRADED


# --- signature and subscription ----------------------------------------------------------


def signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_signature_over_the_raw_body_is_accepted() -> None:
    body = raw_fixture("webhook_status_sent.json")
    assert verify_signature(SECRET, body, signature(body))
    assert verify_signature(SECRET, body, signature(body).upper().replace("SHA256=", "sha256="))


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=abc",
        "sha256=" + "0" * 64,
        "sha256=é",
    ],
)
def test_bad_signature_headers_are_refused(header: str | None) -> None:
    assert not verify_signature(SECRET, raw_fixture("webhook_status_sent.json"), header)


def test_signature_fails_for_a_reserialised_body_or_another_secret() -> None:
    body = raw_fixture("webhook_status_sent.json")
    reserialised = json.dumps(json.loads(body)).encode()
    assert body != reserialised
    assert not verify_signature(SECRET, reserialised, signature(body))
    assert not verify_signature("other-secret", body, signature(body))
    assert not verify_signature("", body, signature(body, ""))


def test_subscription_echoes_the_challenge_only_for_the_right_token() -> None:
    params = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": "vt"}
    assert verify_subscription(params, "vt") == "1158201444"
    assert verify_subscription(params, "other") is None
    assert verify_subscription({**params, "hub.mode": "unsubscribe"}, "vt") is None
    assert verify_subscription(params, "") is None


# --- webhook parsing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("webhook_status_sent.json", DeliveryStatus.SENT),
        ("webhook_status_delivered.json", DeliveryStatus.DELIVERED),
        ("webhook_status_read.json", DeliveryStatus.READ),
    ],
)
def test_status_webhooks_parse(name: str, status: DeliveryStatus) -> None:
    (event,) = parse_webhook(raw_fixture(name))
    assert isinstance(event, StatusEvent)
    assert event.status is status
    assert event.provider_message_id == "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
    assert event.message_key == "msg-7f3a"
    assert event.event_id.endswith(f":{status.value}")
    assert event.at.timestamp() == int(
        fixture(name)["entry"][0]["changes"][0]["value"]["statuses"][0]["timestamp"]
    )


def test_failed_status_carries_the_error() -> None:
    (event,) = parse_webhook(raw_fixture("webhook_status_failed.json"))
    assert isinstance(event, StatusEvent)
    assert event.status is DeliveryStatus.FAILED
    assert event.error_code == "131026"
    assert event.error_reason == "Message undeliverable"


def test_marketing_stop_failure_is_also_an_opt_out() -> None:
    status, opt_out = parse_webhook(raw_fixture("webhook_status_failed_marketing_stop.json"))
    assert isinstance(status, StatusEvent) and status.error_code == "131050"
    assert isinstance(opt_out, OptOutEvent)
    assert (opt_out.sender, opt_out.device_address) == ("16505551234", "106540352242922")


def test_inbound_text_message() -> None:
    (event,) = parse_webhook(raw_fixture("webhook_message_text.json"))
    assert isinstance(event, InboundMessage)
    assert event.sender == "16505551234"
    assert event.device_address == "106540352242922"
    assert event.text == "Yes please, tell me more"
    assert event.event_id.startswith("wamid.")


def test_user_preference_stop_is_an_opt_out_and_resume_is_not() -> None:
    (event,) = parse_webhook(raw_fixture("webhook_user_preferences_stop.json"))
    assert isinstance(event, OptOutEvent)
    assert event.sender == "16505551234"
    resumed = fixture("webhook_user_preferences_stop.json")
    resumed["entry"][0]["changes"][0]["value"]["user_preferences"][0]["value"] = "resume"
    assert parse_webhook(json.dumps(resumed).encode()) == []


def test_button_and_media_messages_keep_their_words_and_reactions_are_ignored() -> None:
    payload = fixture("webhook_message_text.json")
    messages = payload["entry"][0]["changes"][0]["value"]["messages"]
    messages[0] = {**messages[0], "type": "button", "button": {"text": "STOP", "payload": "x"}}
    messages.append({**messages[0], "id": "wamid.2", "type": "image", "image": {"caption": "hi"}})
    messages.append({**messages[0], "id": "wamid.3", "type": "reaction", "reaction": {}})
    events = parse_webhook(json.dumps(payload).encode())
    assert [e.text for e in events if isinstance(e, InboundMessage)] == ["STOP", "hi"]


@pytest.mark.parametrize("body", [b"not json", b"[]", b'"x"'])
def test_malformed_bodies_raise(body: bytes) -> None:
    with pytest.raises(WebhookPayloadError):
        parse_webhook(body)


def test_other_objects_and_broken_items_are_skipped() -> None:
    assert parse_webhook(b'{"object": "page", "entry": []}') == []
    payload = fixture("webhook_status_sent.json")
    payload["entry"][0]["changes"][0]["value"]["statuses"].append({"status": "sent"})
    payload["entry"][0]["changes"][0]["value"]["statuses"].append("junk")
    assert len(parse_webhook(json.dumps(payload).encode())) == 1
