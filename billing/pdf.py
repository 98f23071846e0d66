"""Invoice PDFs (INV-1), rendered in-process with WeasyPrint from `templates/pdf/invoice.html`.

A PDF shows the agency's branding (logo, colour, address), the lines grouped by billing category, taxes,
totals, status, period and number. It is stored once and served from storage afterwards (MON-3: the
invoice row's `pdf` path may be set once, by database trigger). It is stored as soon as the invoice's
status is settled (Paid, Paid Out, Agency Invoiced): before that the status printed on it may still
change, so it is rendered fresh on each download and nothing is stored.

`invoice_pdf` runs in the invoice's agency schema; `agency_invoice_pdf` in any schema (public tables).

The renderer fetches nothing from user content (docs/decisions.md, "The PDF renderer fetches nothing"): its URL
fetcher answers the invoice's logo from memory (a raster image checked again before it is embedded,
`core.images.logo_embeddable`) and the product's own files under `templates/pdf/` and the static directories;
every other URL — `file:` elsewhere, `http:`, `data:` — is refused and counted. Each render runs in a child
process of its own thread's (forked once, kept warm, started again after a failure), under an address-space limit
(`PDF_RENDER_MEMORY_MB` above the process's size) and a deadline (`PDF_RENDER_TIMEOUT_SECONDS`): whatever a
document does, it cannot hang a web request or grow the process that serves every agency.

`invoice_pdf_etag` names a PDF's content without rendering it: a stored PDF by the digest of its stored bytes
(it never changes), any other by a digest of what it is made of (the document's values, which include the
status and the branding, and the template version). Two renders of the same invoice differ in their bytes
(WeasyPrint writes the creation time), so a digest of a fresh render would change on every request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import resource
import signal
import socket
import struct
import threading
import warnings
from datetime import timedelta
from importlib.resources import files
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection
from django.db.models import Model
from django.template.loader import render_to_string

from billing.models import BillingSettings, ChargeAttempt, CreditNote, Invoice, PaymentMethod
from billing.overview import invoice_status, is_settled, lines_by_category
from billing.plain_words import client_status_label, how_paid
from billing.platform.models import AgencyInvoice
from billing.statuses import COLLECTED, OUTSTANDING, AttemptKind, AttemptOutcome, ChargeStatus, CreditOutcome
from core.categories import BillingCategory
from core.errors import ApplicationError
from core.images import logo_embeddable
from core.money import format_minor, format_unit_price
from tenants.models import Agency
from tenants.selectors import current_agency

logger = logging.getLogger(__name__)

PLATFORM_NAME = "agencybilling"


LOGO_SCHEME = "invoice-logo:"


def _logo(agency: Agency) -> tuple[str, tuple[bytes, str] | None]:
    """The logo's URL for the invoice and its bytes and type. The URL names the content (its SHA-256) and the
    renderer's URL fetcher answers it from memory, so rendering needs no URL fetching and works with any
    storage backend. Not a data: URI in the HTML: the HTML parser read a large logo's base64 text character by
    character (80 ms for a 550 KB PNG), and WeasyPrint keeps decoded images by URL (docs/performance.md, P4)."""
    if not agency.logo:
        return "", None
    try:
        with agency.logo.open("rb") as handle:
            data = handle.read(MAX_LOGO_BYTES + 1)
    except OSError:
        logger.warning("logo of agency %s is missing from storage", agency.schema_name)
        return "", None
    mime = logo_embeddable(data)
    if mime is None:
        # Stored before logos were raster-only (an SVG), or damaged: the invoice goes without it.
        logger.warning("logo of agency %s is not a raster image within bounds: not embedded", agency.schema_name)
        return "", None
    return LOGO_SCHEME + hashlib.sha256(data).hexdigest(), (data, mime)


def _money(amount_minor: int, currency: str) -> str:
    return format_minor(amount_minor, currency)


def _document(
    *,
    invoice,
    kind: str,
    issuer: dict,
    recipient: dict,
    branding: dict,
    category_order: list[str],
    statuses: list[str],
    payment: dict | None = None,
) -> dict:
    lines = list(invoice.lines.all())
    groups, taxes = lines_by_category(lines, category_order)
    status = invoice_status(statuses)
    currency = invoice.currency
    # The invoice is the client's document: Paid Out is the agency's payout, not something that happened to the
    # client's payment, so a client invoice reads Paid (and one stored copy serves every reader).
    label = client_status_label(status) if kind == "client" else ChargeStatus(status).label

    def row(line) -> dict:
        return {
            "description": line.description,
            "quantity": line.quantity,
            "unit": format_unit_price(line.unit_amount_decimal, currency),
            "amount": _money(line.amount_minor, currency),
        }

    return {
        "kind": kind,
        "number": invoice.number,
        "currency": currency,
        "period_start": invoice.period_start,
        "period_last_day": invoice.period_end - timedelta(days=1),
        "issued_on": invoice.issued_on,
        "due_on": invoice.due_on,
        "statuses": statuses,
        "status": ChargeStatus.PAID if kind == "client" and status == ChargeStatus.PAID_OUT else status,
        "status_label": label,
        "payment": payment or {},
        "groups": [
            {"label": g.label, "lines": [row(x) for x in g.lines], "total": _money(g.total_minor, currency)}
            for g in groups
        ],
        "taxes": [row(x) for x in taxes],
        "subtotal": _money(invoice.subtotal_minor, currency),
        "tax": _money(invoice.tax_minor, currency),
        "total": _money(invoice.total_minor, currency),
        # Credit on the account used by this invoice (COR-1): the invoice's total stands, less is collected.
        "credit_applied": _money(credit, currency) if (credit := getattr(invoice, "credit_applied_minor", 0)) else "",
        "issuer": issuer,
        "recipient": recipient,
        "branding": branding,
    }


def _branding(agency: Agency) -> dict:
    logo, logo_image = _logo(agency)
    return {
        "name": agency.name,
        "color": agency.brand_color or DEFAULT_BRAND_COLOR,
        "logo": logo,
        "logo_image": logo_image,
        "address": agency.address,
    }


_fetchers = threading.local()

# WeasyPrint's user-agent stylesheet styles every element's ::marker and footnote/note pseudo-elements
# (`::marker { … }`, `::footnote-call { … }`, …): the cascade then computes six pseudo-element styles for each
# element of the invoice, which has no list items, footnotes or notes. The same stylesheet with those rules
# kept only where they can apply (list items and <summary>) cut the style step by about 40 % (docs/performance.md,
# P4); everything else in it is unchanged.
_UNIVERSAL_PSEUDO_RULE = re.compile(r"^::([a-z-]+)\s*\{", re.MULTILINE)


def invoice_ua_css(source: str) -> str:
    """WeasyPrint's user-agent stylesheet without rules that give every element a pseudo-element style."""
    found = _UNIVERSAL_PSEUDO_RULE.findall(source)
    if "marker" not in found:
        raise RuntimeError("WeasyPrint's user-agent stylesheet changed: review billing.pdf.invoice_ua_css")
    lines = []
    for line in source.splitlines():
        match = _UNIVERSAL_PSEUDO_RULE.match(line)
        if match is None:
            lines.append(line)
        elif match.group(1) == "marker":
            lines.append("li::marker, summary::marker" + line[len("::marker") :])
        # footnote and note pseudo-elements only exist for `float: footnote`, which invoices do not use
    return "\n".join(lines)


