"""Image decoding by content (not by file extension) into the layouts augkit works on."""

from __future__ import annotations

import os

import cv2
import numpy as np

__all__ = ["read_image", "decode_image", "ImageReadError", "to_uint8_rgb"]


class ImageReadError(ValueError):
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


def decode_image(data: bytes | np.ndarray, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, TIFF, WebP... whatever the content is) to uint8 RGB."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buf.size == 0:
        raise ImageReadError(f"{name}: the file is empty")
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f"{name}: not a decodable image (corrupt or unsupported format)")
    return to_uint8_rgb(image)


def read_image(path) -> np.ndarray:
    """Read an image file as uint8 RGB HxWx3, whatever its extension says.

    Raises:
        ImageReadError: the file is missing, empty or not an image (the message names it).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: image file not found") from None
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read ({e.strerror})") from None
    return decode_image(data, path)
