"""Landmark error metrics in original pixels (numpy only).

Shape: ``pred`` and ``true`` are (N, K, 2); NaN rows in ``true`` are left out.

The conventions of the public benchmarks (:func:`benchmark`): the NME normalised by the
inter-ocular distance (the scheme's ``norm``: outer eye corners), by the inter-pupil distance
(the scheme's ``pupils``) and by the face box size (``sqrt(w * h)`` of the box, or the label
file's own ``box_size``: AFLW); the failure rate at 0.10 and the AUC of the cumulative error
distribution up to 0.10 (:func:`auc`, WFLW); and the same per attribute subset (WFLW's pose,
expression, illumination, make-up, occlusion, blur: the faces whose flag is 1).
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .schemes import Scheme, pupil_centres

__all__ = ["NORM_KINDS", "auc", "benchmark", "box_size", "ced", "failure_rate", "mse", "nme", "normaliser",
           "per_image_nme", "summary"]

#: what an NME can be divided by: ``norm`` (the scheme's pair, else the points' bounding-box
#: diagonal), ``pupils`` (the scheme's pupils), ``box`` (the face box size), ``diagonal``
NORM_KINDS = ("norm", "pupils", "box", "diagonal")


def mse(pred, true) -> float:
    """The competition metric: mean over images and points of the squared error in x and y
    averaged (``mean((pred - true) ** 2)``)."""
    d = np.asarray(pred, np.float64) - np.asarray(true, np.float64)
    return float(np.nanmean(d ** 2))


def box_size(boxes=None, sizes=None) -> np.ndarray:
    """The face size of each image: ``sizes`` where given (a label file's own ``box_size``), else
    ``sqrt(width * height)`` of ``boxes`` (``x_min, y_min, x_max, y_max``). Shape: (N,)."""
    if sizes is not None:
        return np.asarray(sizes, np.float64).reshape(-1)
    if boxes is None:
        raise InputError("the box-size NME needs the face boxes (or box sizes) of the labels; this dataset has none")
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.sqrt(np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None))


def normaliser(true, scheme: Scheme | None, kind: str = "norm", boxes=None, sizes=None) -> np.ndarray:
    """Per image: what the NME divides by. Shape: (N,).

    ``kind`` (:data:`NORM_KINDS`): ``norm``, the distance between the scheme's ``norm`` points
    (inter-ocular for ibug68, wflw98, cofw29), or the diagonal of the points' bounding box when
    the scheme names none; ``pupils``, the distance between the scheme's ``pupils``; ``box``,
    :func:`box_size` of ``boxes`` / ``sizes``; ``diagonal``, the points' bounding-box diagonal.
    """
    t = np.asarray(true, np.float64)
    if kind not in NORM_KINDS:
        raise InputError(f"unknown NME normaliser {kind!r}; expected one of {', '.join(NORM_KINDS)}")
    if kind == "box":
        out = box_size(boxes, sizes)
        if out.shape != (len(t),):
            raise InputError(f"{len(out)} box sizes for {len(t)} images")
        return out
    if kind == "pupils":
        if scheme is None or scheme.pupils is None:
            raise InputError(f"scheme {getattr(scheme, 'name', None)!r} names no pupils: no inter-pupil NME")
        a, b = pupil_centres(t, scheme.pupils)
        return np.linalg.norm(a - b, axis=-1)
    if kind == "norm" and scheme is not None and scheme.norm is not None:
        a, b = scheme.norm
        return np.linalg.norm(t[:, a] - t[:, b], axis=-1)
    return np.linalg.norm(np.nanmax(t, axis=1) - np.nanmin(t, axis=1), axis=-1)


def per_image_nme(pred, true, scheme: Scheme | None, kind: str = "norm", boxes=None, sizes=None) -> np.ndarray:
    """Mean point-to-point error per image divided by the normaliser (:func:`normaliser`'s
    ``kind``, ``boxes``, ``sizes``). Shape: (N,)."""
    p, t = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    err = np.nanmean(np.linalg.norm(p - t, axis=-1), axis=1)
    return err / np.maximum(normaliser(t, scheme, kind, boxes, sizes), 1e-9)


def nme(pred, true, scheme: Scheme | None) -> float:
    return float(np.mean(per_image_nme(pred, true, scheme)))


def failure_rate(pred, true, scheme: Scheme | None, threshold: float = 0.08) -> float:
    """Fraction of images whose NME exceeds ``threshold``."""
    return float(np.mean(per_image_nme(pred, true, scheme) > threshold))


def summary(pred, true, scheme: Scheme | None, threshold: float = 0.08) -> dict:
    """``{"mse", "nme", "fr"}`` for a set of predictions."""
    e = per_image_nme(pred, true, scheme)
    return {"mse": mse(pred, true), "nme": float(e.mean()), "fr": float((e > threshold).mean())}


def auc(errors, threshold: float = 0.10) -> float:
    """Area under the cumulative error distribution (the fraction of images with NME <= x) from 0
    to ``threshold``, divided by ``threshold``: 1 when every error is 0, 0 when none is below the
    threshold. Computed exactly (the CED is a step function: the area is the mean of
    ``max(0, threshold - e)``), where the usual scripts integrate it on a grid of 0.0001 with
    Simpson's rule (the two differ by about the grid step). Non-finite errors count as failures."""
    if threshold <= 0:
        raise InputError(f"the AUC threshold must be positive, got {threshold}")
    e = np.asarray(errors, np.float64).reshape(-1)
    if not e.size:
        return float("nan")
    gain = np.where(np.isfinite(e), np.clip(1.0 - e / threshold, 0.0, 1.0), 0.0)
    return float(gain.mean())


def ced(errors, threshold: float = 0.10, steps: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """The cumulative error distribution: ``(x, fraction of images with NME <= x)`` at ``steps + 1``
    points from 0 to ``threshold`` (for a plot; :func:`auc` integrates it exactly)."""
    e = np.sort(np.asarray(errors, np.float64).reshape(-1))
    x = np.linspace(0.0, threshold, steps + 1)
    return x, np.searchsorted(e, x, side="right") / max(len(e), 1)


def benchmark(pred, true, scheme: Scheme | None, boxes=None, sizes=None, attributes=None,
              threshold: float = 0.10) -> dict:
    """The metrics the public face benchmarks report, on a set of predictions.

    Returns a dict: ``nme_norm`` (the scheme's ``norm``: inter-ocular), ``nme_pupils`` (where the
    scheme names pupils), ``nme_box`` (where boxes or sizes are given), ``primary`` (the name of
    the benchmark's own NME: ``nme_box`` for a ``box_norm`` scheme with boxes, else ``nme_norm``),
    ``fr`` and ``auc`` of the primary NME at ``threshold`` (failure: NME > threshold), ``n`` and,
    with ``attributes`` (mapping name -> (N,) flags), ``subsets``: per attribute the same
    ``nme`` (primary), ``fr``, ``auc`` and ``n`` over the images whose flag is non-zero.
    """
    per = {"nme_norm": per_image_nme(pred, true, scheme)}
    if scheme is not None and scheme.pupils is not None:
        per["nme_pupils"] = per_image_nme(pred, true, scheme, "pupils")
    if boxes is not None or sizes is not None:
        per["nme_box"] = per_image_nme(pred, true, scheme, "box", boxes, sizes)
    primary = "nme_box" if "nme_box" in per and scheme is not None and scheme.box_norm else "nme_norm"
    e = per[primary]
    out: dict = {key: float(np.mean(v)) for key, v in per.items()}
    out.update(primary=primary, fr=float(np.mean(~(e <= threshold))), auc=auc(e, threshold), n=int(len(e)),
               threshold=float(threshold))
    if attributes:
        subsets = {}
        for name, flags in attributes.items():
            sel = np.asarray(flags).reshape(-1) != 0
            if len(sel) != len(e):
                raise InputError(f"attribute {name!r} has {len(sel)} flags for {len(e)} images")
            es = e[sel]
            subsets[name] = {"nme": float(es.mean()) if es.size else float("nan"),
                             "fr": float(np.mean(~(es <= threshold))) if es.size else float("nan"),
                             "auc": auc(es, threshold), "n": int(sel.sum())}
        out["subsets"] = subsets
    return out
