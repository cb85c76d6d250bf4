"""Pure image kernels (numpy + OpenCV). None of them modifies its input.

Shape: images are ``HxW`` or ``HxWxC`` with ``C`` in (1, 3, 4); colour is RGB(A), and alpha is
left alone by the intensity kernels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

_INTERP = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
           "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}
_BORDER = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101,
           "replicate": cv2.BORDER_REPLICATE, "wrap": cv2.BORDER_WRAP}
_RAMP = np.arange(256, dtype=np.float32)


def interpolation_flag(name: str) -> int:
    if name not in _INTERP:
        raise ValueError(f"interpolation must be one of {sorted(_INTERP)}, got {name!r}")
    return _INTERP[name]


def border_flag(name: str) -> int:
    if name not in _BORDER:
        raise ValueError(f"border_mode must be one of {sorted(_BORDER)}, got {name!r}")
    return _BORDER[name]


def _restore_channels(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    # OpenCV drops a trailing channel axis of length 1
    return out[:, :, None] if like.ndim == 3 and out.ndim == 2 else out


def halve(image: np.ndarray, x: bool, y: bool) -> np.ndarray:
    """Average 2x2 (or 2x1) blocks with ``INTER_AREA``; an odd last row or column is dropped, so
    the fast exact-factor path of OpenCV runs. Pixel ``i`` of the result covers source pixels
    ``2i`` and ``2i + 1``: ``x_small = (x + 0.5) / 2 - 0.5``."""
    h, w = image.shape[:2]
    w2, h2 = (w // 2 if x else w), (h // 2 if y else h)
    roi = image[: h2 * (2 if y else 1), : w2 * (2 if x else 1)]
    return _restore_channels(cv2.resize(roi, (w2, h2), interpolation=cv2.INTER_AREA), image)


def warp(image: np.ndarray, m: np.ndarray, size: tuple[int, int], interpolation: int = cv2.INTER_LINEAR,
         border: int = cv2.BORDER_CONSTANT, fill=0, preshrink: float = 0.5) -> np.ndarray:
    """One ``cv2.warpAffine`` of ``image`` by the 3x3 ``m`` into a ``size = (w, h)`` frame.

    When the matrix shrinks a source axis below ``preshrink``, that axis is first halved with
    ``INTER_AREA`` (repeatedly, until the rest of the shrink is at least ``preshrink``) so the
    warp does not alias, and the matrix is corrected: the geometry is unchanged. Halving drops an
    odd last source row/column (under a pixel of the output at these scales).
    """
    if preshrink and interpolation != cv2.INTER_NEAREST:
        fx = math.hypot(m[0, 0], m[1, 0])  # how long a source x-step is in the output
        fy = math.hypot(m[0, 1], m[1, 1])
        if fx < preshrink or fy < preshrink:
            kx = ky = 1
            while fx * kx < preshrink or fy * ky < preshrink:
                hx, hy = fx * kx < preshrink and image.shape[1] > 1, fy * ky < preshrink and image.shape[0] > 1
                if not (hx or hy):
                    break
                image = halve(image, hx, hy)
                kx, ky = kx * (2 if hx else 1), ky * (2 if hy else 1)
            # source pixel x' of the small image sits at x = (x' + 0.5) * k - 0.5 of the original
            pre = np.array([[kx, 0.0, 0.5 * kx - 0.5], [0.0, ky, 0.5 * ky - 0.5], [0.0, 0.0, 1.0]])
            m = m @ pre
    if isinstance(fill, (int, float)):
        fill = (fill,) * 4
    out = cv2.warpAffine(image, m[:2], size, flags=interpolation, borderMode=border, borderValue=fill)
    return _restore_channels(out, image)


def linear_table(gain: float, bias: float) -> np.ndarray:
    """LUT for ``clip(x * gain + bias)``, uint8."""
    return np.clip(_RAMP * gain + bias, 0, 255).round().astype(np.uint8)


def gamma_table(gamma: float) -> np.ndarray:
    """LUT for ``255 * (x / 255) ** gamma``, uint8."""
    return np.clip(255.0 * (_RAMP / 255.0) ** gamma, 0, 255).round().astype(np.uint8)


def _need_uint8(image: np.ndarray, what: str) -> None:
    if image.dtype != np.uint8:
        raise TypeError(f"{what} works on uint8 images, got {image.dtype}")


def lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Apply a 256-entry table to every colour channel (alpha kept)."""
    _need_uint8(image, "a lookup table")
    if image.ndim == 3 and image.shape[2] == 4:
        out = image.copy()
        out[..., :3] = cv2.LUT(np.ascontiguousarray(image[..., :3]), table)
        return out
    return _restore_channels(cv2.LUT(image, table), image)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` pixels (OpenCV's kernel size for that sigma)."""
    if sigma <= 0:
        return image.copy()
    return _restore_channels(cv2.GaussianBlur(image, (0, 0), sigma), image)


def motion_blur(image: np.ndarray, length: float, angle: float) -> np.ndarray:
    """Average along a centred line of ``length`` pixels at ``angle`` degrees."""
    k = max(1, int(round(length)))
    if k == 1:
        return image.copy()
    size = k if k % 2 else k + 1
    kernel = np.zeros((size, size), np.float32)
    c = (size - 1) / 2
    dx, dy = math.cos(math.radians(angle)) * (k - 1) / 2, -math.sin(math.radians(angle)) * (k - 1) / 2
    shift = 4  # sub-pixel line ends
    cv2.line(kernel, (round((c - dx) * 16), round((c - dy) * 16)), (round((c + dx) * 16), round((c + dy) * 16)),
             1.0, 1, cv2.LINE_AA, shift)
    kernel /= kernel.sum()
    return _restore_channels(cv2.filter2D(image, -1, kernel), image)


def grayscale(image: np.ndarray) -> np.ndarray:
    """Gray in the input's channel count (RGB weights; alpha kept)."""
    if image.ndim == 2 or image.shape[2] == 1:
        return image.copy()
    gray = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    out = image.copy()
    out[..., :3] = gray[..., None]
    return out


def add_noise(image: np.ndarray, std: float, seed: int) -> np.ndarray:
    """Add Gaussian noise of ``std`` levels drawn from ``default_rng(seed)`` (alpha kept)."""
    rng = np.random.default_rng(seed)
    color = image if image.ndim == 2 or image.shape[2] != 4 else image[..., :3]
    noisy = color.astype(np.float32) + rng.standard_normal(color.shape, dtype=np.float32) * np.float32(std)
    if image.dtype == np.uint8:
        noisy = np.clip(noisy.round(), 0, 255).astype(np.uint8)
    elif image.dtype == np.uint16:
        noisy = np.clip(noisy.round(), 0, 65535).astype(np.uint16)
    if color is image:
        return noisy
    out = image.copy()
    out[..., :3] = noisy
    return out


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode to JPEG at ``quality`` and decode again (uint8, gray or colour; alpha kept)."""
    _need_uint8(image, "JPEG re-encoding")
    color = image if image.ndim == 2 or image.shape[2] != 4 else np.ascontiguousarray(image[..., :3])
    ok, buf = cv2.imencode(".jpg", color, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode the image as JPEG")
    dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    dec = _restore_channels(dec, color)
    if color is image:
        return dec
    out = image.copy()
    out[..., :3] = dec
    return out


def erase(image: np.ndarray, rects, fill, seed: int) -> np.ndarray:
    """Paint rectangles given as ``[x, y, w, h]`` fractions of the frame.

    ``fill``: a number, "random" (one random colour per rectangle) or "noise" (random pixels).
    """
    out = image.copy()
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    top = 255 if image.dtype == np.uint8 else (65535 if image.dtype == np.uint16 else 1.0)
    for fx, fy, fw, fh in rects:
        x0, y0 = int(fx * w), int(fy * h)
        x1, y1 = max(x0 + 1, int(round((fx + fw) * w))), max(y0 + 1, int(round((fy + fh) * h)))
        region = out[y0:y1, x0:x1]
        if fill == "random":
            region[...] = (rng.random(region.shape[2:] or ()) * top).astype(image.dtype)
        elif fill == "noise":
            region[...] = (rng.random(region.shape) * top).astype(image.dtype)
        else:
            region[...] = fill
    return out
