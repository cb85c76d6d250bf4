"""Pure image kernels (numpy + OpenCV). None of them modifies its input.

Shape: images are ``HxW`` or ``HxWxC`` with ``C`` in (1, 3, 4); colour is RGB(A), and alpha is
left alone by the intensity kernels.

Dtypes: uint8 (0-255), uint16 (0-65535) and float32 (0-1) are all supported by every kernel.
Intensity magnitudes are given on the uint8 scale (a noise ``std`` of 5 means 5/255 of the full
range) and scaled to the image's range; results are clipped to that range and keep the dtype.
uint8 goes through the exact same lookup tables as before.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from augkit.errors import InputError
from . import geometry as G

_INTERP = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
           "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}
_BORDER = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101,
           "replicate": cv2.BORDER_REPLICATE, "wrap": cv2.BORDER_WRAP}
_RAMP = np.arange(256, dtype=np.float32)


def interpolation_flag(name: str) -> int:
    if name not in _INTERP:
        raise InputError(f"interpolation must be one of {sorted(_INTERP)}, got {name!r}")
    return _INTERP[name]


def border_flag(name: str) -> int:
    if name not in _BORDER:
        raise InputError(f"border_mode must be one of {sorted(_BORDER)}, got {name!r}")
    return _BORDER[name]


def _restore_channels(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    # OpenCV drops a trailing channel axis of length 1
    return out[:, :, None] if like.ndim == 3 and out.ndim == 2 else out


def halve(image: np.ndarray, x: bool, y: bool) -> np.ndarray:
    """Average 2x2 (or 2x1 / 1x2) blocks with ``INTER_AREA`` (OpenCV's fast exact-factor path).
    An odd last row or column is first repeated, so nothing is lost at the edge. Pixel ``i`` of
    the result covers source pixels ``2i`` and ``2i + 1``: ``x_small = (x + 0.5) / 2 - 0.5``."""
    h, w = image.shape[:2]
    padx, pady = (w % 2 if x else 0), (h % 2 if y else 0)
    if padx or pady:
        image = _restore_channels(cv2.copyMakeBorder(image, 0, pady, 0, padx, cv2.BORDER_REPLICATE), image)
        h, w = image.shape[:2]
    out = cv2.resize(image, (w // 2 if x else w, h // 2 if y else h), interpolation=cv2.INTER_AREA)
    return _restore_channels(out, image)


def _output_corners_in_source(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The output frame's four corners mapped back into the source; all NaN when the horizon of
    the inverse map crosses the output (the part of the source it reads is then unbounded).
    Shape (4, 2)."""
    w, h = size
    corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]])
    if G.is_affine(m):   # (as before the projective path: the same windows, bit for bit)
        return np.hstack([corners, np.ones((4, 1))]) @ np.linalg.inv(m)[:2].T
    back = np.hstack([corners, np.ones((4, 1))]) @ np.linalg.inv(m).T
    if not ((back[:, 2] > 0).all() or (back[:, 2] < 0).all()):
        return np.full((4, 2), np.nan)
    return back[:, :2] / back[:, 2:]


def _source_window(m: np.ndarray, size: tuple[int, int], shape, margin: int) -> tuple[int, int, int, int]:
    """Whole-pixel window ``(x0, y0, x1, y1)`` of the source that the output frame reads (the
    whole source when a projective map's horizon crosses the output)."""
    corners = _output_corners_in_source(m, size)
    if not np.isfinite(corners).all():
        return 0, 0, shape[1], shape[0]
    (lx, ly), (hx, hy) = corners.min(axis=0), corners.max(axis=0)
    x0 = max(0, int(math.floor(lx)) - margin)
    y0 = max(0, int(math.floor(ly)) - margin)
    x1 = min(shape[1], int(math.ceil(hx)) + margin + 1)
    y1 = min(shape[0], int(math.ceil(hy)) + margin + 1)
    return x0, y0, x1, y1


_UNIT_GRID = np.stack([*np.meshgrid(np.linspace(0, 1, 5), np.linspace(0, 1, 5)), np.zeros((5, 5))], -1).reshape(25, 3)


