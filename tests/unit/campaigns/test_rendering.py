"""Sandboxed rendering: a missing variable is an error that names it, never a blank."""

from __future__ import annotations

import pytest

from mcep.campaigns.rendering import (
    RenderError,
    compile_template,
    parse_checked,
    recipient_context,
    render,
)
from mcep.errors import ValidationFailed


def context(**attributes: object) -> dict[str, object]:
    return recipient_context(
        name="Ana Lima", timezone="Europe/Lisbon", campaign="Autumn", attributes=attributes
    )


def compiled(body: str, *params: str) -> object:
    return compile_template(
        body=body, wa_name="intro" if params else None, wa_language="pt_PT", wa_parameters=params
    )


def test_renders_names_and_attributes_and_whatsapp_parameters() -> None:
    template = compiled("Olá {{ first_name }} ({{ attributes.segment }})", "{{ first_name }}")
    content = render(template, context(segment="hnw"))  # type: ignore[arg-type]
    assert content.body == "Olá Ana (hnw)"
    assert content.whatsapp_template is not None
    assert tuple(content.whatsapp_template.body_parameters) == ("Ana",)


def test_a_missing_attribute_names_the_variable() -> None:
    template = compiled("Your portfolio: {{ attributes.aum }}")
    with pytest.raises(RenderError, match=r"'attributes\.aum' is undefined") as info:
        render(template, context(segment="hnw"))  # type: ignore[arg-type]
    assert info.value.field == "body"


def test_a_missing_whatsapp_parameter_names_its_position() -> None:
    template = compiled("Hi", "{{ first_name }}", "{{ attributes.city }}")
    with pytest.raises(RenderError, match=r"attributes\.city") as info:
        render(template, context())  # type: ignore[arg-type]
    assert info.value.field == "whatsapp.parameters.1"


def test_unknown_variables_and_syntax_errors_are_422_at_creation() -> None:
    with pytest.raises(ValidationFailed, match="unknown variable 'frist_name'") as info:
        parse_checked("Hi {{ frist_name }}", field="body")
    assert info.value.problems[0].field == "body"
    with pytest.raises(ValidationFailed, match="syntax error") as syntax:
        parse_checked("Hi {{ name ", field="body")
    assert syntax.value.problems[0].field == "body"


def test_the_sandbox_refuses_python_internals() -> None:
    template = compiled("{{ name.__class__.__mro__ }}")
    with pytest.raises(RenderError):
        render(template, context())  # type: ignore[arg-type]


def test_empty_and_oversized_bodies_are_errors() -> None:
    with pytest.raises(RenderError, match="empty"):
        render(compiled("{{ attributes.blank }}"), context(blank="  "))  # type: ignore[arg-type]
    with pytest.raises(RenderError, match="over 4096"):
        render(compiled("{{ name * 1000 }}"), context())  # type: ignore[arg-type]
