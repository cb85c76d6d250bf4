"""augkit.tta: test-time augmentation for landmark regression, with exact inverses.

A view is a fixed augkit pipeline on the model-input image plus a weight; the predictor stacks
every view of every image into one model call per chunk, maps each prediction back through the
view's exact inverse (flip pairs swapped back by the scheme) and the preprocessing inverse into
original pixels, and merges them (weighted mean, median, trimmed mean) with a per-landmark spread.

Works with any model: a callable taking a uint8 NHWC numpy batch of model-input images and
returning (N, K, 2) points in that frame (``augkit.train`` checkpoints are such callables)::

    from augkit.tta import TTAPredictor
    res = TTAPredictor(model, "flip", preprocess=pre, scheme="ibug68").predict(images)
    res.points, res.spread          # (N, K, 2), (N, K) in original pixels

Whole folders, streamed (what ``augkit predict``, ``augkit evaluate`` and ``augkit tta fit`` call)::

    from augkit.tta import Compute, predict_to_file, evaluate_tta, fit_tta
    summary = predict_to_file(["run/best.pt"], "test/", "sub.csv", tta="flip", compute=Compute(progress=True))
    report = evaluate_tta(["run/best.pt"], "val/", tta=["flip", "full"])   # report.results, .baseline
    fitted = fit_tta(["run/best.pt"], "val/", tta="full", out="tta.yaml")   # fitted.spec, .result

ONNX export with the TTA in a JSON beside it, and the export run through ONNX Runtime (``[onnx]``)::

    from augkit.tta import export_onnx, load_onnx
    export_onnx("run/best.pt", "model.onnx", tta="run/tta.yaml")    # model.onnx + model.json
    model, spec = load_onnx("model.onnx")                           # a model callable and its TTASpec
    res = TTAPredictor(model, spec).predict(images)

Importing this package does not import torch (the runners are loaded on first use).
"""

from .fit import FitAccumulator, FitResult, fit_weights, simplex_qp
from .merge import merge, spread, weighted_mean
from .outputs import round_half_up, submission_text, write_points, write_submission
from .predictor import (
    MemberPredictions,
    TorchCallable,
    TTAPredictor,
    TTAResult,
    as_points,
    predict,
)
from .views import (
    PRESETS,
    SpecError,
    TTASpec,
    View,
    get_spec,
    load_spec,
    preset_views,
    save_spec,
    spec_from_dict,
    spec_to_dict,
    with_weights,
)

__all__ = [
    "PRESETS",
    "EvalReport",
    "ExportSummary",
    "FitAccumulator",
    "Compute",
    "FitReport",
    "FitResult",
    "MemberPredictions",
    "OnnxModel",
    "PredictSummary",
    "Progress",
    "RunError",
    "SpecError",
    "TTAPredictor",
    "TTAResult",
    "TTASpec",
    "TorchCallable",
    "View",
    "as_points",
    "evaluate_tta",
    "export_onnx",
    "fit_tta",
    "fit_weights",
    "get_spec",
    "load_models",
    "load_onnx",
    "load_spec",
    "merge",
    "predict",
    "predict_to_file",
    "preset_views",
    "round_half_up",
    "save_spec",
    "simplex_qp",
    "spec_from_dict",
    "spec_to_dict",
    "spread",
    "submission_text",
    "weighted_mean",
    "with_weights",
    "write_points",
    "write_submission",
]

_LAZY = {"Compute": "runners", "predict_to_file": "runners", "PredictSummary": "runners", "fit_tta": "runners", "FitReport": "runners",
         "load_models": "runners", "RunError": "inputs", "evaluate_tta": "evaluate",
         "EvalReport": "evaluate", "Progress": "progress", "export_onnx": "export", "ExportSummary": "export",
         "OnnxModel": "export", "load_onnx": "export"}


def __getattr__(name):
    """The streaming runners, imported on first use (``import augkit.tta`` stays light)."""
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