MAX_LOGO_BYTES = 1024 * 1024
MAX_LOCAL_FILE_BYTES = 4 * 1024 * 1024


def _product_roots() -> list[Path]:
    """The only directories the renderer may read files from: the invoice's template directory and static files."""
    roots = [Path(settings.BASE_DIR) / "templates" / "pdf", *(Path(d) for d in settings.STATICFILES_DIRS)]
    if settings.STATIC_ROOT:
        roots.append(Path(settings.STATIC_ROOT))
    return [root.resolve() for root in roots]


def product_file(url: str) -> Path | None:
    """The product's own file a `file:` URL names, or None: any other scheme, a path outside the product's
    directories (after resolving links and `..`), or anything but a regular file of bounded size (a FIFO, a
    device such as /dev/zero, a directory)."""
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    try:
        path = Path(unquote(parts.path)).resolve(strict=True)
        info = path.stat()
    except (OSError, RuntimeError, ValueError):
        return None
    if not any(path.is_relative_to(root) for root in _product_roots()):
        return None
    if not path.is_file() or info.st_size > MAX_LOCAL_FILE_BYTES:
        return None
    return path


class _Renderer:
    """What every render of this thread shares: see `_renderer`."""

    def __init__(self) -> None:
        from weasyprint import CSS, HTML
        from weasyprint.text.fonts import FontConfiguration
        from weasyprint.urls import URLFetcher, URLFetcherResponse

        class InvoiceURLFetcher(URLFetcher):
            """The logo of the invoice being rendered, from memory, and the product's own files: nothing else.
            Every URL refused is kept in `refused` (the renderer's tests read it)."""

            def __init__(self) -> None:
                super().__init__(allowed_protocols=("file",), allow_redirects=False, timeout=1)
                self.logos: dict[str, tuple[bytes, str]] = {}
                self.refused: list[str] = []

            def fetch(self, url, headers=None):
                if url.startswith(LOGO_SCHEME) and url in self.logos:
                    data, mime = self.logos[url]
                    return URLFetcherResponse(url, body=data, headers={"Content-Type": mime})
                path = product_file(url)
                if path is None:
                    if len(self.refused) < 100:
                        self.refused.append(url[:200])
                    raise ValueError(f"not fetched (the invoice renderer fetches only the product's files): {url[:80]}")
                return URLFetcherResponse(url, body=path.read_bytes())

        self.fetcher, self.fonts = InvoiceURLFetcher(), FontConfiguration()
        # Decoded images by URL (WeasyPrint's `cache` option); logo URLs name their content, so a kept entry
        # is never stale. Bounded: emptied when it grows past a few agencies' logos.
        self.images: dict = {}
        self.stylesheet = CSS(filename=str(INVOICE_CSS), url_fetcher=self.fetcher, font_config=self.fonts)
        ua = CSS(
            string=invoice_ua_css(files("weasyprint").joinpath("css", "html5_ua.css").read_text("utf-8")),
            url_fetcher=self.fetcher,
        )
        self._brands: dict[str, object] = {}

        class InvoiceHTML(HTML):
            # WeasyPrint has no public option for the user-agent stylesheet; this is the method its cascade
            # asks (weasyprint 70, pinned in requirements.lock; tests/unit/test_pdf.py checks it is used).
            def _ua_stylesheets(self, forms=False):
                return [ua]

        self.html_class = InvoiceHTML

    def brand_stylesheet(self, color: str):
        """The agency's colour rules, parsed once per colour (a handful of colours per process in practice)."""
        if not _BRAND_COLOR.match(color):
            color = DEFAULT_BRAND_COLOR
        sheet = self._brands.get(color)
        if sheet is None:
            from weasyprint import CSS

            if len(self._brands) >= 256:
                self._brands.clear()
            sheet = self._brands[color] = CSS(string=BRAND_CSS.replace("BRAND", color), url_fetcher=self.fetcher)
        return sheet


