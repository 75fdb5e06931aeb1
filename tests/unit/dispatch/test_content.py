"""Message bodies are sealed under the recipient's key and bound to their message."""

from __future__ import annotations

import uuid

import pytest
from cryptography.exceptions import InvalidTag

from mcep.channels.base import WhatsAppTemplate
from mcep.contacts.crypto import Keyring
from mcep.dispatch.content import MessageContent, body_digest, open_content, seal_content


def test_round_trip_and_binding() -> None:
    key, _ = Keyring(b"m" * 32).new_data_key()
    content = MessageContent(
        body="Bonjour Amélie", whatsapp_template=WhatsAppTemplate("intro", "fr", ("Amélie",))
    )
    mid = uuid.uuid4()
    sealed = seal_content(content, key=key, message_id=mid)
    assert "Amélie".encode() not in sealed
    assert open_content(sealed, key=key, message_id=mid) == content
    with pytest.raises(InvalidTag):
        open_content(sealed, key=key, message_id=uuid.uuid4())
    other, _ = Keyring(b"m" * 32).new_data_key()
    with pytest.raises(InvalidTag):
        open_content(sealed, key=other, message_id=mid)


def test_digest_is_sha256_hex() -> None:
    assert body_digest("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
