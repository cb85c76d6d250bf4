"""Argument checks shared by every step: clear errors that name the field and what was expected."""

from __future__ import annotations

import numbers

import numpy as np

from augkit.errors import InputError


def check_p(p, owner: str) -> float:
    """A probability in [0, 1]."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise InputError(f"{owner}: p must be a probability in [0, 1], got {p!r}")
    return float(p)


def check_size(value, name: str, owner: str) -> int:
    """A positive whole number of pixels."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) <= 0:
        raise InputError(f"{owner}: {name} must be a positive whole number of pixels, got {value!r}")
    return int(value)


class Range:
    """A magnitude: a scalar (fixed) or a ``(low, high)`` pair (drawn uniformly)."""

    __slots__ = ("lo", "hi", "fixed", "minimum", "maximum")

    def __init__(self, value, name: str, owner: str, minimum=None, maximum=None):
        def bad(why: str) -> InputError:
            return InputError(f"{owner}: {name} {why}, got {value!r}")

        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            lo = hi = float(value)
        elif isinstance(value, (tuple, list, np.ndarray)) and len(value) == 2 and all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
            lo, hi = float(value[0]), float(value[1])
            if lo > hi:
                raise bad("must be a (low, high) pair with low <= high")
        else:
            raise bad("must be a number (fixed) or a (low, high) pair (sampled)")
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise bad("must be finite")
        if minimum is not None and lo < minimum:
            raise bad(f"must be >= {minimum}")
        if maximum is not None and hi > maximum:
            raise bad(f"must be <= {maximum}")
        self.lo, self.hi, self.fixed = lo, hi, lo == hi
        self.minimum, self.maximum = minimum, maximum

    def admits(self, value) -> bool:
        """True when ``value`` is a finite number within the step's limits (a recorded value)."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(float(value)):
            return False
        return ((self.minimum is None or float(value) >= self.minimum)
                and (self.maximum is None or float(value) <= self.maximum))

    def limits(self) -> str:
        """The limits in words, for messages."""
        parts = ([f">= {self.minimum}"] if self.minimum is not None else []) + \
            ([f"<= {self.maximum}"] if self.maximum is not None else [])
        return "a finite number " + " and ".join(parts) if parts else "a finite number"

    def draw(self, rng) -> float:
        """The fixed value, or a uniform draw from ``rng``."""
        if self.fixed:
            return self.lo
        return self.lo + (self.hi - self.lo) * rng.random()

    def __repr__(self) -> str:
        return repr(self.lo) if self.fixed else f"({self.lo!r}, {self.hi!r})"


def check_image(image) -> np.ndarray:
    """HxW or HxWxC (C in 1, 3, 4) array of uint8 (0-255), uint16 (0-65535) or float32 (0-1)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array (HxW or HxWxC), got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise InputError(f"image must have shape HxW or HxWxC with C in (1, 3, 4), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"image is empty: shape {image.shape}")
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        raise TypeError(f"image dtype must be uint8 (0-255), uint16 (0-65535) or float32 (0-1), got {image.dtype}: "
                        "convert it first, e.g. image.astype(np.float32) / 255 for 0-255 values")
    return image


def check_points(points, n_expected: int | None, scheme_name: str | None) -> np.ndarray:
    """(K, 2) float points; K must match the scheme when there is one."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise InputError(f"points must have shape (K, 2) as (x, y) rows, got shape {p.shape}")
    if n_expected is not None and p.shape[0] != n_expected:
        raise InputError(f"points have {p.shape[0]} rows but the pipeline's scheme "
                         f"{scheme_name!r} has {n_expected} landmarks")
    return p