def _renderer() -> _Renderer:
    """A URL fetcher, a font configuration, the parsed stylesheets and the HTML class per thread, kept across
    renders: WeasyPrint's defaults build the first two for every document (loading the system's TLS
    certificates, initialising fontconfig) and the stylesheets were parsed each time, most of a warm render
    (docs/performance.md, P4). Invoices only embed their logo, data: URIs and local files, so nothing else
    may be fetched: no request leaves the server while rendering. Used in the render child (`render_bounded`)."""
    kept = getattr(_fetchers, "kept", None)
    if kept is None:
        kept = _fetchers.kept = _Renderer()
    return kept


INVOICE_CSS = settings.BASE_DIR / "templates" / "pdf" / "invoice.css"
DEFAULT_BRAND_COLOR = "#2f5bd3"
_BRAND_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
BRAND_CSS = (
    ".bar { background: BRAND; } .agency-name { color: BRAND; } .lines th { border-bottom-color: BRAND; }"
    " .totals tr.total td { border-top-color: BRAND; }"
)


def render_in_process(html: str, *, color: str, logo: str = "", logo_image: tuple[bytes, str] | None = None) -> bytes:
    """WeasyPrint on this thread's renderer: what the render child runs (and the tests of the renderer itself)."""
    renderer = _renderer()
    if logo_image is not None:
        if len(renderer.fetcher.logos) >= 32:
            renderer.fetcher.logos.clear()
        renderer.fetcher.logos[logo] = logo_image
    if len(renderer.images) >= 64:
        renderer.images.clear()
    stylesheets = [renderer.stylesheet, renderer.brand_stylesheet(color)]
    return renderer.html_class(string=html, base_url=str(settings.BASE_DIR), url_fetcher=renderer.fetcher).write_pdf(
        stylesheets=stylesheets, font_config=renderer.fonts, cache=renderer.images
    )


