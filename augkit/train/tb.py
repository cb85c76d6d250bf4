"""TensorBoard logging of a training run (``augkit train --tensorboard``, the ``[tb]`` extra),
through ``torch.utils.tensorboard.SummaryWriter`` writing event files into the run folder:

- per step: ``train/loss`` (this process's batch loss) and ``train/lr``;
- per epoch: ``val/mse``, ``val/nme``, ``val/fr``, ``val/loss`` beside the mean-shape baseline's
  ``baseline/mse``, ``baseline/nme``, ``baseline/fr`` (a custom layout draws each pair on one chart),
  and ``train/epoch_loss``;
- per epoch: ``val/worst``, the worst validation images with label (green) and prediction (red):
  the picture ``augkit evaluate`` draws as worst.png, saved as ``worst.png`` in the run folder too;
- once at the start: ``train/augmented``, a grid of augmented training samples with their points.
"""

from __future__ import annotations

import os

import numpy as np

from .hooks import Hook

__all__ = ["TBLogger", "TensorBoard", "N_WORST", "N_SAMPLES"]

N_WORST = 8       # validation images in the per-epoch grid
N_SAMPLES = 16    # augmented training samples in the grid at the start


class TBLogger:
    """One ``SummaryWriter`` on the run folder. ``purge_step``: on --resume, the global step the
    run continues from (events written after it by the interrupted session are dropped)."""

    def __init__(self, run_dir: str, purge_step: int | None = None):
        from augkit.extras import require_extra
        require_extra("tb", "augkit train --tensorboard")
        from torch.utils.tensorboard import SummaryWriter
        self.run_dir = run_dir
        self.writer = SummaryWriter(log_dir=run_dir, purge_step=purge_step or None)
        self.writer.add_custom_scalars({"validation against the mean shape": {
            name.upper(): ["Multiline", [f"val/{name}", f"baseline/{name}"]] for name in ("mse", "nme", "fr")},
            "loss": {"train and validation": ["Multiline", ["train/epoch_loss", "val/loss"]]}})

    def step(self, global_step: int, loss: float, lr: float) -> None:
        self.writer.add_scalar("train/loss", loss, global_step)
        self.writer.add_scalar("train/lr", lr, global_step)

    def epoch(self, row: dict, global_step: int) -> None:
        """The epoch's row (``_end_epoch``'s), at the step the epoch ended."""
        self.writer.add_scalar("train/epoch_loss", row["train_loss"], global_step)
        for key, tag in (("val_loss", "val/loss"), ("mse", "val/mse"), ("nme", "val/nme"), ("fr", "val/fr"),
                         ("base_mse", "baseline/mse"), ("base_nme", "baseline/nme"), ("base_fr", "baseline/fr")):
            if row.get(key) is not None:
                self.writer.add_scalar(tag, row[key], global_step)
        self.writer.flush()

    def worst(self, source, pred: np.ndarray, scheme, global_step: int, epoch: int, n: int = N_WORST) -> None:
        """``worst.png`` of this epoch's validation predictions (original pixels), also as an image."""
        from augkit import metrics
        from augkit.show import worst_png
        from .data import FileSource
        truth = np.asarray(source.points, dtype=np.float64)
        ok = np.flatnonzero(np.isfinite(pred).all(axis=(1, 2)) & np.isfinite(truth).all(axis=(1, 2)))
        if not len(ok):
            return
        pick = ok[np.argsort(-metrics.per_image_nme(pred[ok], truth[ok], scheme))[:n]]
        shown = [str(source.files[i]) if isinstance(source, FileSource) else source.image(int(i)) for i in pick]
        path = os.path.join(self.run_dir, "worst.png")
        worst_png(path, shown, truth[pick], pred[pick], np.zeros(pred[pick].shape[:2]), scheme, n,
                  f"epoch {epoch}: worst {len(pick)} validation images (green truth, red prediction)")
        self.writer.add_image("val/worst", _read_rgb(path), global_step, dataformats="HWC")
        self.writer.flush()

    def samples(self, dataset, order, scheme, n: int = N_SAMPLES) -> None:
        """A grid of the first ``n`` augmented training samples of epoch 1, their points drawn."""
        import torch
        import torchvision
        from augkit.show import draw_points
        drawn = []
        for i in list(order)[:n]:
            item = dataset[(0, int(i))]
            img = item["image"].numpy()
            h, w = img.shape[:2]
            pts = item["target"].numpy() * np.array([w, h]) - 0.5
            drawn.append(torch.from_numpy(draw_points(img, pts, scheme, item["mask"].numpy(), radius=1)))
        if drawn:
            grid = torchvision.utils.make_grid(torch.stack(drawn).permute(0, 3, 1, 2), nrow=4, padding=2)
            self.writer.add_image("train/augmented", grid, 0, dataformats="CHW")
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _read_rgb(path: str) -> np.ndarray:
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"{path}: cannot read the picture just written")
    return np.ascontiguousarray(img[..., ::-1])


class TensorBoard(Hook):
    """``--tensorboard``: a :class:`TBLogger` on the run folder (rank 0), fed at every point."""

    def __init__(self) -> None:
        self.tb: TBLogger | None = None

    def start(self, t, resumed: bool) -> None:
        if not t.dist.main:
            return
        self.tb = TBLogger(t.folder.path, t.state.global_step if resumed else None)
        if not resumed:
            t.train_sampler.set_epoch(0, 0)
            self.tb.samples(t.train_ds, [i for _, i in t.train_sampler], t.scheme)

    def step(self, t, loss: float, lr: float) -> None:
        if self.tb is not None:
            self.tb.step(t.state.global_step, loss, lr)

    def validation(self, t, pred) -> None:
        if self.tb is not None:
            self.tb.worst(t.data.val, pred, t.scheme, t.state.global_step, len(t.state.history) + 1)

    def epoch_end(self, t, row: dict) -> None:
        if self.tb is not None:
            self.tb.epoch(row, t.state.global_step)

    def close(self, t) -> None:
        if self.tb is not None:
            self.tb.close()
