"""Which replies are stop requests, in the five languages we serve."""

from __future__ import annotations

import pytest

from mcep.inbound.stopwords import is_stop_request, normalise


@pytest.mark.parametrize(
    "text",
    [
        "STOP", "stop", "Stop.", "stop please", "STOP!!", "  stop  ", "Unsubscribe", "opt out",
        "Baja", "darme de baja por favor", "parar", "Arrêt", "ARRET", "se désabonner",
        "stop svp", "Abmelden", "abmelden bitte", "STOPP", "Sair", "descadastrar", "pare",
    ],
)  # fmt: skip
def test_stop_requests(text: str) -> None:
    assert is_stop_request(text)


@pytest.mark.parametrize(
    "text",
    [
        "", "please", "Thanks!", "don't stop sending me the fund updates",
        "Stop by the office tomorrow?", "Can we stop the call at 3?", "Interested, call me",
        "stopwatch", "ok", "¿Qué tal?", "Bitte rufen Sie mich an",
    ],
)  # fmt: skip
def test_not_stop_requests(text: str) -> None:
    assert not is_stop_request(text)


def test_normalise_drops_case_accents_and_punctuation() -> None:
    assert normalise("  Se DÉSABONNER!!! ") == "se desabonner"