def _date(day) -> str:
    return day.isoformat() if day else ""


def client_invoice_payment(invoice: Invoice, charges: list) -> dict:
    """What the client's invoice says about its payment (INV-1 for its reader): amount paid and due, the due date,
    and for each paid charge when, with what and how it was paid — from the attempt that paid it: autopay on the
    billing date, an automatic retry, a retry run by billing support, or the client's own Pay now."""
    currency = invoice.currency
    attempts: dict[int, list] = {}
    for attempt in ChargeAttempt.objects.filter(charge__in=charges).order_by("number"):
        attempts.setdefault(attempt.charge_id, []).append(attempt)
    labels = {m.reference: str(m) for m in PaymentMethod.objects.filter(client_id=invoice.client_id)}
    paid_minor, sentences, methods, paid_dates = 0, [], [], []
    several = len(charges) > 1
    for charge in charges:
        which = (
            f"Installment {charge.installment} ({_money(charge.amount_minor, currency)} {currency}): "
            if several
            else ""
        )
        if charge.status in COLLECTED:
            paid_minor += charge.amount_minor
            won = next(
                (a for a in reversed(attempts.get(charge.pk, [])) if a.outcome == AttemptOutcome.SUCCEEDED), None
            )
            if won is None:
                sentences.append(f"{which}nothing to pay.")
                continue
            method = labels.get(won.payment_method_reference, "the payment method on file")
            methods.append(method)
            paid_dates.append(charge.paid_on)
            on = _date(charge.paid_on)
            how = how_paid(won.kind, won.number)
            if won.kind == AttemptKind.AUTOMATIC and won.number == 1:
                sentences.append(f"{which}charged automatically to {method} on {on} (autopay).")
            elif won.kind == AttemptKind.CLIENT:
                sentences.append(f"{which}paid online by you (Pay now) on {on} with {method}.")
            else:
                sentences.append(f"{which}paid on {on} with {method} {how} (attempt {won.number}).")
        elif charge.status == ChargeStatus.AGENCY_INVOICED:
            sentences.append(f"{which}settled directly with the agency; not charged to a payment method.")
        elif charge.status == ChargeStatus.PENDING:
            sentences.append(f"{which}bank debit submitted; it is paid once it settles.")
        elif charge.status == ChargeStatus.SCHEDULED:
            sentences.append(f"{which}will be charged to the payment method on file on {_date(charge.due_on)}.")
        else:
            retry = f"; the next attempt is on {_date(charge.next_retry_on)}" if charge.next_retry_on else ""
            sentences.append(f"{which}not paid yet: the payment failed{retry}. Pay it in the portal.")
    settled_directly = all(c.status == ChargeStatus.AGENCY_INVOICED for c in charges) and bool(charges)
    # What is still to collect: the open charges' amounts — the total less credit on the account used by the
    # invoice and credit notes that reduced its charges (COR-1), less what was paid.
    due_minor = 0 if settled_directly else sum(c.amount_minor for c in charges if c.status in OUTSTANDING)
    open_dates = [c.due_on for c in charges if c.status not in COLLECTED and c.status != ChargeStatus.AGENCY_INVOICED]
    return {
        "amount_paid": _money(paid_minor, currency),
        "amount_due": _money(due_minor, currency),
        "has_due": due_minor > 0,
        "due_on": _date(min(open_dates) if open_dates else invoice.due_on),
        "paid_on": _date(max(paid_dates)) if paid_dates and due_minor == 0 else "",
        "method": ", ".join(dict.fromkeys(methods)),
        "sentences": sentences,
    }


class PdfRenderFailed(ApplicationError):
    code = "pdf_render_failed"
    status = 503


def render_pdf(context: dict, template: str = "pdf/invoice.html") -> bytes:
    """The invoice's (or credit note's) PDF, rendered in this thread's render child under its memory limit and
    deadline."""
    html = render_to_string(template, context)
    branding = context["branding"]
    return render_bounded(html, color=branding["color"], logo=branding["logo"], logo_image=branding.get("logo_image"))


