"""R9 — the PDF renderer fetches nothing from user content, in bounded time and memory (INV-1, TEN-2).

The attack review got local files read through the logo: the SVG check matched `url(` and `@import` as text, so CSS
escapes (`\\75rl(`, `@\\69mport`) passed, and the renderer's fetcher allowed `file:` — a FIFO hung a web request,
`/dev/zero` grew a render to 2.7 GB. Now logos are PNG or JPEG only, decoded once at upload under bounds and stored
re-encoded (core/images.py); the renderer's URL fetcher answers the logo from memory and the product's own files,
nothing else; and each render runs in a child process under an address-space limit and a deadline (billing/pdf.py).

Every hostile logo below is tried three ways: uploaded (refused with a message under the field, no row changed),
stored as a logo kept from before these rules (the invoice renders without it), and written straight into the
document the renderer gets, as if the template's escaping failed (the renderer refuses every URL in it). A local
HTTP server counts requests and a FIFO tells whether anyone opened it: both must see nothing.
"""

from __future__ import annotations

import io
import os
import resource
import struct
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django_tenants.utils import schema_context
from PIL import Image
from pypdf import PdfReader

from billing.models import Invoice
from billing.pdf import PdfRenderFailed, invoice_pdf, render_bounded, render_children_reset
from tenants.models import Agency
from tests.api.bodies import table_digests
from tests.conftest import login_client
from tests.reliability.harness import record_figures, size
from tests.ui_helpers import billed_agency

pytestmark = pytest.mark.django_db

ROUNDS = size(ci=1, full=10)
FIGURES: Counter = Counter()


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).hits.append(self.path)
        body = b"@font-face{font-family:y;src:url(http://127.0.0.1/)} body{background:red}"
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    """A local HTTP server that records every request it gets."""
    _Recorder.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.hits
    server.shutdown()
    server.server_close()


