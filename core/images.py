"""Raster logos: what an agency may upload, and what the invoice renderer will embed.

A logo is a PNG or a JPEG, decoded once at upload under bounds (bytes, pixels, each side: Pillow's decompression
bomb check made an error), and stored re-encoded as a PNG of at most `STORED_SIDE` pixels a side: the stored file is
pixels the product wrote, whatever the upload held (metadata, trailing bytes, a polyglot). SVG is refused: a vector
logo is a document that can refer to other files (CSS `url()`, `@import`, even written with escapes), and the PDF
renderer must fetch nothing from user content (docs/decisions.md, "Logos are raster images").
"""

from __future__ import annotations

import io
import warnings

from core.errors import ApplicationError

MAX_UPLOAD_BYTES = 1024 * 1024
MAX_SIDE = 8192  # pixels, either side, of an upload
MAX_PIXELS = 16_000_000  # width × height of an upload, checked before decoding
STORED_SIDE = 1200  # the stored logo fits in this square
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}


class LogoRefused(ApplicationError):
    code = "invalid_logo"


def _refuse(message: str) -> LogoRefused:
    return LogoRefused(message, fields={"logo": [message]})


def _opened(data: bytes):
    """The image, header read and bounds checked, not decoded yet."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_UPLOAD_BYTES:
        raise _refuse("The logo must be at most 1 MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning, OSError, ValueError):
        raise _refuse("The logo must be a PNG or JPEG image (SVG is not accepted: export it as a PNG).") from None
    width, height = image.size
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE) or width * height > MAX_PIXELS:
        raise _refuse(f"The logo is {width} × {height} pixels: at most {MAX_SIDE} a side and 16 megapixels.")
    return image


def logo_normalized(data: bytes) -> bytes:
    """The PNG the product stores for an uploaded logo, or LogoRefused with a message for the field."""
    from PIL import Image

    image = _opened(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError, OSError, ValueError, SyntaxError):
        raise _refuse("The logo could not be read: the file is damaged or not a PNG or JPEG image.") from None
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    image.thumbnail((STORED_SIDE, STORED_SIDE))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def logo_embeddable(data: bytes) -> str | None:
    """The MIME type of a stored logo the invoice renderer may embed, or None (not a raster image within the
    bounds: a logo stored before these rules, or a damaged file). Reads the header only."""
    try:
        image = _opened(data)
    except LogoRefused:
        return None
    return FORMATS.get(image.format or "")