def _shrink_factors(m: np.ndarray, size: tuple[int, int], shape) -> tuple[float, float]:
    """How long a unit source step along x and along y is in the output: the column norms of an
    affine map; for a projective one the smallest over the part of the source the output reads
    (a 5x5 grid over that window, clipped to the image: the local scale of a projective map is not
    monotone along lines, so the corners alone can miss the smallest)."""
    if G.is_affine(m):
        return math.hypot(m[0, 0], m[1, 0]), math.hypot(m[0, 1], m[1, 1])
    sh, sw = shape[0], shape[1]
    x0, y0, x1, y1 = -0.5, -0.5, sw - 0.5, sh - 0.5
    xy = _output_corners_in_source(m, size)
    if np.isfinite(xy).all():   # else the read part is unbounded: the whole image
        x0, y0 = max(x0, min(xy[:, 0].min(), x1)), max(y0, min(xy[:, 1].min(), y1))
        x1, y1 = min(x1, max(xy[:, 0].max(), x0)), min(y1, max(xy[:, 1].max(), y0))
    grid = _UNIT_GRID * (x1 - x0, y1 - y0, 0.0) + (x0, y0, 1.0)
    q = grid @ m.T
    q = q[q[:, 2] != 0]
    wq = q[:, 2:]
    u = q[:, :2] / wq
    dx = (m[:2, 0] - u * m[2, 0]) / wq      # d(q/w)/dx = (column x of A - (q/w) g_x) / w
    dy = (m[:2, 1] - u * m[2, 1]) / wq
    return float(np.sqrt((dx * dx).sum(axis=1).min())), float(np.sqrt((dy * dy).sum(axis=1).min()))


def warp(image: np.ndarray, m: np.ndarray, size: tuple[int, int], interpolation: int = cv2.INTER_LINEAR,
         border: int = cv2.BORDER_CONSTANT, fill=0, preshrink: float = 0.5) -> np.ndarray:
    """One warp of ``image`` by the 3x3 ``m`` into a ``size = (w, h)`` frame: ``cv2.warpAffine``
    when ``m`` is affine, ``cv2.warpPerspective`` only when it is projective.

    When the matrix shrinks a source axis below ``preshrink`` (for a projective map: anywhere in
    the part of the source the output reads, its smallest local scale), that part of the source is
    cut out and the axis halved with ``INTER_AREA`` (repeatedly, until the rest of the shrink is at
    least ``preshrink``) so the warp does not alias; the matrix is corrected, so the geometry is
    unchanged.
    """
    if preshrink and interpolation != cv2.INTER_NEAREST:
        fx, fy = _shrink_factors(m, size, image.shape)
        if fx < preshrink or fy < preshrink:
            kx = ky = 1
            while fx * kx < preshrink or fy * ky < preshrink:
                kx *= 2 if fx * kx < preshrink else 1
                ky *= 2 if fy * ky < preshrink else 1
            # only the window the output reads (plus room for the filters) is shrunk
            x0, y0, x1, y1 = _source_window(m, size, image.shape, margin=2 * max(kx, ky))
            if x1 > x0 and y1 > y0:
                if (x0, y0, x1, y1) != (0, 0, image.shape[1], image.shape[0]) and border == cv2.BORDER_CONSTANT:
                    image = image[y0:y1, x0:x1]
                    m = m @ np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
                small, sx, sy = image, 1, 1
                while sx < kx or sy < ky:
                    hx, hy = sx < kx and small.shape[1] > 1, sy < ky and small.shape[0] > 1
                    if not (hx or hy):
                        break
                    small = halve(small, hx, hy)
                    sx, sy = sx * (2 if hx else 1), sy * (2 if hy else 1)
                # source pixel x' of the small image sits at x = (x' + 0.5) * k - 0.5 of the original
                image = small
                m = m @ np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    if isinstance(fill, (int, float, np.number)):
        fill = (float(fill),) * 4
    if G.is_affine(m):
        out = cv2.warpAffine(image, m[:2], size, flags=interpolation, borderMode=border, borderValue=fill)
    else:
        out = cv2.warpPerspective(image, m, size, flags=interpolation, borderMode=border, borderValue=fill)
    return _restore_channels(out, image)


def linear_table(gain: float, bias: float) -> np.ndarray:
    """LUT for ``clip(x * gain + bias)``, uint8."""
    return np.clip(_RAMP * gain + bias, 0, 255).round().astype(np.uint8)


def gamma_table(gamma: float) -> np.ndarray:
    """LUT for ``255 * (x / 255) ** gamma``, uint8."""
    return np.clip(255.0 * (_RAMP / 255.0) ** gamma, 0, 255).round().astype(np.uint8)