# --- the render child -------------------------------------------------------------------------------------------
#
# One child per thread that renders, forked on its first render (so it starts with WeasyPrint imported and, after its
# first document, warm: fonts, stylesheets, decoded logos). Requests and answers are pickled frames on a socket pair;
# the child never touches the database, never returns (it leaves by os._exit, so the parent's connections inherited
# across the fork are never closed from it), and exits when its socket closes. A render that outlives the deadline,
# or a child that dies (its address-space limit reached, a crash), is killed and reaped; the next render forks a new
# one. Forking once per thread, not once per render, keeps a warm render as fast as in-process (docs/performance.md,
# P4) and forks rarely from a process that may have other threads.

_FRAME = struct.Struct("!Q")
_children = threading.local()


def _send(sock: socket.socket, value: object) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_FRAME.pack(len(data)) + data)


def _recv(sock: socket.socket) -> object:
    header = _recv_exactly(sock, _FRAME.size)
    return pickle.loads(_recv_exactly(sock, _FRAME.unpack(header)[0]))  # noqa: S301 - our own child's frames


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the render child closed its socket")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _virtual_size() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def _child_serve(sock: socket.socket, memory_bytes: int, timeout: int) -> None:
    limit = _virtual_size() + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # an alarm ends a render that outlives the deadline
    while True:
        try:
            request = _recv(sock)
        except (EOFError, OSError):
            return
        html, color, logo, logo_image = request  # type: ignore[misc]
        signal.alarm(timeout + 1)
        try:
            reply: tuple = ("ok", render_in_process(html, color=color, logo=logo, logo_image=logo_image))
        except MemoryError:
            reply = ("error", f"the render needed more than {memory_bytes // 2**20} MB")
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it as a failed render
            reply = ("error", f"{type(exc).__name__}: {exc}"[:500])
        signal.alarm(0)
        _send(sock, reply)
        if reply[0] == "error":
            return  # a fresh child for the next render: nothing of a failed one is kept


class _RenderChild:
    def __init__(self, *, memory_bytes: int, timeout: int) -> None:
        import weasyprint  # noqa: F401 - imported before the fork: every child starts with it

        ours, theirs = socket.socketpair()
        with warnings.catch_warnings():
            # Python warns that forking a process with threads may deadlock the child on a lock another thread
            # held. The child takes no lock of the parent's (no database, no logging handler in the render path,
            # WeasyPrint's own state is the child's), and a child that hangs anyway meets the deadline.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                ours.close()
                _child_serve(theirs, memory_bytes, timeout)
            except BaseException:  # noqa: BLE001 - whatever happens, the child leaves without running the parent's exit
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        self.pid, self.sock = pid, ours

    def render(self, request: tuple, timeout: int) -> tuple:
        self.sock.settimeout(timeout)
        _send(self.sock, request)
        return _recv(self.sock)  # type: ignore[return-value]

    def stop(self) -> None:
        try:
            self.sock.close()
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def render_children_reset() -> None:
    """Stop this thread's render child: the next render forks a new one with the current settings."""
    child: _RenderChild | None = getattr(_children, "child", None)
    if child is not None:
        child.stop()
        _children.child = None


def render_bounded(html: str, *, color: str, logo: str = "", logo_image: tuple[bytes, str] | None = None) -> bytes:
    """Render in this thread's render child; PdfRenderFailed when it outlives the deadline, hits its memory limit
    or dies. The child is started again on the next render."""
    timeout = settings.PDF_RENDER_TIMEOUT_SECONDS
    memory_bytes = settings.PDF_RENDER_MEMORY_MB * 2**20
    child: _RenderChild | None = getattr(_children, "child", None)
    if child is None or child.pid is None:
        child = _children.child = _RenderChild(memory_bytes=memory_bytes, timeout=timeout)
    try:
        status, value = child.render((html, color, logo, logo_image), timeout)
    except (TimeoutError, EOFError, OSError) as exc:
        child.stop()
        _children.child = None
        raise PdfRenderFailed(
            "The invoice PDF could not be rendered in time: try again, or contact support if it persists."
        ) from exc
    if status != "ok":
        child.stop()
        _children.child = None
        logger.error("invoice PDF render failed: %s", value)
        raise PdfRenderFailed("The invoice PDF could not be rendered: contact support if it persists.")
    return value  # type: ignore[return-value]