@pytest.fixture
def fifo(tmp_path):
    """A FIFO and a watcher that notes if anyone ever opens it for reading (an open for writing then succeeds)."""
    path = tmp_path / "fifo"
    os.mkfifo(path)
    opened = threading.Event()
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.005)
                continue
            opened.set()
            os.write(fd, b"x")
            os.close(fd)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    yield path, opened
    stop.set()
    thread.join()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions in a few bytes (the IHDR is valid, the data is not there)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _bomb_png() -> bytes:
    """A real PNG of 4,000 × 4,001 pixels (over 16 megapixels) that compresses to a few kilobytes."""
    out = io.BytesIO()
    Image.new("L", (4000, 4001)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def hostile_logos(base: str, fifo_path) -> list[tuple[str, str, bytes]]:
    """(what, file name, bytes): every payload of the review, and their cousins."""
    svg = (
        "<svg xmlns='http://www.w3.org/2000/svg' xmlns:xlink='http://www.w3.org/1999/xlink' width='40' height='40'>"
        "{}</svg>"
    )
    laughs = (
        "<?xml version='1.0'?><!DOCTYPE svg [<!ENTITY a 'lollollollollollollollollollol'>"
        + "".join(f"<!ENTITY {chr(98 + n)} '{('&' + chr(97 + n) + ';') * 10}'>" for n in range(9))
        + "]><svg xmlns='http://www.w3.org/2000/svg'><text>&j;</text></svg>"
    )
    return [
        (
            "css escape \\75rl( to /dev/zero",
            "logo.svg",
            svg.format(
                "<style>@font-face{font-family:x;src:\\75rl(file:///dev/zero)}</style><text font-family='x'>a</text>"
            ).encode(),
        ),
        (
            "css escape @\\69mport over http",
            "logo.svg",
            svg.format(f"<style>@\\69mport '{base}/import.css';</style><rect width='9' height='9'/>").encode(),
        ),
        ("fill \\75rl( over http", "logo.svg", svg.format(f"<rect style='fill:\\75rl({base}/fill)'/>").encode()),
        (
            "file: to a FIFO",
            "logo.svg",
            svg.format(f"<image href='file://{fifo_path}' width='9' height='9'/>").encode(),
        ),
        ("file: to /etc/hostname", "logo.svg", svg.format("<image xlink:href='file:///etc/hostname'/>").encode()),
        ("http: image", "logo.svg", svg.format(f"<image href='{base}/image.png' width='9' height='9'/>").encode()),
        (
            "huge dimensions (SVG)",
            "logo.svg",
            b"<svg xmlns='http://www.w3.org/2000/svg' width='1000000' height='1000000'/>",
        ),
        ("billion laughs", "logo.svg", laughs.encode()),
        ("huge dimensions (PNG header)", "logo.png", _png_header(100_000, 100_000)),
        ("decompression bomb (PNG)", "logo.png", _bomb_png()),
        ("SVG named .png", "logo.png", svg.format(f"<image href='{base}/x'/>").encode()),
        ("truncated PNG", "logo.png", _png_header(64, 64)[:40]),
    ]


def hostile_document(base: str, fifo_path, logos: list[tuple[str, str, bytes]]) -> str:
    """An invoice page with every hostile reference written into it, as if escaping had failed."""
    import base64

    images = "".join(f"<img src='data:image/svg+xml;base64,{base64.b64encode(data).decode()}'>" for _, _, data in logos)
    return (
        "<html><head>"
        f"<link rel='stylesheet' href='{base}/linked.css'>"
        f"<style>@import url({base}/imported.css); @\\69mport '{base}/escaped.css';"
        "@font-face{font-family:z;src:url(file:///dev/zero)} @font-face{font-family:w;src:\\75rl(file:///dev/zero)}"
        f"body{{font-family:z,w;background:\\75rl({base}/background)}}</style></head><body>"
        f"<img src='file://{fifo_path}'><img src='file:///dev/zero'><img src='file:///etc/hostname'>"
        f"<img src='{base}/image.png'><img src='manage.py'><img src='../../../../etc/passwd'>"
        f"<svg width='9' height='9'><image href='{base}/inline-svg' width='9' height='9'/></svg>"
        f"<iframe src='{base}/frame'></iframe><object data='{base}/object'></object>"
        f"{images}<p>Invoice</p></body></html>"
    )


@pytest.fixture
def scenario(agency_a):
    return billed_agency(agency_a, months=(__import__("datetime").date(2027, 1, 1),))


def _rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_R9_INV_1_hostile_logos_are_refused_at_upload(scenario, recorder, fifo):
    base, hits = recorder
    fifo_path, opened = fifo
    http = login_client(scenario.agency, scenario.admin.email)
    from tests.reliability.test_r6_bad_input import _setup_body

    for _ in range(ROUNDS):
        for what, name, data in hostile_logos(base, fifo_path):
            before = table_digests("public", scenario.agency.schema_name)
            response = http.post("/setup/", {**_setup_body(), "logo": SimpleUploadedFile(name, data)})
            FIGURES["uploads"] += 1
            assert response.status_code == 400, what
            assert 'id="id_logo_error"' in response.content.decode(), what
            assert table_digests("public", scenario.agency.schema_name) == before, what
            FIGURES["uploads_refused"] += 1
    assert hits == [] and not opened.is_set()
    record_figures(
        "R9-uploads",
        {
            "hostile_uploads": FIGURES["uploads"],
            "refused_400": FIGURES["uploads_refused"],
            "rows_changed": 0,
            "responses_5xx": 0,
            "http_hits": 0,
            "fifo_opened": False,
        },
    )


def test_R9_INV_1_a_stored_hostile_logo_or_document_fetches_nothing_in_bounded_time(scenario, recorder, fifo):
    base, hits = recorder
    fifo_path, opened = fifo
    logos = hostile_logos(base, fifo_path)
    agency = Agency.objects.get(pk=scenario.agency.pk)
    slowest = 0.0
    rss_before = _rss_kb()
    for _ in range(ROUNDS):
        for what, name, data in logos:
            # A logo kept from before these rules: the invoice renders, without it.
            agency.logo.save(f"{agency.schema_name}/legacy-{name}", ContentFile(data), save=True)
            with schema_context(agency.schema_name):
                invoice = Invoice.objects.filter(client=scenario.declining).first()  # unsettled: rendered fresh
                started = time.perf_counter()
                pdf = invoice_pdf(invoice=invoice, agency=agency)
                slowest = max(slowest, time.perf_counter() - started)
            page = PdfReader(io.BytesIO(pdf)).pages[0]
            assert len(page.images) == 0, what
            FIGURES["stored_renders"] += 1
        # Every hostile reference written into the document itself.
        started = time.perf_counter()
        pdf = render_bounded(hostile_document(base, fifo_path, logos), color="#2f5bd3")
        slowest = max(slowest, time.perf_counter() - started)
        assert PdfReader(io.BytesIO(pdf)).pages
        FIGURES["document_renders"] += 1
    time.sleep(0.2)  # anything in flight would have arrived by now
    assert hits == [], hits
    assert not opened.is_set(), "the FIFO was opened"
    assert slowest < 15
    grown_mb = (_rss_kb() - rss_before) / 1024
    assert grown_mb < 100, f"the serving process grew {grown_mb:.0f} MB"
    record_figures(
        "R9-render",
        {
            "hostile_logos": len(logos),
            "stored_logo_renders": FIGURES["stored_renders"],
            "hostile_document_renders": FIGURES["document_renders"],
            "http_hits": len(hits),
            "fifo_opened": opened.is_set(),
            "slowest_render_seconds": round(slowest, 2),
            "serving_process_grew_mb": round(max(grown_mb, 0), 1),
        },
    )


def test_R9_INV_1_a_render_is_bounded_in_time_and_memory(scenario):
    """A document that takes too long is stopped at the deadline; one that needs more memory than the render child
    may take fails; neither grows the serving process, and the next render works."""
    heavy = "<table>" + "".join(f"<tr><td>{n}</td><td>{'x ' * 40}</td></tr>" for n in range(20000)) + "</table>"
    render_children_reset()
    rss_before = _rss_kb()
    with override_settings(PDF_RENDER_TIMEOUT_SECONDS=1):
        started = time.perf_counter()
        with pytest.raises(PdfRenderFailed):
            render_bounded(heavy, color="#2f5bd3")
        stopped_after = time.perf_counter() - started
    assert stopped_after < 15  # the 1 s deadline plus a fork and a kill, on a machine that may be busy
    render_children_reset()
    with override_settings(PDF_RENDER_MEMORY_MB=24):
        started = time.perf_counter()
        with pytest.raises(PdfRenderFailed):
            render_bounded(heavy, color="#2f5bd3")
        memory_failed_after = time.perf_counter() - started
    render_children_reset()
    assert (_rss_kb() - rss_before) / 1024 < 50
    with schema_context(scenario.agency.schema_name):
        invoice = Invoice.objects.filter(client=scenario.declining).first()
        assert PdfReader(io.BytesIO(invoice_pdf(invoice=invoice, agency=scenario.agency))).pages
    record_figures(
        "R9-bounds",
        {
            "deadline_seconds": 1,
            "stopped_after_seconds": round(stopped_after, 2),
            "memory_limit_mb": 24,
            "memory_failure_after_seconds": round(memory_failed_after, 2),
            "next_render_ok": True,
        },
    )