def dtype_range(dtype) -> float:
    """The full-scale value of an image dtype: 255 (uint8), 65535 (uint16), 1.0 (float32)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if dtype == np.float32:
        return 1.0
    raise TypeError(f"image dtype must be uint8, uint16 or float32, got {dtype}: convert with "
                    "image.astype(np.float32) scaled to [0, 1], or to uint8/uint16")


def to_dtype(values: np.ndarray, dtype) -> np.ndarray:
    """Float values in the dtype's range -> that dtype (rounded for integers, always clipped)."""
    top = dtype_range(dtype)
    if np.dtype(dtype) == np.float32:
        return np.clip(values, 0.0, top).astype(np.float32)
    return np.clip(np.rint(values), 0, top).astype(dtype)


def _on_colour(image: np.ndarray, kernel) -> np.ndarray:
    """Run ``kernel`` on the colour channels (alpha kept); a new array."""
    if image.ndim == 3 and image.shape[2] == 4:
        out = image.copy()
        out[..., :3] = kernel(image[..., :3])
        return out
    return kernel(image)


def adjust_linear(image: np.ndarray, gain: float, bias: float) -> np.ndarray:
    """``clip(x * gain + bias)`` on the colour channels, ``bias`` in uint8 levels (scaled to the dtype)."""
    if image.dtype == np.uint8:
        return lut(image, linear_table(gain, bias))
    top = dtype_range(image.dtype)
    return _on_colour(image, lambda c: to_dtype(c.astype(np.float32) * np.float32(gain)
                                                 + np.float32(bias * top / 255.0), image.dtype))


def adjust_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """``top * (x / top) ** gamma`` on the colour channels (``top``: the dtype's full scale)."""
    if image.dtype == np.uint8:
        return lut(image, gamma_table(gamma))
    top = np.float32(dtype_range(image.dtype))
    return _on_colour(image, lambda c: to_dtype(
        top * np.power(np.clip(c.astype(np.float32) / top, 0, 1), np.float32(gamma)), image.dtype))


def lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Apply a 256-entry table to every colour channel of a uint8 image (alpha kept)."""
    if image.dtype != np.uint8:
        raise TypeError(f"a lookup table works on uint8 images, got {image.dtype}: use adjust_linear / adjust_gamma")
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


def downscale(image: np.ndarray, scale: float) -> np.ndarray:
    """Down to ``scale`` of the size (area averaging), then back up to it (bilinear): the look of a
    low-resolution face on the same pixel grid (the alpha channel kept). ``scale`` in (0, 1]."""
    h, w = image.shape[:2]
    small = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    if small == (w, h):
        return image.copy()

    def down_up(c: np.ndarray) -> np.ndarray:
        low = cv2.resize(c, small, interpolation=cv2.INTER_AREA)
        return _restore_channels(cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR), c)
    return _on_colour(image, down_up)


def sharpen(image: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """Unsharp mask: ``x + amount * (x - gaussian(x, sigma))``, clipped to the dtype's range (the
    alpha channel kept). uint8 blurs at 8 bits (``cv2.addWeighted`` then combines, saturating):
    within one level of the float computation, four times faster."""
    if amount == 0 or sigma <= 0:
        return image.copy()

    def unsharp(c: np.ndarray) -> np.ndarray:
        if c.dtype == np.uint8:   # two passes: an 8-bit blur, then (1 + a) x - a blur, rounded and saturated
            blurred = _restore_channels(cv2.GaussianBlur(c, (0, 0), sigma), c)
            return _restore_channels(cv2.addWeighted(c, 1.0 + amount, blurred, -float(amount), 0.0), c)
        x = c.astype(np.float32)
        detail = x - _restore_channels(cv2.GaussianBlur(x, (0, 0), sigma), x)
        return to_dtype(x + np.float32(amount) * detail, image.dtype)
    return _on_colour(image, unsharp)


def box_blur(image: np.ndarray, ksize: float) -> np.ndarray:
    """Mean over a square of ``ksize`` pixels, rounded to the nearest odd size (no shift)."""
    k = 2 * int(round((max(1.0, ksize) - 1) / 2)) + 1
    if k == 1:
        return image.copy()
    return _restore_channels(cv2.blur(image, (k, k)), image)


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """A centrally symmetric line kernel of ``length`` pixels at ``angle`` degrees (sum 1).

    Built as a horizontal line (fractional ends weighted) on an odd grid and rotated about the
    exact centre, so its centroid is the centre pixel: the blur moves nothing.
    """
    length = max(1.0, float(length))
    half = (length - 1) / 2
    size = 2 * int(math.ceil(half)) + 1
    c = (size - 1) / 2
    line = np.clip(half + 1 - np.abs(np.arange(size) - c), 0, 1).astype(np.float32)
    kernel: np.ndarray = np.zeros((size, size), np.float32)
    kernel[size // 2] = line
    if angle % 180:
        rot = cv2.getRotationMatrix2D((c, c), angle, 1.0)
        kernel = cv2.warpAffine(kernel, rot, (size, size), flags=cv2.INTER_LINEAR)
    return kernel / kernel.sum()


def motion_blur(image: np.ndarray, length: float, angle: float) -> np.ndarray:
    """Average along a centred line of ``length`` pixels at ``angle`` degrees."""
    if length <= 1:
        return image.copy()
    return _restore_channels(cv2.filter2D(image, -1, motion_kernel(length, angle)), image)


def grayscale(image: np.ndarray) -> np.ndarray:
    """Gray in the input's channel count (RGB weights; alpha kept)."""
    if image.ndim == 2 or image.shape[2] == 1:
        return image.copy()
    gray = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    out = image.copy()
    out[..., :3] = gray[..., None]
    return out