def client_invoice_context(invoice: Invoice, agency: Agency) -> dict:
    order = list(BillingSettings.objects.values_list("category_order", flat=True).first() or [])
    client = invoice.client
    charges = list(invoice.charges.order_by("installment"))
    return _document(
        invoice=invoice,
        kind="client",
        branding=_branding(agency),
        issuer={"name": agency.name, "address": agency.address, "email": agency.email},
        recipient={"name": client.name, "email": client.email, "address": ""},
        category_order=order,
        statuses=[c.status for c in charges],
        payment=client_invoice_payment(invoice, charges),
    )


def agency_invoice_context(invoice: AgencyInvoice) -> dict:
    agency = invoice.agency
    return _document(
        invoice=invoice,
        kind="agency",
        branding=_branding(agency),
        issuer={"name": f"{PLATFORM_NAME} platform", "address": "", "email": settings.DEFAULT_FROM_EMAIL},
        recipient={"name": agency.name, "email": agency.email, "address": agency.address},
        category_order=[],
        statuses=[c.status for c in invoice.charges.all()],
    )


def _stored_or_render(
    *, invoice, model: type[Model], name: str, context_factory, template: str = "pdf/invoice.html", always: bool = False
) -> bytes:
    """The stored PDF, or a fresh render, stored when the document is settled (`always`: a credit note, which never
    changes)."""
    field = invoice._meta.get_field("pdf")
    storage = field.storage
    if invoice.pdf:
        try:
            with storage.open(invoice.pdf.name, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            # Storage lost the file: render it again from the immutable rows, under the same name.
            logger.warning("stored PDF %s is missing; rendering it again", invoice.pdf.name)
            data = render_pdf(context_factory(), template)
            storage.save(invoice.pdf.name, ContentFile(data))
            return data
    context = context_factory()
    data = render_pdf(context, template)
    if always or is_settled(context["statuses"]):
        saved = storage.save(name, ContentFile(data))
        # The first writer wins; the database trigger refuses any later change of the path (MON-3).
        if model.objects.filter(pk=invoice.pk, pdf="").update(pdf=saved):  # type: ignore[attr-defined]
            invoice.pdf.name = saved
        else:
            storage.delete(saved)
            invoice.refresh_from_db(fields=["pdf"])
            with storage.open(invoice.pdf.name, "rb") as handle:
                return handle.read()
    return data


def invoice_pdf(*, invoice: Invoice, agency: Agency | None = None) -> bytes:
    """The PDF of a client invoice; call inside its agency's schema."""
    if agency is None:
        agency = current_agency()
    if agency is None:
        raise RuntimeError("invoice_pdf needs the invoice's agency schema")
    schema = connection.schema_name  # type: ignore[attr-defined]
    return _stored_or_render(
        invoice=invoice,
        model=Invoice,
        name=f"invoices/{schema}/{invoice.number}.pdf",
        context_factory=lambda: client_invoice_context(invoice, agency),
    )


def agency_invoice_pdf(*, invoice: AgencyInvoice) -> bytes:
    """The PDF of an agency (platform) invoice."""
    return _stored_or_render(
        invoice=invoice,
        model=AgencyInvoice,
        name=f"agency-invoices/{invoice.agency.schema_name}/{invoice.number}.pdf",
        context_factory=lambda: agency_invoice_context(invoice),
    )


def credit_note_context(credit_note: CreditNote, agency: Agency) -> dict:
    """A credit note's document (COR-1): the invoice's branding, the invoice it corrects, its lines and reason,
    and where the money goes."""
    currency, client, invoice = credit_note.currency, credit_note.client, credit_note.invoice
    if credit_note.outcome == CreditOutcome.REFUND:
        method = client.payment_methods.filter(removed_at__isnull=True).first()
        outcome = f"Refunded to {method}" if method else "Refunded to the payment method that paid the invoice"
    else:
        outcome = "Kept as credit on the account: used by the next invoice"
    return {
        "kind": "credit_note",
        "number": credit_note.number,
        "currency": currency,
        "issued_on": credit_note.issued_on,
        "invoice_number": invoice.number,
        "invoice_issued_on": invoice.issued_on,
        "period_start": invoice.period_start,
        "period_last_day": invoice.period_end - timedelta(days=1),
        "reason": credit_note.reason,
        "outcome": outcome,
        "lines": [
            {
                "description": line.description,
                "category": BillingCategory(line.category).label,
                "amount": _money(line.amount_minor, currency),
            }
            for line in credit_note.lines.all()
        ],
        "total": _money(credit_note.amount_minor, currency),
        "invoice_total": _money(invoice.total_minor, currency),
        "issuer": {"name": agency.name, "address": agency.address, "email": agency.email},
        "recipient": {"name": client.name, "email": client.email, "address": ""},
        "branding": _branding(agency),
    }


def credit_note_pdf(*, credit_note: CreditNote, agency: Agency) -> bytes:
    """A credit note's PDF, rendered once and stored (it never changes, MON-3); call inside its agency's schema."""
    schema = connection.schema_name  # type: ignore[attr-defined]
    return _stored_or_render(
        invoice=credit_note,
        model=CreditNote,
        name=f"credit-notes/{schema}/{credit_note.number}.pdf",
        context_factory=lambda: credit_note_context(credit_note, agency),
        template="pdf/credit_note.html",
        always=True,
    )


def credit_note_pdf_filename(credit_note: CreditNote) -> str:
    return f"credit-note-{credit_note.number}.pdf"


def _template_version() -> str:
    """A digest of everything besides the document's values that shapes the PDF: the template, the stylesheet,
    the brand rules and the renderer's version. Computed once per process (a deployment changes them)."""
    version = getattr(_template_version, "value", None)
    if version is None:
        import weasyprint

        digest = hashlib.sha256(f"weasyprint {weasyprint.__version__}\n{BRAND_CSS}\n".encode())
        for path in sorted(INVOICE_CSS.parent.iterdir()):
            if path.is_file():
                digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        version = _template_version.value = digest.hexdigest()[:16]  # type: ignore[attr-defined]
    return version


def _context_digest(context: dict) -> str:
    branding = {key: value for key, value in context["branding"].items() if key != "logo_image"}  # logo URL: digest
    values = {**context, "branding": branding, "template_version": _template_version()}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _stored_digest(invoice) -> str | None:
    if not invoice.pdf:
        return None
    try:
        with invoice._meta.get_field("pdf").storage.open(invoice.pdf.name, "rb") as handle:
            return _bytes_digest(handle.read())
    except FileNotFoundError:
        return None  # rendered again on the next read, under the same name: named by its values meanwhile


def invoice_pdf_etag(*, invoice: Invoice, agency: Agency) -> str:
    """The HTTP entity tag (quoted) of a client invoice's PDF, without rendering it; call inside its schema."""
    return f'"{_stored_digest(invoice) or _context_digest(client_invoice_context(invoice, agency))}"'


def stored_pdf_etag(data: bytes) -> str:
    """The entity tag of a stored PDF, from the bytes just read (or stored) by `invoice_pdf`."""
    return f'"{_bytes_digest(data)}"'


def pdf_filename(invoice) -> str:
    return f"invoice-{invoice.number}.pdf"


def invoices_pdf_missing(*, issued_on: list, chunk: int) -> list[list[int]]:
    """Ids of the client invoices issued on these days whose PDF is not stored yet, in chunks (current schema)."""
    ids = list(Invoice.objects.filter(issued_on__in=issued_on, pdf="").order_by("pk").values_list("pk", flat=True))
    return [ids[start : start + chunk] for start in range(0, len(ids), chunk)]


def invoices_pdf_store(*, invoice_ids: list[int]) -> dict[str, int]:
    """Render and store the PDFs of those invoices that are settled and not stored yet (current agency schema);
    the others are left to be rendered on download, as `invoice_pdf` always does. Safe to run twice: the first
    writer of a path wins (MON-3)."""
    agency = current_agency()
    stored = skipped = 0
    for invoice in Invoice.objects.filter(pk__in=invoice_ids, pdf="").prefetch_related("charges"):
        if not is_settled([c.status for c in invoice.charges.all()]):
            skipped += 1
            continue
        invoice_pdf(invoice=invoice, agency=agency)
        stored += 1
    return {"stored": stored, "not_settled": skipped}
