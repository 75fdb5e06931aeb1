"""What a message says, sealed under its recipient's data key.

The rendered body (and the WhatsApp template parameters, which are personal too) are sealed
as one JSON document with AES-GCM under the prospect's data key; the message id is bound as
associated data, so a sealed body can't be moved to another message. Erasing the prospect
destroys the key, and with it every message body.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

from mcep.channels.base import WhatsAppTemplate
from mcep.contacts.crypto import DataKey


@dataclass(frozen=True, slots=True)
class MessageContent:
    body: str
    whatsapp_template: WhatsAppTemplate | None = None


def _aad(message_id: uuid.UUID) -> str:
    return f"message:{message_id}"


def seal_content(content: MessageContent, *, key: DataKey, message_id: uuid.UUID) -> bytes:
    """AES-GCM under the prospect's data key, bound to ``message_id``."""
    template = content.whatsapp_template
    document = {
        "body": content.body,
        "wa": None
        if template is None
        else {
            "name": template.name,
            "language": template.language,
            "parameters": list(template.body_parameters),
        },
    }
    return key.seal(_aad(message_id), json.dumps(document, ensure_ascii=False))


def open_content(sealed: bytes, *, key: DataKey, message_id: uuid.UUID) -> MessageContent:
    document = json.loads(key.open(_aad(message_id), sealed))
    wa = document.get("wa")
    template = (
        None
        if wa is None
        else WhatsAppTemplate(
            name=wa["name"], language=wa["language"], body_parameters=tuple(wa["parameters"])
        )
    )
    return MessageContent(body=document["body"], whatsapp_template=template)


def body_digest(body: str) -> str:
    """The SHA-256 the compliance record keeps after the body itself is shredded."""
    return hashlib.sha256(body.encode()).hexdigest()
