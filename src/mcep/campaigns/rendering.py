"""Template rendering in a sandboxed Jinja2 environment where a missing variable is an error.

A blank where a client's name should be is worse than no message: ``StrictUndefined`` makes
every undefined name fail the render, and the launch turns that into a 422 that names the
variable. The sandbox keeps template authors away from Python internals.

Variables a template may use: ``name``, ``first_name``, ``last_name``, ``timezone``,
``campaign`` (the campaign's name) and ``attributes`` (the prospect's attributes, e.g.
``{{ attributes.segment }}``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from mcep.channels.base import WhatsAppTemplate
from mcep.dispatch.content import MessageContent
from mcep.errors import ValidationFailed

VARIABLES = frozenset({"name", "first_name", "last_name", "timezone", "campaign", "attributes"})
MAX_BODY = 4096  # Telegram's and WhatsApp's limit for one text message


class Attributes(dict[str, Any]):
    """A prospect's attributes; marked so that a missing one is reported as ``attributes.x``."""


class _Undefined(jinja2.StrictUndefined):
    @property
    def _undefined_message(self) -> str:
        if isinstance(self._undefined_obj, Attributes):
            return f"'attributes.{self._undefined_name}' is undefined"
        return str(super()._undefined_message)


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=_Undefined, autoescape=False, keep_trailing_newline=True)


class RenderError(Exception):
    """A template could not be rendered for one recipient (the message names the variable)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def parse_checked(source: str, *, field: str) -> jinja2.Template:
    """Compile ``source``; a syntax error or an unknown variable is a 422 naming ``field``."""
    env = environment()
    try:
        ast = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        message = f"template syntax error on line {exc.lineno}: {exc}"
        raise ValidationFailed.of(field, message) from exc
    unknown = sorted(meta.find_undeclared_variables(ast) - VARIABLES)
    if unknown:
        known = ", ".join(sorted(VARIABLES))
        raise ValidationFailed.of(field, f"unknown variable {unknown[0]!r} (use one of: {known})")
    return env.from_string(source)


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """A template ready to render for many recipients (compiled once per launch)."""

    body: jinja2.Template
    wa_name: str | None = None
    wa_language: str | None = None
    wa_parameters: tuple[jinja2.Template, ...] = ()


def compile_template(
    *, body: str, wa_name: str | None, wa_language: str | None, wa_parameters: Sequence[str]
) -> CompiledTemplate:
    return CompiledTemplate(
        body=parse_checked(body, field="body"),
        wa_name=wa_name,
        wa_language=wa_language,
        wa_parameters=tuple(
            parse_checked(p, field=f"whatsapp.parameters.{i}") for i, p in enumerate(wa_parameters)
        ),
    )


def recipient_context(
    *, name: str, timezone: str, campaign: str, attributes: Mapping[str, Any]
) -> dict[str, Any]:
    first, _, last = name.strip().partition(" ")
    return {
        "name": name,
        "first_name": first,
        "last_name": last.strip(),
        "timezone": timezone,
        "campaign": campaign,
        "attributes": Attributes(attributes),
    }


def _render_one(template: jinja2.Template, context: Mapping[str, Any], *, field: str) -> str:
    try:
        return template.render(context)
    except jinja2.UndefinedError as exc:
        raise RenderError(f"undefined variable: {exc.message}", field=field) from exc
    except jinja2.TemplateError as exc:
        raise RenderError(f"the template failed to render: {exc}", field=field) from exc


def render(compiled: CompiledTemplate, context: Mapping[str, Any]) -> MessageContent:
    """The message for one recipient; raises :class:`RenderError` naming what is missing."""
    body = _render_one(compiled.body, context, field="body")
    if not body.strip():
        raise RenderError("the rendered body is empty", field="body")
    if len(body) > MAX_BODY:
        raise RenderError(f"the rendered body is over {MAX_BODY} characters", field="body")
    template = None
    if compiled.wa_name and compiled.wa_language:
        parameters = tuple(
            _render_one(p, context, field=f"whatsapp.parameters.{i}")
            for i, p in enumerate(compiled.wa_parameters)
        )
        template = WhatsAppTemplate(compiled.wa_name, compiled.wa_language, parameters)
    return MessageContent(body=body, whatsapp_template=template)
