"""Where the TTA predictor's images come from: :class:`ViewSource` decodes each image (or takes an
array), fuses the preprocessing with every view and warps once per view; :func:`iter_views` runs it
in worker processes (a torch ``DataLoader`` prefetching while the model runs) or in this one.
Unreadable images come back as errors, or with ``fallback="grey"`` as a mid-grey image of their size."""

from __future__ import annotations

import os
from typing import Any, cast

import numpy as np

from augkit.errors import InputError
from augkit.io import ImageReadError, image_size, read_image
from augkit.workers import init_worker, worker_context

__all__ = ["ViewSource", "iter_views", "item_name", "FALLBACK_GREY"]

FALLBACK_GREY = 128          # the grey level of the fallback image for unreadable files
_SIZE_SAMPLE = 64            # other images whose header sizes give the fallback size (median)


def item_name(item, i: int) -> str:
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"#{i}"


def _header_wh(item) -> tuple[int, int] | None:
    """(w, h) of an image file as :func:`augkit.io.image_size` reads it from the header (EXIF
    orientation applied, as the decoder does); None for an in-memory image or an unreadable header."""
    if not isinstance(item, (str, os.PathLike)):
        return None
    try:
        w, h = image_size(item)
    except (ImageReadError, OSError):
        return None
    return (int(w), int(h)) if w > 0 and h > 0 else None


# ---------------------------------------------------------------------------------- producer

class ViewSource:
    """The producer: item ``i`` -> image ``i`` decoded and warped by every (model, view) pipeline.

    A plain sequence (picklable, no torch), so it can run in the main process or in DataLoader
    workers. Item: ``{"index", "ok", "fallback", "error", "views": [uint8 (V, H, W, 3) per model],
    "records": [[record per view] per model]}``; ``views`` is None for an unreadable image
    without a fallback.
    """

    def __init__(self, items, fused, fallback: str | None = None, input_size=None, view_names=None):
        if fallback not in (None, "grey"):
            raise InputError(f"fallback must be None or 'grey', got {fallback!r}")
        self.items, self.fused, self.fallback = items, fused, fallback
        self.input_size = input_size
        self.view_names = list(view_names) if view_names else [f"view{v}" for v in range(len(fused[0]))]
        self._median: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def fallback_size(self, i: int) -> tuple[int, int]:
        """(h, w), the array shape, of the grey stand-in for unreadable item ``i`` (see the module doc)."""
        wh: tuple[int, ...] | None = _header_wh(self.items[i])
        if wh is None:
            if self._median is None:
                n = len(self.items)
                pick: np.ndarray | list[int] = (
                    np.unique(np.linspace(0, n - 1, min(n, _SIZE_SAMPLE)).astype(int)) if n else [])
                sizes = [s for s in (_header_wh(self.items[j]) for j in pick if j != i) if s is not None]
                if sizes:
                    self._median = tuple(int(v) for v in np.median(np.array(sizes), axis=0))
                else:  # input_size is (h, w)
                    self._median = tuple(self.input_size[::-1]) if self.input_size else (256, 256)
            wh = self._median
        return int(wh[1]), int(wh[0])

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        out: dict[str, Any] = {"index": i, "ok": True, "fallback": False, "error": None, "views": None,
                               "records": None}
        if isinstance(item, (str, os.PathLike)):
            try:
                image = read_image(item)
            except ImageReadError as e:
                out.update(ok=False, error=str(e))
                if self.fallback is None:
                    return out
                image = np.full(self.fallback_size(i) + (3,), FALLBACK_GREY, dtype=np.uint8)
                out["fallback"] = True
        else:
            image = item
        views, records = [], []
        for pipes in self.fused:
            res = [pipe(image) for pipe in pipes]
            for name, r in zip(self.view_names, res):
                if r.image.shape != res[0].image.shape:
                    raise InputError(f"view {name!r} gives a {r.image.shape} input, view {self.view_names[0]!r} "
                                     f"{res[0].image.shape}: views must keep the model-input size")
            views.append(np.stack([r.image for r in res]))
            records.append([r.record for r in res])
        out["views"], out["records"] = views, records
        return out


class _TensorViews:
    """``ViewSource`` for DataLoader workers: views as torch tensors (shared memory, no pickling copy)."""

    def __init__(self, source: ViewSource):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict:
        import torch
        item = self.source[i]
        if item["views"] is not None:
            item["views"] = [torch.from_numpy(v) for v in item["views"]]
        return item


def _keep_item(item):
    return item


def iter_views(source: ViewSource, workers: int = 0, prefetch: int = 4):
    """Items of ``source`` in order: in this process (``workers=0``, or without torch: e.g. an
    ONNX Runtime model) or from ``workers`` processes (torch ``DataLoader``, ``prefetch`` items
    queued per worker) while the caller runs the model."""
    from augkit.extras import missing_modules
    if workers <= 0 or len(source) == 0 or missing_modules(("torch",)):
        for i in range(len(source)):
            yield source[i]
        return
    from torch.utils.data import DataLoader, Dataset
    # DataLoader takes any map-style sequence (__getitem__ + __len__); its stub asks for a Dataset,
    # which _TensorViews does not subclass so that this module imports without torch.
    dataset = cast("Dataset[dict]", _TensorViews(source))
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=int(workers),
                        collate_fn=_keep_item, worker_init_fn=init_worker, prefetch_factor=prefetch,
                        persistent_workers=False, multiprocessing_context=worker_context())
    for item in loader:
        if item["views"] is not None:
            item["views"] = [v.numpy() for v in item["views"]]
        yield item
