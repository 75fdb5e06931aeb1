"""Is this reply a request to stop? A pure, multilingual check.

A message counts as a stop request when, ignoring case, accents, punctuation and politeness
words ("please", "por favor", "bitte", "merci", ...), what remains *is* one of the phrases
below. A sentence that merely contains "stop" ("don't stop sending me the fund updates",
"stop by the office tomorrow") is not one: short explicit keywords are what carriers and
providers treat as opt-outs, and a wrongly opted-out client is lost to the PM.
"""

from __future__ import annotations

import re
import unicodedata

STOP_PHRASES: frozenset[str] = frozenset(
    {
        # English
        "stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "opt out",
        "optout", "opt-out", "remove", "remove me", "no more",
        # Spanish
        "baja", "darme de baja", "dar de baja", "alto", "parar", "detener", "cancelar",
        "no mas", "cancelar suscripcion",
        # French
        "arret", "arreter", "stopper", "desabonner", "se desabonner", "desinscrire",
        "me desinscrire", "desabonnement",
        # German
        "stopp", "abmelden", "abbestellen", "austragen", "kundigen", "beenden",
        # Portuguese
        "sair", "descadastrar", "cancelar inscricao", "remover", "pare",
    }
)  # fmt: skip
FILLERS: frozenset[str] = frozenset(
    {
        "please", "pls", "plz", "thanks", "thank", "you", "now", "me", "it", "ok",
        "por", "favor", "gracias", "ya",
        "s", "il", "vous", "plait", "svp", "merci",
        "bitte", "danke", "jetzt",
        "obrigado", "obrigada", "agora",
    }
)  # fmt: skip
_PUNCTUATION = re.compile(r"[^\w\s-]+")


def normalise(text: str) -> str:
    """Lower case, no accents, no punctuation, single spaces."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_PUNCTUATION.sub(" ", plain).split())


def is_stop_request(text: str) -> bool:
    text = normalise(text)
    if text in STOP_PHRASES:
        return True
    words = [w for w in text.split() if w not in FILLERS]
    return bool(words) and " ".join(words) in STOP_PHRASES