def add_noise(image: np.ndarray, std: float, seed: int) -> np.ndarray:
    """Add Gaussian noise of ``std`` uint8 levels (scaled to the dtype's range) drawn from
    ``default_rng(seed)``; clipped to the range (alpha kept)."""
    rng = np.random.default_rng(seed)
    scale = np.float32(std * dtype_range(image.dtype) / 255.0)
    color = image if image.ndim == 2 or image.shape[2] != 4 else image[..., :3]
    noisy = color.astype(np.float32) + rng.standard_normal(color.shape, dtype=np.float32) * scale
    noisy = to_dtype(noisy, image.dtype)
    if color is image:
        return noisy
    out = image.copy()
    out[..., :3] = noisy
    return out


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode to JPEG at ``quality`` and decode again (gray or colour; alpha kept).

    uint16 and float32 images: the 8-bit version is compressed and its artefacts (decoded minus
    encoded, scaled to the dtype's range) are added to the full-precision image.
    """
    if image.dtype != np.uint8:
        top = dtype_range(image.dtype)
        as8 = to_dtype(image.astype(np.float32) * np.float32(255.0 / top), np.uint8)
        artefacts = jpeg(as8, quality).astype(np.float32) - as8.astype(np.float32)
        return to_dtype(image.astype(np.float32) + artefacts * np.float32(top / 255.0), image.dtype)
    color = image if image.ndim == 2 or image.shape[2] != 4 else np.ascontiguousarray(image[..., :3])
    rgb = color.ndim == 3 and color.shape[2] == 3
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(color, cv2.COLOR_RGB2BGR) if rgb else color,
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode the image as JPEG")
    dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    assert dec is not None   # the buffer was just encoded by OpenCV
    dec = _restore_channels(cv2.cvtColor(dec, cv2.COLOR_BGR2RGB) if rgb else dec, color)
    if color is image:
        return dec
    out = image.copy()
    out[..., :3] = dec
    return out


def erase(image: np.ndarray, rects, fill, seed: int, keep_alpha: bool = False) -> np.ndarray:
    """Paint rectangles given as ``[x, y, w, h]`` fractions of the frame.

    ``fill``: a number, "random" (one random colour per rectangle) or "noise" (random pixels).
    ``keep_alpha``: paint the colour channels only (an RGBA image keeps its alpha).
    """
    if keep_alpha:
        return _on_colour(image, lambda c: erase(np.ascontiguousarray(c), rects, fill, seed))
    out = image.copy()
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    top = dtype_range(image.dtype)
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


def color_jitter(image: np.ndarray, hue: float, saturation: float, value: float) -> np.ndarray:
    """Shift the hue by ``hue`` degrees and scale saturation and value by their factors (HSV).

    uint8 colour: one ``cv2.LUT`` pass over the HSV image with a table per channel (OpenCV's
    8-bit hue runs 0-179, two degrees a step). Gray images get the value factor only; uint16 and
    float32 go through float32 HSV. Alpha is kept.
    """
    if hue == 0 and saturation == 1:   # value alone scales R, G and B alike: one linear LUT, exact
        return image.copy() if value == 1 else adjust_linear(image, value, 0.0)

    def on_rgb(c: np.ndarray) -> np.ndarray:
        if c.ndim == 2 or c.shape[2] == 1:
            return adjust_linear(c, value, 0.0)
        if c.dtype == np.uint8:
            hsv = cv2.cvtColor(np.ascontiguousarray(c), cv2.COLOR_RGB2HSV)
            table = np.empty((256, 1, 3), np.uint8)
            table[:, 0, 0] = np.mod(np.arange(256) + round(hue / 2.0), 180).astype(np.uint8)
            table[:, 0, 1] = np.clip(_RAMP * saturation, 0, 255).round().astype(np.uint8)
            table[:, 0, 2] = np.clip(_RAMP * value, 0, 255).round().astype(np.uint8)
            return cv2.cvtColor(cv2.LUT(hsv, table), cv2.COLOR_HSV2RGB)
        top = np.float32(dtype_range(c.dtype))
        hsv = cv2.cvtColor(np.ascontiguousarray(c.astype(np.float32) / top), cv2.COLOR_RGB2HSV)
        hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(hue), 360)
        hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(saturation), 0, 1)
        hsv[..., 2] = np.clip(hsv[..., 2] * np.float32(value), 0, 1)
        return to_dtype(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * top, c.dtype)
    return _on_colour(image, on_rgb)


def clahe(image: np.ndarray, clip_limit: float, grid: int) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (``cv2.createCLAHE``) on the lightness:
    a gray image directly, a colour one on the L of its Lab form (alpha kept).

    uint16 and float32: the equalisation is computed on the 8-bit lightness (OpenCV's 16-bit CLAHE
    has 65536 bins, so the same ``clip_limit`` would clip about 256 times harder) and its change
    added to the full-precision lightness: an 8-bit picture stored as uint16 gets the uint8 result.
    """
    op = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(int(grid), int(grid)))

    def equalise(light: np.ndarray, top: float) -> np.ndarray:
        """float lightness on 0..top -> equalised, same scale."""
        as8 = to_dtype(light * np.float32(255.0 / top), np.uint8)
        return light + (op.apply(as8).astype(np.float32) - as8.astype(np.float32)) * np.float32(top / 255.0)

    def colour(c: np.ndarray) -> np.ndarray:
        gray = c.ndim == 2 or c.shape[2] == 1
        if c.dtype == np.uint8:
            if gray:
                return _restore_channels(op.apply(np.ascontiguousarray(c.reshape(c.shape[:2]))), c)
            lab = cv2.cvtColor(np.ascontiguousarray(c), cv2.COLOR_RGB2LAB)
            lab[..., 0] = op.apply(np.ascontiguousarray(lab[..., 0]))
            return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
        top = np.float32(dtype_range(c.dtype))
        if gray:
            return to_dtype(equalise(c.reshape(c.shape[:2]).astype(np.float32), top), c.dtype).reshape(c.shape)
        lab = cv2.cvtColor(np.ascontiguousarray(c.astype(np.float32) / top), cv2.COLOR_RGB2LAB)  # L in 0-100
        lab[..., 0] = np.clip(equalise(lab[..., 0], 100.0), 0, 100)
        return to_dtype(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * top, c.dtype)
    return _on_colour(image, colour)


