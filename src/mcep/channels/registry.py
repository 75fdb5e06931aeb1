"""Build the four provider adapters from one session map (one session per provider)."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from mcep.channels.base import ChannelAdapter, Platform
from mcep.channels.imessage import IMessageAdapter
from mcep.channels.signal import SignalAdapter
from mcep.channels.telegram import TelegramAdapter
from mcep.channels.whatsapp import WhatsAppAdapter


def build_adapters(
    sessions: Mapping[Platform, aiohttp.ClientSession],
) -> dict[Platform, ChannelAdapter]:
    """One adapter per platform, each on its own provider's session.

    ``sessions`` comes from :func:`mcep.channels.http.open_sessions` in the composition root;
    every platform must be present.
    """
    return {
        Platform.WHATSAPP: WhatsAppAdapter(sessions[Platform.WHATSAPP]),
        Platform.TELEGRAM: TelegramAdapter(sessions[Platform.TELEGRAM]),
        Platform.SIGNAL: SignalAdapter(sessions[Platform.SIGNAL]),
        Platform.IMESSAGE: IMessageAdapter(sessions[Platform.IMESSAGE]),
    }
