"""ONNX export of a trained model with its TTA, and the ONNX Runtime model the TTA predictor runs.

:func:`export_onnx` writes two files: the ONNX graph (:mod:`augkit.models.onnx_export`: uint8
``(N, H, W, 3)`` model-input images in, normalisation inside, ``points`` ``(N, K, 2)`` and, for a
head with σ, ``sigma`` ``(N, K)`` out, both in input-frame pixels, batch axis dynamic) and beside
it a JSON description (:func:`describe`) that any runtime can follow with a few lines of numpy
(:mod:`augkit.tta.onnx_spec` is that reference, torch-free):

- ``input`` / ``outputs``: names, dtypes, layout, the normalisation already in the graph;
- ``preprocessing``: how an image of any size becomes the model input: ``mode`` (``crop``: scale
  the short side to the input size, keep the centre; ``letterbox``: fit the whole image and pad
  centred; ``custom``: another pipeline, given as augkit's ``pipeline`` only), the warp's
  interpolation, border, fill and pre-shrink, and ``examples`` (image sizes with the 2x3 matrix
  augkit computes for them, to check an implementation against);
- ``scheme``: K, the flip pairs and the permutation a mirror applies;
- ``tta``: each view as a 2x3 matrix (3x3 for a projective ``Perspective`` view) on the model-input frame, its flip count and the landmark
  permutation its inverse applies; the merge (method, trim, ``sigma_scale``) and the merge
  weights, one row of K per view normalised per landmark (the fitted ones when the spec has
  them); ``spec`` is the augkit spec itself, so :func:`load_onnx` rebuilds the exact ``TTASpec``.

A member's prediction goes back to the original image as the PyTorch path does it: the view and
the preprocessing are one warp ``M = V @ P`` of the original image; its points ``p`` map back by
``M^-1`` after ``p[perm]`` (divided by the last coordinate for a projective ``Perspective`` view);
its σ by ``σ[perm] * sigma_scale / sqrt(|det M|)`` (projective: by the local area of ``M^-1`` at
each point).

:class:`OnnxModel` is a model callable of :class:`~augkit.tta.predictor.TTAPredictor` (uint8
NHWC batch -> points, ``call_with_sigma``), so ``augkit predict --onnx`` runs the same views,
inverses, merge and outputs as the PyTorch path through ONNX Runtime. Importing this module
imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from augkit import geometry
from augkit.compose import Compose
from augkit.errors import InputError
from augkit.extras import missing_modules, require_extra
from augkit.files import atomic_write_bytes, atomic_write_text, read_json
from augkit.schemes import get_scheme

from . import onnx_spec
from .inputs import RunError
from .merge import ROBUST_C, ROBUST_FLOOR, ROBUST_ITERS, SIGMA_MIN
from .views import TTASpec, spec_from_dict, spec_to_dict

__all__ = ["EXPORT_FORMAT", "ExportSummary", "OnnxModel", "describe", "export_onnx", "json_path_for", "load_onnx"]

EXPORT_FORMAT = onnx_spec.FORMAT   # one name: the numpy reference reads what this writes
EXPORT_VERSION = 1
_EXAMPLE_SIZES = ((640, 480), (480, 640), (333, 517))   # (w, h) of the preprocessing examples



def json_path_for(onnx_path) -> str:
    """The description beside an ONNX file: ``model.onnx`` -> ``model.json``."""
    root, _ = os.path.splitext(os.fspath(onnx_path))
    return root + ".json"


# ------------------------------------------------------------------------------ the description

def _matrix(m: np.ndarray, where: str, projective: bool = False) -> list:
    """The 2x3 rows of an affine matrix; all three rows of a projective one where ``projective``
    allows it (a ``Perspective`` TTA view), else a clear refusal (the preprocessing)."""
    if not geometry.is_affine(m):
        if not projective:
            raise InputError(f"{where} is projective (a perspective step): the export describes affine "
                             "preprocessing only")
        return [[float(v) for v in row] for row in m]
    return [[float(v) for v in row] for row in m[:2]]


def _mode(pre: Compose) -> tuple[str, list | None]:
    """``(mode, [w, h] or None)`` of a preprocessing pipeline: crop, letterbox or custom."""
    steps = [s.to_dict() for s in pre.steps]
    types = [s["type"] for s in steps]
    if types == ["ScaleMinSide", "CenterCrop"] and steps[1]["height"] == steps[1]["width"] == steps[0]["size"]:
        return "crop", [int(steps[0]["size"])] * 2
    if types == ["LetterBox"]:
        return "letterbox", [int(steps[0]["width"]), int(steps[0]["height"])]
    return "custom", None


def _preprocessing(pre: Compose, input_size) -> dict:
    mode, size = _mode(pre)
    examples = []
    for wh in _EXAMPLE_SIZES:
        m, out, flips = pre.plan(wh)
        if tuple(out) != (input_size[1], input_size[0]) or flips:
            raise InputError(f"the preprocessing gives a {tuple(out)} (w, h) image for a {wh} one, the model takes "
                             f"{tuple(input_size[::-1])}: the export needs a pipeline that ends at the input size")
        examples.append({"image_size": list(wh), "matrix": _matrix(m, "the preprocessing")})
    return {"mode": mode, "size": size or [int(input_size[1]), int(input_size[0])],
            "warp": {"interpolation": pre.interpolation, "border_mode": pre.border_mode,
                     "fill": list(pre.fill) if isinstance(pre.fill, tuple) else pre.fill,
                     "preshrink": pre.preshrink},
            "pipeline": pre.to_dict(), "examples": examples}


def _tta(spec: TTASpec, scheme, input_size, n_points: int) -> dict:
    h, w = (int(v) for v in input_size)
    views = []
    for v in spec.views:
        m, out, flips = v.pipeline.plan((w, h))
        if tuple(out) != (w, h):
            raise InputError(f"TTA view {v.name!r} gives a {tuple(out)} (w, h) image, the model takes {(w, h)}")
        if flips % 2 and scheme is None:
            raise InputError(f"TTA view {v.name!r} flips, but the model has no scheme to swap left/right points")
        perm = scheme.perm if flips % 2 else np.arange(n_points)
        views.append({"name": v.name, "matrix": _matrix(m, f"TTA view {v.name!r}", projective=True), "flips": int(flips),
                      "perm": [int(i) for i in perm]})
    weights = spec.member_weights(1, n_points)
    kind = "views" if spec.weights is None else ("per_view" if spec.weights.ndim == 1 else "per_landmark")
    return {"name": spec.name, "merge": spec.merge, "trim": float(spec.trim), "sigma_scale": float(spec.sigma_scale),
            "views": views, "weights_kind": kind, "weights": weights.tolist(),
            "robust": {"iters": ROBUST_ITERS, "c": ROBUST_C, "floor": ROBUST_FLOOR}, "sigma_min": SIGMA_MIN,
            "spec": spec_to_dict(spec)}


def describe(model, spec: TTASpec, onnx_name: str = "model.onnx") -> dict:
    """The JSON description of an exported model (see the module doc).

    ``model`` is anything with ``preprocess`` (a deterministic ``Compose``), ``scheme``,
    ``input_size`` (h, w), ``n_points``, ``has_sigma`` and optionally ``input`` (mean, std) and
    ``info`` (the checkpoint's ``model_info``): a ``LandmarkModel`` or an :class:`OnnxModel`.
    """
    h, w = (int(v) for v in model.input_size)
    k = int(model.n_points)
    scheme = None if model.scheme is None else get_scheme(model.scheme)
    if scheme is not None and scheme.n_points != k:
        raise InputError(f"the scheme {scheme.name!r} has {scheme.n_points} points, the model predicts {k}")
    pre = model.preprocess if model.preprocess is not None else Compose([])
    inp = getattr(model, "input", None)
    info = dict(getattr(model, "info", None) or {})
    head = info.get("head") or {"name": "regression", "settings": {}}
    outputs = {"points": {"dtype": "float32", "shape": ["N", k, 2], "unit": "input-frame pixels"}}
    if model.has_sigma:
        outputs["sigma"] = {"dtype": "float32", "shape": ["N", k], "unit": "input-frame pixels"}
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "onnx": os.path.basename(onnx_name),
        "model": {"backbone": info.get("backbone"), "head": head.get("name"), "head_settings": head.get("settings", {}),
                  "n_points": k, "has_sigma": bool(model.has_sigma), "name": getattr(model, "name", None)},
        "input": {"name": "images", "dtype": "uint8", "layout": "NHWC", "channels": "RGB", "shape": ["N", h, w, 3],
                  "normalisation": {"in_graph": True, "mean": list(getattr(inp, "mean", ())),
                                    "std": list(getattr(inp, "std", ()))}},
        "outputs": outputs,
        "coordinates": "pixel centres: the top-left pixel's centre is (0, 0); x to the right, y down",
        "preprocessing": _preprocessing(pre, (h, w)),
        "scheme": {"name": None if scheme is None else scheme.name, "n_points": k,
                   "flip_pairs": [] if scheme is None else [list(p) for p in scheme.flip_pairs],
                   "perm": [int(i) for i in (np.arange(k) if scheme is None else scheme.perm)],
                   "definition": None if scheme is None else (scheme.name if scheme.builtin else scheme.to_dict())},
        "tta": _tta(spec, scheme, (h, w), k),
    }


# --------------------------------------------------------------------------------------- export

@dataclass
class ExportSummary:
    """What :func:`export_onnx` wrote: the ONNX file, the JSON beside it, the head, K, the TTA
    (name, views, merge) and ``max_deviation``: the largest difference (input-frame pixels) between
    ONNX Runtime and PyTorch on a random batch (None when onnxruntime is not installed)."""

    onnx: str
    json: str
    head: str
    n_points: int
    has_sigma: bool
    tta: str
    views: int
    merge: str
    max_deviation: float | None = None


def _check_graph(data: bytes, model, desc: dict, where: str) -> float:
    """Run the graph (described by ``desc``) in ONNX Runtime on a random batch of 3; the largest
    difference to PyTorch."""
    from augkit.models.onnx_export import ExportError
    h, w = model.input_size
    batch = np.random.default_rng(0).integers(0, 256, (3, h, w, 3), dtype=np.uint8)
    try:
        got = OnnxModel(data, desc, device="cpu").call_with_sigma(batch)
    except RunError:
        raise
    except Exception as e:  # noqa: BLE001 - onnxruntime's errors: one line naming the operator
        raise ExportError(f"{where}: ONNX Runtime cannot run the exported graph: {_ort_reason(e)}") from None
    want = model.call_with_sigma(batch)
    dev = float(np.max(np.abs(got[0] - want[0])))
    if want[1] is not None:
        dev = max(dev, float(np.max(np.abs(got[1] - want[1]))))
    return dev


def _ort_reason(e: Exception) -> str:
    import re
    text = str(e)
    m = re.search(r"implementation for (\w+)\((\d+)\) node", text) or re.search(r"[Oo]p type[: ]+'?(\w+)", text)
    if m:
        return f"no implementation of the operator {m.group(1)}"
    return text.strip().splitlines()[0][:200] if text.strip() else type(e).__name__


def export_onnx(checkpoint, out, *, tta="none", json_out=None, opset: int | None = None,
                check: bool = True) -> ExportSummary:
    """Export a checkpoint (or a run folder: best, else last) to ONNX with its JSON description.

    Args:
        checkpoint: ``best.pt`` / ``last.pt`` of ``augkit train`` (or a run folder).
        out: the ONNX file to write.
        tta: preset name, spec file or ``TTASpec`` described in the JSON (fitted weights for one model).
        json_out: the JSON file; default: ``out`` with ``.json`` (:func:`json_path_for`).
        opset: ONNX opset (default: the exporter's).
        check: run the graph once in ONNX Runtime (when installed) and record the largest
            difference to PyTorch in :attr:`ExportSummary.max_deviation`.

    Both files are written through temporary files renamed onto them (a failure leaves earlier
    ones as they were). Raises :class:`~augkit.models.onnx_export.ExportError` for a model ONNX
    cannot express (one line naming the operator), :class:`RunError` for bad input.
    """
    from .inputs import as_spec, check_merge_weights, check_writable_out
    from .runners import load_models
    require_extra("onnx", "augkit export", ("onnx", "onnxscript"))
    spec = as_spec(tta)
    json_out = json_path_for(out) if json_out is None else os.fspath(json_out)
    if os.path.abspath(json_out) == os.path.abspath(os.fspath(out)):
        raise RunError(f"--json {json_out}: the same file as --out")
    for path in (out, json_out):
        check_writable_out(path)
    if spec.weights is not None and spec.weights.shape[0] != len(spec.views):
        raise RunError(f"{spec.source or spec.name}: weights: fitted for {spec.weights.shape[0] // len(spec.views)} "
                       "models; an export holds one model (fit its own: augkit tta fit --run DIR)")
    (model,) = load_models([checkpoint], device="cpu")
    check_merge_weights(spec, 1, model.n_points)
    if spec.needs_sigma and not model.has_sigma:
        raise RunError(f"{spec.source or spec.name}: merge {spec.merge!r} needs σ, but the model's "
                       f"{model.head.name} head reports none")
    desc = describe(model, spec, os.fspath(out))   # bad views / preprocessing fail before the export
    from augkit.models.onnx_export import ExportGraph, onnx_bytes
    data = onnx_bytes(ExportGraph.of(model), model.input_size, opset, where=os.fspath(checkpoint))
    deviation = None
    if check and not missing_modules(("onnxruntime",)):
        deviation = _check_graph(data, model, desc, os.fspath(checkpoint))
    desc["export_check"] = None if deviation is None else {"max_deviation_px": deviation, "batch": 3}
    atomic_write_bytes(out, data)
    atomic_write_text(json_out, json.dumps(desc, indent=1) + "\n")
    return ExportSummary(os.fspath(out), json_out, model.head.name, model.n_points, model.has_sigma, spec.name,
                         len(spec.views), spec.merge, deviation)


# ------------------------------------------------------------------------------ ONNX Runtime

def _providers(device: str) -> list:
    import onnxruntime as ort
    available = ort.get_available_providers()
    if device in ("auto", "cuda") or device.startswith("cuda:"):
        if "CUDAExecutionProvider" in available:
            if device.startswith("cuda:"):
                return [("CUDAExecutionProvider", {"device_id": int(device.split(":", 1)[1])}), "CPUExecutionProvider"]
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if device != "auto":
            raise RunError(f"--device {device}: this onnxruntime has no CUDA provider (available: "
                           f"{', '.join(available)}); install onnxruntime-gpu or use --device cpu")
    elif device != "cpu":
        raise RunError(f"--device {device}: ONNX Runtime runs on cpu, cuda or cuda:N")
    return ["CPUExecutionProvider"]


class OnnxModel:
    """An exported model in ONNX Runtime, as a TTA model callable.

    Args:
        onnx: the ONNX file (or its bytes).
        description: the export's JSON description (a dict; :func:`load_onnx` reads it).
        device: ``auto`` (CUDA when onnxruntime has it, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        threads: ONNX Runtime's intra-op threads (None: its default, one per physical core).

    Attributes: ``preprocess`` (the model-input ``Compose``), ``scheme``, ``input_size`` (h, w),
    ``n_points``, ``has_sigma``, ``name``, ``description``; ``providers`` the ONNX Runtime
    execution providers in use.
    """

    device = None   # the predictor stacks plain numpy batches (no page-locked torch buffer)

    def __init__(self, onnx, description: dict, device: str = "auto", threads: int | None = None):
        require_extra("onnx", "an ONNX model", ("onnxruntime",))
        import onnxruntime as ort
        where = onnx if isinstance(onnx, (str, os.PathLike)) else "the ONNX model"
        d = description
        self.description = d
        try:
            m = d["model"]
            self.n_points, self.has_sigma = int(m["n_points"]), bool(m["has_sigma"])
            self.name = str(m.get("name") or (os.path.basename(os.fspath(where)) if where != "the ONNX model"
                                              else "model"))
            self.input_size = (int(d["input"]["shape"][1]), int(d["input"]["shape"][2]))
            definition = d["scheme"]["definition"]
            self.scheme = None if definition is None else get_scheme(definition)
            self.preprocess = Compose.from_dict(d["preprocessing"]["pipeline"])
        except (KeyError, TypeError, IndexError) as e:
            raise RunError(f"{where}: its description lacks or mistypes {e} (write it with augkit export)") from None
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        path_or_bytes = os.fspath(onnx) if isinstance(onnx, (str, os.PathLike)) else onnx
        self.session = ort.InferenceSession(path_or_bytes, opts, providers=_providers(device))
        self.providers = self.session.get_providers()
        names = [o.name for o in self.session.get_outputs()]
        want = ["points", "sigma"] if self.has_sigma else ["points"]
        if names != want:
            raise RunError(f"{where}: the graph's outputs are {names}, its description says {want}")

    def call_with_sigma(self, batch) -> tuple:
        """uint8 (N, H, W, 3) model-input images -> (points (N, K, 2), σ (N, K) or None), float32
        input-frame pixels."""
        x = np.ascontiguousarray(batch, dtype=np.uint8)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != (*self.input_size, 3):
            raise InputError(f"images must be uint8 (N, {self.input_size[0]}, {self.input_size[1]}, 3), "
                             f"got shape {tuple(x.shape)}")
        out = self.session.run(None, {"images": x})
        return out[0], (out[1] if self.has_sigma else None)

    def __call__(self, batch) -> np.ndarray:
        """uint8 (N, H, W, 3) model-input images -> (N, K, 2) float32 input-frame pixels."""
        return self.call_with_sigma(batch)[0]


def load_onnx(path, json_path=None, device: str = "auto") -> tuple[OnnxModel, TTASpec]:
    """An exported model and the TTA spec of its description.

    ``json_path``: default beside ``path`` (:func:`json_path_for`). Bad files raise :class:`RunError`.
    """
    path = os.fspath(path)
    json_path = json_path_for(path) if json_path is None else os.fspath(json_path)
    if not os.path.isfile(path):
        raise RunError(f"--onnx {path}: no such file")
    if not os.path.isfile(json_path):
        raise RunError(f"{json_path}: no such file: augkit export writes it beside the ONNX file (or give --onnx-json)")
    try:
        d = read_json(json_path)
    except (ValueError, OSError) as e:
        raise RunError(f"{json_path}: {e}") from None
    if not isinstance(d, dict) or d.get("format") != EXPORT_FORMAT:
        raise RunError(f"{json_path}: not the description of an augkit export (format {EXPORT_FORMAT!r})")
    if d.get("version") != EXPORT_VERSION:
        raise RunError(f"{json_path}: description version {d.get('version')!r}; this augkit reads {EXPORT_VERSION}")
    model = OnnxModel(path, d, device)
    model.name = os.path.basename(path)
    tta = d.get("tta")
    if not isinstance(tta, dict) or not isinstance(tta.get("spec"), dict):
        raise RunError(f"{json_path}: the description has no field 'tta.spec' (the TTA that augkit export wrote); "
                       "export again, or pass --tta to predict with another")
    return model, spec_from_dict(tta["spec"], f"{json_path}: tta.spec")
