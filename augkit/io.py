"""Image decoding by content (not by file extension) into the layouts augkit works on.

Images are read as they DISPLAY: a JPEG's EXIF orientation tag (a phone photo taken sideways is
stored sideways with orientation 6) is applied after decoding, as ``cv2.imread`` does, so the
pixels, their size and the landmarks drawn on them agree. The decode itself uses
``cv2.IMREAD_UNCHANGED`` (16-bit, gray and alpha survive until ``to_uint8_rgb``), which ignores the
tag; :func:`exif_orientation` reads it with a small bounded parser (malformed EXIF counts as
orientation 1, never as an error). :func:`image_size` gives the displayed size from the file's
header alone. Every reader in augkit (train, predict, evaluate, show) goes through this module.
"""

from __future__ import annotations

import os
import struct

import cv2
import numpy as np

from augkit.errors import InputError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "apply_orientation",
    "decode_image",
    "exif_orientation",
    "image_size",
    "read_image",
    "to_uint8_rgb",
]

#: the file extensions taken as images when a folder is listed (an image beside a ``.pts`` file,
#: the images of a prediction folder); decoding itself goes by content, not by extension.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".ppm", ".pgm")

_HEAD_BYTES = 1 << 18  # image_size reads at most this much of a file before falling back to decoding
_MAX_SEGMENTS = 512    # JPEG segments walked before giving up (bounded on malformed data)


class ImageReadError(InputError):
    """An image file that is missing, empty or cannot be decoded; the message names the file."""


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Gray, BGR, BGRA (OpenCV order), 8- or 16-bit -> uint8 RGB HxWx3."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------ JPEG / EXIF parsing

def _jpeg_segments(data: bytes):
    """Yield ``(marker, payload)`` of a JPEG's header segments up to the image data (bounded)."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return
    pos = 2
    for _ in range(_MAX_SEGMENTS):
        if pos + 4 > len(data) or data[pos] != 0xFF:
            return
        while pos + 1 < len(data) and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        if pos + 4 > len(data):
            return
        marker = data[pos + 1]
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no header segment follows
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # stand-alone markers
            pos += 2
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2 or pos + 2 + length > len(data):
            return
        yield marker, data[pos + 4:pos + 2 + length]
        pos += 2 + length


def _tiff_orientation(tiff: bytes) -> int:
    """The orientation tag (0x0112) of IFD0 of a TIFF block; 1 when absent or malformed."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    end = "<" if tiff[:2] == b"II" else ">"
    magic, ifd = struct.unpack(end + "HI", tiff[2:8])
    if magic != 42 or ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(end + "H", tiff[ifd:ifd + 2])
    for i in range(min(count, 1024)):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            return 1
        tag, kind, n = struct.unpack(end + "HHI", tiff[entry:entry + 8])
        if tag != 0x0112:
            continue
        if kind != 3 or n < 1:  # SHORT, at least one value (stored in the entry itself)
            return 1
        (value,) = struct.unpack(end + "H", tiff[entry + 8:entry + 10])
        return value if 1 <= value <= 8 else 1
    return 1


def exif_orientation(data: bytes | np.ndarray) -> int:
    """The EXIF orientation (1-8) of JPEG bytes; 1 for other formats, no EXIF, or malformed EXIF."""
    data = bytes(data) if not isinstance(data, bytes) else data
    for marker, payload in _jpeg_segments(data):
        if marker == 0xE1 and payload[:6] == b"Exif\x00\x00":
            return _tiff_orientation(payload[6:])
    return 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a stored image into its displayed form for an EXIF ``orientation`` (1-8)."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:  # transpose: mirror about the main diagonal
        return np.ascontiguousarray(np.swapaxes(image, 0, 1))
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:  # transverse: mirror about the anti-diagonal
        return np.ascontiguousarray(np.swapaxes(image, 0, 1)[::-1, ::-1])
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


def _header_size(head: bytes) -> tuple[int, int] | None:
    """Stored ``(w, h)`` from the first bytes of a JPEG or PNG file; None when not found there."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24 and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    for marker, payload in _jpeg_segments(head):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and len(payload) >= 5:
            h, w = struct.unpack(">HH", payload[1:5])
            return (w, h) if w and h else None
    return None


# ------------------------------------------------------------------------------------ public API

def decode_image(data: bytes | np.ndarray, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, TIFF, WebP... whatever the content is) to uint8
    RGB, as displayed (EXIF orientation applied)."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buf.size == 0:
        raise ImageReadError(f"{name}: the file is empty")
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f"{name}: not a decodable image (corrupt or unsupported format)")
    return to_uint8_rgb(apply_orientation(image, exif_orientation(buf[:_HEAD_BYTES].tobytes())))


def _read_bytes(path: str, limit: int = -1) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: image file not found") from None
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read ({e.strerror})") from None


def read_image(path) -> np.ndarray:
    """Read an image file as uint8 RGB HxWx3, as displayed, whatever its extension says.

    Raises:
        ImageReadError: the file is missing, empty or not an image (the message names it).
    """
    path = os.fspath(path)
    return decode_image(_read_bytes(path), path)


def image_size(path) -> tuple[int, int]:
    """The displayed ``(w, h)`` of an image file, from its header where it can (JPEG, PNG; EXIF
    orientations 5-8 swap the sides), else by decoding it.

    Raises:
        ImageReadError: the file is missing, empty or not an image (the message names it).
    """
    path = os.fspath(path)
    head = _read_bytes(path, _HEAD_BYTES)
    if not head:
        raise ImageReadError(f"{path}: the file is empty")
    size = _header_size(head)
    if size is None:
        image = read_image(path)
        return image.shape[1], image.shape[0]
    return (size[1], size[0]) if exif_orientation(head) >= 5 else (size[0], size[1])
