"""Rendering notice templates in Jinja2's sandbox: only the documented variables are reachable.

No attribute starting with an underscore, no callables from the context, no globals beyond a few
harmless filters: `{{ ''.__class__ }}`, `{{ config }}`, `{{ self }}` and friends render nothing useful
or raise SecurityError, which is refused on save and falls back to the default when sending.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from core.errors import ApplicationError
from notifications.catalog import CATALOG

MAX_TEMPLATE_LENGTH = 20_000


class _Env(ImmutableSandboxedEnvironment):
    def is_safe_attribute(self, obj, attr, value):
        # Only plain data: dict keys are read with [] or attribute syntax on dicts, nothing else.
        return isinstance(obj, dict) and super().is_safe_attribute(obj, attr, value)

    def is_safe_callable(self, obj):
        return False


def _env() -> _Env:
    env = _Env(undefined=StrictUndefined, autoescape=False, trim_blocks=False)
    env.globals.clear()
    allowed_filters = {"upper", "lower", "title", "capitalize", "trim", "default", "length", "join", "round",
                       "replace", "truncate", "first", "last"}
    env.filters = {name: f for name, f in env.filters.items() if name in allowed_filters}
    env.tests = {name: t for name, t in env.tests.items() if name in {"defined", "undefined", "none", "number",
                                                                      "string", "eq", "ne"}}
    return env


ENV = _env()


@lru_cache(maxsize=512)
def _compiled(source: str):
    """Compiling is most of the cost of a render; a compiled template is immutable and safe to share."""
    return ENV.from_string(source)


class TemplateInvalid(ApplicationError):
    code = "template_invalid"


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def template_validate(*, kind: str, subject: str, body: str) -> None:
    """Refuse a template that does not compile or reaches outside the documented variables; the error names
    the field and the line."""
    spec = CATALOG[kind]
    errors: dict[str, list[str]] = {}
    for field, source in (("subject", subject), ("body", body)):
        if len(source) > MAX_TEMPLATE_LENGTH:
            errors[field] = [f"At most {MAX_TEMPLATE_LENGTH} characters."]
            continue
        try:
            template = ENV.from_string(source)
        except TemplateSyntaxError as exc:
            errors[field] = [f"Line {exc.lineno}: {exc.message}"]
            continue
        try:
            template.render(sample_context(spec.variables))
        except SecurityError as exc:
            errors[field] = [f"Not allowed: {exc}"]
        except UndefinedError as exc:
            errors[field] = [f"Unknown variable: {exc.message}. Use only the documented variables."]
        except Exception as exc:  # noqa: BLE001 - any failure to render is the template's fault
            errors[field] = [f"Cannot render: {type(exc).__name__}: {exc}"]
    if errors:
        raise TemplateInvalid("The template cannot be saved.", fields=errors)


def sample_context(variables: dict[str, str]) -> dict:
    context: dict = {name: f"<{name}>" for name in variables}
    if "lines" in variables:
        context["lines"] = [{"description": "License", "amount": "199.00"}]
    return context


def render(*, kind: str, subject: str, body: str, context: dict) -> Rendered:
    """Render with the given variables only (unknown variables and unsafe access raise)."""
    allowed = {name: context[name] for name in CATALOG[kind].variables if name in context}
    return Rendered(_compiled(subject).render(allowed).strip().replace("\n", " "),
                    _compiled(body).render(allowed))


def render_default(*, kind: str, context: dict) -> Rendered:
    spec = CATALOG[kind]
    return render(kind=kind, subject=spec.subject, body=spec.body, context=context)
