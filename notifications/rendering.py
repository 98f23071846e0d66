"""Rendering notice templates in Jinja2's sandbox: only the documented variables are reachable.

No attribute starting with an underscore, no callables from the context, no globals beyond a few
harmless filters: `{{ ''.__class__ }}`, `{{ config }}`, `{{ self }}` and friends render nothing useful
or raise SecurityError, which is refused on save and falls back to the default when sending.

Rendering is bounded in time and memory too: no `{% set %}`/`{% with %}` (nothing accumulates), loops only
over variables and at most two deep, `*`, `+`, `**` and `replace` may not build values over
MAX_VALUE_CHARS, and the output stops at MAX_OUTPUT_CHARS. `{{ 'x' * 10**9 }}`, chained replaces and nested
loops over built strings are refused instead of taking the worker's memory or CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import do_replace
from jinja2.sandbox import ImmutableSandboxedEnvironment

from core.errors import ApplicationError
from core.money import Money
from notifications.catalog import CATALOG
from notifications.mime import header_value

MAX_TEMPLATE_LENGTH = 20_000
MAX_VALUE_CHARS = 10_000  # the longest text or list an expression may build
MAX_OUTPUT_CHARS = 100_000  # the longest rendered subject or body
MAX_LOOP_DEPTH = 2
MAX_POWER_EXPONENT = 64
_STATEMENTS = (nodes.Template, nodes.Output, nodes.If, nodes.For)
_LOOP_SOURCES = (nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Const)
_RESERVED_NAMES = {"self", "caller", "varargs", "kwargs", "loop"}
_TAG_NAMES = {
    "Assign": "set",
    "AssignBlock": "set",
    "FilterBlock": "filter",
    "CallBlock": "call",
    "FromImport": "from",
    "ExprStmt": "do",
    "ScopedEvalContextModifier": "autoescape",
}


def _sized(value):
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_VALUE_CHARS:
        raise SecurityError(f"a value longer than {MAX_VALUE_CHARS} characters")
    return value


# What `{{ … }}` may print: plain data. A method (`{{ client_name.format_map }}` printed a process address), a list,
# a dict or any other object's repr is refused (SecurityError: refused on save, the default template at send).
PRINTABLE = (str, int, float, Decimal, date, Money)  # bool is an int


def _printable(value):
    if isinstance(value, PRINTABLE):
        return value
    if isinstance(value, Undefined):
        return value  # StrictUndefined raises its own error when printed
    raise SecurityError(f"only text, numbers, amounts and dates can be printed, not {type(value).__name__}")


class _Env(ImmutableSandboxedEnvironment):
    # Not constant-folded at compile time and checked at run time (call_binop).
    intercepted_binops = frozenset({"*", "+", "**"})

    def is_safe_attribute(self, obj, attr, value):
        # Only plain data: dict keys are read with [] or attribute syntax on dicts, nothing else.
        return isinstance(obj, dict) and super().is_safe_attribute(obj, attr, value)

    def getattr(self, obj, attribute):
        # Jinja's sandbox hands out `str.format`/`format_map` (wrapped) before asking is_safe_attribute: no attribute
        # of anything but a dict of documented data is reachable.
        if not isinstance(obj, dict):
            return self.unsafe_undefined(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        if isinstance(argument, str) and not isinstance(obj, dict):
            return self.unsafe_undefined(obj, argument)  # `name['format_map']` is an attribute by another road
        return super().getitem(obj, argument)

    def is_safe_callable(self, obj):
        return False

    def call_binop(self, context, operator, left, right):
        if operator == "**":
            if abs(right) > MAX_POWER_EXPONENT or abs(left) > 2**64:
                raise SecurityError(f"powers above {MAX_POWER_EXPONENT} or of large numbers")
            return left**right
        if operator == "*":
            for count, item in ((left, right), (right, left)):
                if (
                    isinstance(item, (str, list, tuple))
                    and isinstance(count, int)
                    and len(item) * max(count, 0) > MAX_VALUE_CHARS
                ):
                    raise SecurityError(f"a value longer than {MAX_VALUE_CHARS} characters")
            return left * right
        return _sized(left + right)


def _bounded_replace(eval_ctx, value, old, new, count=None):
    text, old_text, new_text = str(value), str(old), str(new)
    occurrences = text.count(old_text) if count is None else min(text.count(old_text), max(count, 0))
    if len(text) + occurrences * (len(new_text) - len(old_text)) > MAX_VALUE_CHARS:
        raise SecurityError(f"a value longer than {MAX_VALUE_CHARS} characters")
    return do_replace(eval_ctx, value, old, new, count)


_bounded_replace.jinja_pass_arg = do_replace.jinja_pass_arg  # type: ignore[attr-defined]


def _structure_problem(template_ast: nodes.Template) -> str | None:
    """What a template may contain: text, output, `if` and `for` over a variable, at most two loops deep."""

    def walk(node: nodes.Node, depth: int) -> str | None:
        if isinstance(node, nodes.Name) and node.name in _RESERVED_NAMES:
            # Jinja's own objects, defined in every template: not documented variables, so not reachable.
            return f"{node.name} is not a documented variable"
        if isinstance(node, nodes.Stmt) and not isinstance(node, _STATEMENTS):
            tag = _TAG_NAMES.get(type(node).__name__, type(node).__name__.lower())
            return f"{{% {tag} %}} is not available in notice templates"
        if isinstance(node, nodes.For):
            if depth + 1 > MAX_LOOP_DEPTH:
                return f"loops may be at most {MAX_LOOP_DEPTH} deep"
            if not isinstance(node.iter, _LOOP_SOURCES) or node.recursive:
                return "a loop may only go over a variable, e.g. {% for line in lines %}"
            for child in [*node.body, *node.else_, *([node.test] if node.test else [])]:
                if problem := walk(child, depth + 1):
                    return problem
            return None
        for child in node.iter_child_nodes():
            if problem := walk(child, depth):
                return problem
        return None

    return walk(template_ast, 0)


def _env() -> _Env:
    env = _Env(undefined=StrictUndefined, autoescape=False, trim_blocks=False, finalize=_printable)
    env.globals.clear()
    allowed_filters = {
        "upper",
        "lower",
        "title",
        "capitalize",
        "trim",
        "default",
        "length",
        "join",
        "round",
        "replace",
        "truncate",
        "first",
        "last",
    }
    env.filters = {name: f for name, f in env.filters.items() if name in allowed_filters}
    env.filters["replace"] = _bounded_replace
    env.tests = {
        name: t
        for name, t in env.tests.items()
        if name in {"defined", "undefined", "none", "number", "string", "eq", "ne"}
    }
    return env


ENV = _env()


def _compile(source: str):
    """Parse, check the structure, compile: TemplateSyntaxError (with the line) or SecurityError when refused."""
    if len(source) > MAX_TEMPLATE_LENGTH:
        raise SecurityError(f"a template longer than {MAX_TEMPLATE_LENGTH} characters")
    template_ast = ENV.parse(source)
    if problem := _structure_problem(template_ast):
        raise SecurityError(problem)
    return ENV.from_string(template_ast)


@lru_cache(maxsize=512)
def _compiled(source: str):
    """Compiling is most of the cost of a render; a compiled template is immutable and safe to share."""
    return _compile(source)


def _render_bounded(template, context: dict) -> str:
    parts, size = [], 0
    for part in template.generate(context):
        size += len(part)
        if size > MAX_OUTPUT_CHARS:
            raise SecurityError(f"the text would be longer than {MAX_OUTPUT_CHARS} characters")
        parts.append(part)
    return "".join(parts)


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
            template = _compile(source)
        except TemplateSyntaxError as exc:
            errors[field] = [f"Line {exc.lineno}: {exc.message}"]
            continue
        except SecurityError as exc:
            errors[field] = [_refusal(exc)]
            continue
        try:
            _render_bounded(template, sample_context(spec.variables))
        except SecurityError as exc:
            errors[field] = [_refusal(exc)]
        except UndefinedError as exc:
            errors[field] = [f"Unknown variable: {exc.message}. Use only the documented variables."]
        except Exception as exc:  # noqa: BLE001 - any failure to render is the template's fault
            errors[field] = [f"Cannot render: {type(exc).__name__}: {exc}"]
    if errors:
        raise TemplateInvalid("The template cannot be saved.", fields=errors)


def _refusal(exc: SecurityError) -> str:
    """Our own refusals say what was refused; the sandbox's ("access to attribute '…' of '…' object is unsafe")
    would echo the internals the template reached for, so they get one plain sentence instead."""
    if "unsafe" in str(exc):
        return "Not allowed: a template may print only the listed variables, not their attributes or methods."
    return f"Not allowed: {exc}"


def sample_context(variables: dict[str, str]) -> dict:
    context: dict = {name: f"<{name}>" for name in variables}
    if "lines" in variables:
        context["lines"] = [
            {"description": "License", "amount": "199.00", "quantity": "1", "unit_price": "199.00", "detail": ""},
            {
                "description": "Listings",
                "amount": "86.42",
                "quantity": "98765",
                "unit_price": "0.000875",
                "detail": "98,765 × 0.000875",
            },
        ]
    return context


def render(*, kind: str, subject: str, body: str, context: dict) -> Rendered:
    """Render with the given variables only (unknown variables and unsafe access raise). The subject is one line of
    plain text (it becomes a header); the body keeps its lines but never a NUL, which no text column stores."""
    allowed = {name: context[name] for name in CATALOG[kind].variables if name in context}
    return Rendered(
        header_value(_render_bounded(_compiled(subject), allowed)),
        _render_bounded(_compiled(body), allowed).replace("\x00", ""),
    )


def render_default(*, kind: str, context: dict) -> Rendered:
    spec = CATALOG[kind]
    return render(kind=kind, subject=spec.subject, body=spec.body, context=context)
