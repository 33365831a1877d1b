"""Any image file -> a 48x48 uint8 face: the one reader shared by image folders and `fernas predict`.

Pillow's ``convert("L")`` clips the pixels of deeper modes instead of scaling them (a 16-bit
face turns white), so images with more than 8 bits per pixel are scaled here first:
16-bit integers (``I;16*``, and ``I`` where the file says 16 bits, as older Pillow opens a
16-bit PNG and Pillow a 16-bit PGM) keep their top 8 bits, floats (``F``) in 0..1 are scaled by 255 and floats in
0..255 are kept; 32-bit integers or floats outside those ranges have no known scale and are
refused.  Any reason a file cannot be read (not an image, truncated, a decompression bomb,
such pixels) is a `BadImage` whose message is one line.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from fernas.dataset import IMAGE_SIZE
from fernas.errors import first_line


class BadImage(ValueError):
    """A file that cannot become a face; the message says why in one line, the caller names the file."""


def read_face(path) -> np.ndarray:
    """Open an image file and return its face (`image_to_face`), (48, 48) uint8; raises BadImage."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Between Pillow's limit and twice it Pillow only warns (two lines on stderr); such an
            # image is still loaded.  Above twice the limit it raises DecompressionBombError.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return image_to_face(im)
    except UnidentifiedImageError:
        raise BadImage("not an image Pillow can read") from None
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise BadImage(f"more than {limit:,} pixels, Pillow's limit against decompression bombs") from None
    except BadImage:
        raise
    except FileNotFoundError:
        raise BadImage("a link to a file that does not exist" if os.path.islink(path) else "no such file") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt data
        raise BadImage(first_line(exc)) from None


def image_to_face(im) -> np.ndarray:
    """A PIL image of a face crop -> (48, 48) uint8 grayscale, the same for training and predict.

    Deeper pixels are scaled to 8 bits (see the module docstring), EXIF orientation is applied
    (phone photos), colour becomes luminance, a non-square image is centre-cropped to a square
    (no squashing), then resized bilinearly to 48x48.  Raises BadImage for pixels without a scale.
    """
    from PIL import Image, ImageOps

    bits = _integer_bits(im)  # read before exif_transpose, whose copy forgets the file's format
    im = ImageOps.exif_transpose(im)
    im = _to_8bit(im, bits) if im.mode.startswith(("I", "F")) else im.convert("L")
    w, h = im.size
    s = min(w, h)
    if (w, h) != (s, s):
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s))
    if im.size != (IMAGE_SIZE, IMAGE_SIZE):
        im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR, reducing_gap=None)
    return np.asarray(im, dtype=np.uint8)


def _integer_bits(im) -> int | None:
    """Bits per pixel of an integer-mode image when known (16 for I;16*), else None."""
    if im.mode.startswith("I;16"):
        return 16
    if im.mode != "I":
        return None
    if im.format in ("PNG", "PPM"):
        # neither has 32-bit grayscale: an 'I' PNG (Pillow < 10) is a 16-bit one, and Pillow
        # opens a PGM of more than 8 bits as 'I' scaled to 0..65535
        return 16
    tag = getattr(im, "tag_v2", None)  # TIFF: BitsPerSample
    bps = tag.get(258) if tag is not None else None
    bps = bps[0] if isinstance(bps, tuple) and bps else bps
    return 16 if bps == 16 else None


def _to_8bit(im, bits: int | None):
    """An image in mode I;16*, I or F -> mode L, scaled (never clipped) to 0..255."""
    from PIL import Image

    a = np.asarray(im)  # (H, W): uint16 (any byte order), int32 or float32
    if im.mode == "F":
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0 and hi <= 255):
            raise BadImage(f"floating-point pixels in {lo:g}..{hi:g}; expected 0..1 or 0..255")
        scaled = a * 255.0 if hi <= 1 else a  # 0..1 is a normalised image
        return Image.fromarray(np.rint(scaled).astype(np.uint8))
    if bits is None:
        raise BadImage("32-bit integer pixels have no known scale; expected an image with 8 or 16 bits "
                       "per pixel")
    if a.size and (int(a.min()) < 0 or int(a.max()) >= 1 << bits):
        raise BadImage(f"{bits}-bit pixels outside 0..{(1 << bits) - 1}")
    # The top 8 bits: exact for 16-bit images made from 8-bit ones (v * 257 >> 8 == v).
    return Image.fromarray((a.astype(np.uint32) >> (bits - 8)).astype(np.uint8))
