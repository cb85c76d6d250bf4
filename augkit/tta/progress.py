"""One progress convention for long commands: a bar on a terminal, plain lines otherwise.

On a terminal (the stream is a TTY) a ``tqdm`` bar is drawn, as before. When the stream is not a
terminal (a log file, a pipe, a batch job) a bar would print nothing useful, so one plain line is
written every ``every_pct`` percent or every ``every_s`` seconds, whichever comes first::

    predict: 120/2400 images (5%), 0:12 elapsed, ETA 3:48

Torch-free and independent of the rest of ``augkit.tta``: training code can use it as well.

    with Progress(len(files), "predict") as bar:
        for chunk in chunks:
            bar.update(len(chunk))
"""

from __future__ import annotations

import math
import sys
import time

__all__ = ["Progress", "format_seconds"]


def format_seconds(s: float) -> str:
    """``H:MM:SS`` (or ``M:SS`` under an hour) for a duration in seconds; ``?`` when unknown."""
    if s is None or not math.isfinite(s) or s < 0:
        return "?"
    s = round(s)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """Progress of ``total`` units of work, written to ``file`` (default: stderr).

    Args:
        total: units expected (images); 0 or less: nothing is shown.
        desc: the label at the start of each line.
        unit: the unit's name in plain lines.
        file: the stream; ``None``: ``sys.stderr`` at the time of the call.
        every_pct: plain mode: a line each time this many percent more are done.
        every_s: plain mode: a line at least this often (seconds) while work advances.
        bar: ``True`` a tqdm bar, ``False`` plain lines, ``None`` (default) a bar exactly when the
            stream is a terminal (and tqdm is installed).
        clock: the time function (tests pass a fake one).

    ``update(n)`` is a callable of one argument, so ``bar.update`` can be handed to the predictor's
    ``progress=`` parameter. ``close()`` writes a last plain line (when some work was done and the
    last line did not already say so) and is safe to call twice.
    """

    def __init__(self, total: int, desc: str, unit: str = "images", file=None, every_pct: float = 5.0,
                 every_s: float = 30.0, bar: bool | None = None, clock=time.monotonic):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.file = file if file is not None else sys.stderr
        self.every_pct, self.every_s, self._clock = float(every_pct), float(every_s), clock
        self.done = 0
        self._start = self._last_t = clock()
        self._last_pct = 0.0
        self._last_done = 0
        self._closed = False
        self._bar = self._make_bar() if self._wants_bar(bar) else None

    def _wants_bar(self, bar) -> bool:
        if self.total <= 0 or bar is False:
            return False
        isatty = getattr(self.file, "isatty", None)
        return bool(bar) or bool(isatty and isatty())

    def _make_bar(self):
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm comes with the train/tta extras
            return None
        return tqdm(total=self.total, desc=self.desc, unit="img", file=self.file, leave=False)

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.done += int(n)
        if self._bar is not None:
            self._bar.update(n)
            return
        if self.total <= 0:
            return
        now = self._clock()
        pct = 100.0 * self.done / self.total
        if pct - self._last_pct >= self.every_pct or (now - self._last_t >= self.every_s and self.done > self._last_done):
            self._line(now)

    def line(self, now: float | None = None) -> str:
        """The plain progress line for the work done so far."""
        now = self._clock() if now is None else now
        elapsed = now - self._start
        pct = 100.0 * self.done / self.total if self.total > 0 else 100.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        return (f"{self.desc}: {self.done}/{self.total} {self.unit} ({pct:.0f}%), {format_seconds(elapsed)} elapsed, "
                f"ETA {format_seconds(eta) if self.done < self.total else '0:00'}")

    def _line(self, now: float) -> None:
        print(self.line(now), file=self.file, flush=True)
        self._last_t, self._last_done = now, self.done
        self._last_pct = 100.0 * self.done / self.total

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.total > 0 and self.done > self._last_done:
            self._line(self._clock())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
