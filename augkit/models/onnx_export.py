"""A landmark model as one ONNX graph: uint8 model-input images in, input-frame points (and σ) out.

:class:`ExportGraph` wraps a :class:`~augkit.models.checkpoint.LandmarkModel`'s network with what
:class:`~augkit.models.checkpoint.LandmarkModel` does around it, so that the graph alone is the
model's ``call_with_sigma``:

- input ``images``: uint8 ``(N, H, W, 3)``, RGB, NHWC (the layout the TTA predictor hands its
  models), ``N`` dynamic, ``H x W`` the checkpoint's input size;
- the normalisation ``(x - 255 * mean) / (255 * std)`` (:func:`~augkit.models.model_input.normalise`);
- the network and the head's decode (:meth:`~augkit.models.heads.LandmarkHead.decode`);
- outputs ``points`` float32 ``(N, K, 2)`` in input-frame pixels (pixel centres: the top-left
  pixel's centre is ``(0, 0)``) and, for a head with σ (rle, integral, simcc), ``sigma`` float32
  ``(N, K)`` in input-frame pixels.

:func:`onnx_bytes` runs torch's ONNX exporter (``torch.onnx.export(dynamo=True)``, which needs
``onnxscript``) and returns the serialised model; an operator ONNX cannot express becomes one
:class:`ExportError` line that names it (:func:`unsupported_operator` reads it from the exporter's
error chain).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings

import torch
from torch import nn

from augkit.errors import AugkitError

from .model_input import normalise

__all__ = ["ONNX_INPUT", "ONNX_POINTS", "ONNX_SIGMA", "ExportError", "ExportGraph", "onnx_bytes",
           "unsupported_operator"]

ONNX_INPUT = "images"     # uint8 (N, H, W, 3)
ONNX_POINTS = "points"    # float32 (N, K, 2), input-frame pixels
ONNX_SIGMA = "sigma"      # float32 (N, K), input-frame pixels (heads with σ)

# the exporter's loggers that print whole graphs as warnings (e.g. a data-dependent guard): quiet
# while exporting, what matters of them is in the error when the export fails
_NOISY_LOGGERS = ("torch.fx.experimental.symbolic_shapes", "torch._dynamo", "torch.export", "torch.onnx")


@contextlib.contextmanager
def _quiet():
    """The exporter's own prints and log lines (whole graphs, on stdout and stderr) go nowhere:
    the file descriptors 1 and 2 point at a temporary file while it runs, the loggers are raised
    to errors and Python warnings are ignored."""
    levels = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in _NOISY_LOGGERS:
                logging.getLogger(name).setLevel(logging.ERROR)
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


class ExportError(AugkitError, RuntimeError):
    """A model that cannot become an ONNX graph (an operator ONNX cannot express, a construct the
    exporter cannot trace); the message names the operator where the exporter does."""


class ExportGraph(nn.Module):
    """uint8 NHWC images -> (points, σ) of a landmark network and its head, as one module.

    Args:
        net: the landmark network (its raw ``(N, D)`` output).
        head: its :class:`~augkit.models.heads.LandmarkHead` (``decode``, ``has_sigma``).
        mean, std: per-channel statistics of [0, 1] images (the model input's).
    """

    def __init__(self, net: nn.Module, head, mean, std):
        super().__init__()
        self.net, self.head = net, head
        self.with_sigma = bool(head.has_sigma)
        self.mean_px: torch.Tensor
        self.std_px: torch.Tensor
        self.register_buffer("mean_px", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.register_buffer("std_px", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255)

    @classmethod
    def of(cls, model) -> ExportGraph:
        """The graph of a :class:`~augkit.models.checkpoint.LandmarkModel` (on the CPU, float32, eval)."""
        return cls(model.model.float().cpu().eval(), model.head, model.input.mean, model.input.std).eval()

    def forward(self, images: torch.Tensor):
        """Shape: (N, H, W, 3) uint8 -> points (N, K, 2) float32 [, σ (N, K) float32]."""
        out = self.net(normalise(images, self.mean_px, self.std_px)).float()
        points, sigma = self.head.decode(out)
        if self.with_sigma:
            return points.float(), sigma.float()
        return points.float()

    @property
    def output_names(self) -> list:
        return [ONNX_POINTS, ONNX_SIGMA] if self.with_sigma else [ONNX_POINTS]


def unsupported_operator(error: BaseException) -> str | None:
    """The operator an export failure names (``aten.kthvalue``, ``aten._linalg_svd``, ...), read
    from the exception and its causes; None when none is named."""
    patterns = (r"op='([\w.]+)'",                                   # dynamo: No ONNX function found for <OpOverload(op=...
                r"target=torch\.ops\.([\w.]+?)(?:\.default)?\]",     # dynamo: Error when translating node ...
                r"operator '([\w:.]+)'")                            # TorchScript: Exporting the operator 'aten::x'
    seen: set = set()
    e: BaseException | None = error
    found = None
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e)
        for pat in patterns:
            m = re.search(pat, text)
            if m:
                found = m.group(1)   # the innermost cause names it most precisely: keep looking
                break
        e = e.__cause__ or e.__context__
    return found


def _first_line(error: BaseException) -> str:
    """The first informative line of an error (the exporter's messages open with advice)."""
    for line in str(error).splitlines():
        line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
        if line and not line.startswith(("Failed to", "-", "#")):
            return line[:200]
    return type(error).__name__


def onnx_bytes(graph: ExportGraph, input_size, opset: int | None = None, where: str = "model") -> bytes:
    """The serialised ONNX model of ``graph`` for ``input_size`` (h, w) images, batch axis dynamic.

    Raises:
        ExportError: the exporter cannot express the model; names the operator where it can.
    """
    version = tuple(int(x) for x in re.findall(r"\d+", torch.__version__)[:2])
    if version < (2, 5):
        raise ExportError(f"{where}: augkit export needs torch >= 2.5 (torch.onnx.export(dynamo=True) with "
                          f"dynamic shapes), this is torch {torch.__version__}")
    h, w = (int(v) for v in input_size)
    example = torch.zeros((2, h, w, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    try:
        with _quiet():
            program = torch.onnx.export(graph, (example,), None, input_names=[ONNX_INPUT],
                                        output_names=graph.output_names, dynamic_shapes=({0: batch},),
                                        dynamo=True, verbose=False, external_data=False,
                                        opset_version=None if opset is None else int(opset))
    except ImportError as e:
        raise ExportError(f"{where}: torch's ONNX exporter needs onnx and onnxscript: pip install 'augkit[onnx]' "
                          f"({e})") from None
    except Exception as e:  # noqa: BLE001 - any exporter failure: one line naming the operator
        op = unsupported_operator(e)
        if op is not None:
            raise ExportError(f"{where}: ONNX cannot express the operator {op} (used by the model's backbone or "
                              f"head); export a model without it") from None
        raise ExportError(f"{where}: the ONNX exporter failed: {_first_line(e)}") from None
    if program is None:   # torch returns the program when no file is given
        raise ExportError(f"{where}: the ONNX exporter returned no program")
    return program.model_proto.SerializeToString()