def paste(image: np.ndarray, patch: np.ndarray, x: int, y: int) -> np.ndarray:
    """``image`` with ``patch`` (same dtype and channels) written at column ``x``, row ``y``
    (clipped at the frame); alpha kept. A new array."""
    out = image.copy()
    h, w = image.shape[:2]
    ph, pw = patch.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + pw), min(h, y + ph)
    if x1 > x0 and y1 > y0:
        src = patch[y0 - y:y1 - y, x0 - x:x1 - x]
        if out.ndim == 3 and out.shape[2] == 4:
            out[y0:y1, x0:x1, :3] = src[..., :3]
        else:
            out[y0:y1, x0:x1] = src
    return out


def like(patch_rgb8: np.ndarray, image: np.ndarray) -> np.ndarray:
    """A uint8 RGB (or gray) patch in ``image``'s dtype and channel count (alpha: opaque)."""
    p = patch_rgb8
    channels = 1 if image.ndim == 2 else image.shape[2]
    if p.ndim == 2:
        p = p[..., None]
    if channels == 1 and p.shape[2] != 1:
        p = cv2.cvtColor(np.ascontiguousarray(p[..., :3]), cv2.COLOR_RGB2GRAY)[..., None]
    elif channels >= 3 and p.shape[2] == 1:
        p = np.repeat(p, 3, axis=2)
    elif channels >= 3:
        p = p[..., :3]
    if channels == 4:
        p = np.concatenate([p, np.full(p.shape[:2] + (1,), 255, np.uint8)], axis=2)
    top = dtype_range(image.dtype)
    q = p if image.dtype == np.uint8 else to_dtype(p.astype(np.float32) * np.float32(top / 255.0), image.dtype)
    return q[..., 0] if image.ndim == 2 else q
