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

Importing this package does not import torch.
"""

from .fit import FitAccumulator, FitResult, fit_weights, simplex_qp
from .merge import merge, spread, weighted_mean
from .outputs import round_half_up, submission_text, write_points, write_submission
from .predictor import MemberPredictions, TorchCallable, TTAPredictor, TTAResult, as_points, predict
from .views import (PRESETS, SpecError, TTASpec, View, get_spec, load_spec, preset_views, save_spec,
                    spec_from_dict, spec_to_dict, with_weights)

__all__ = [
    "View", "TTASpec", "SpecError", "PRESETS", "preset_views", "get_spec", "load_spec", "save_spec",
    "spec_from_dict", "spec_to_dict", "with_weights",
    "TTAPredictor", "TTAResult", "MemberPredictions", "TorchCallable", "predict", "as_points",
    "merge", "weighted_mean", "spread", "fit_weights", "FitAccumulator", "FitResult", "simplex_qp",
    "write_submission", "submission_text", "write_points", "round_half_up",
]
