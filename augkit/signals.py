"""What augkit does when a scheduler stops it: SIGTERM (Slurm, Kubernetes, spot instances,
``torchrun``) and SIGUSR1 (Slurm's ``--signal`` warning ahead of the time limit).

Every command runs inside :func:`stop_cleanly`: the signal becomes a :class:`Terminated` exception
in the main thread (once no module is being imported: an exception raised inside torch's import
aborts the process, so a signal that arrives then is delivered again a moment later), so the
``finally`` blocks and the atomic writers (:func:`augkit.files.atomic_open`)
remove their temporary files and leave every earlier output as it was; the process then prints
one line and exits with ``128 + the signal's number`` (143 for SIGTERM, 138 for SIGUSR1), the
shells' and the schedulers' convention. The exception is not raised inside the locking code of
threading, queue, multiprocessing or torch's DataLoader (it could leave a lock held that the exit
then waits on forever): there the signal waits, at most :data:`LOCKING_WAIT_S`.

Training needs more than a clean exit: :class:`StopRequest` records the signal instead of raising,
the loop finishes the step it is in, writes ``last.pt`` at that step and raises
:class:`Terminated` itself (see :mod:`augkit.train.loop`). A second signal while the checkpoint is
written is recorded too and changes nothing: the write completes (it is atomic in any case).

DataLoader / TTA worker processes ignore both signals (:func:`ignore_in_worker`): the main
process stops them when it stops, so a signal sent to the whole process group (Slurm's
``scancel``) does not kill a worker under a main process that is still saving.

Stdlib only.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time

__all__ = ["STOP_SIGNALS", "Terminated", "StopRequest", "deferred", "stop_cleanly", "ignore_in_worker", "exit_code"]

#: the signals that stop augkit cleanly (SIGUSR1 is missing on Windows)
STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None)


def exit_code(signum: int) -> int:
    """The exit status of a process stopped by ``signum``: ``128 + signum`` (143 for SIGTERM)."""
    return 128 + int(signum)


class Terminated(BaseException):
    """A stop signal arrived. A BaseException (like KeyboardInterrupt), so no ``except Exception``
    swallows it; ``note`` says what was saved (training) and is printed with the exit line."""

    def __init__(self, signum: int, note: str = ""):
        self.signum, self.note = int(signum), note
        super().__init__(f"stopped by {signal.Signals(self.signum).name}" + (f": {note}" if note else ""))

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


_DEFERRING = [0]   # > 0: the main thread is in a :func:`deferred` block


@contextlib.contextmanager
def deferred():
    """A block a stop signal must not interrupt (e.g. creating a temporary file whose name is not
    known yet to the code that removes it): a signal that arrives inside it is delivered again
    :data:`RETRY_S` later. Works whichever thread the kernel hands the signal to, unlike a signal
    mask. Cheap: a counter."""
    _DEFERRING[0] += 1
    try:
        yield
    finally:
        _DEFERRING[0] -= 1


def _raise(signum, frame):
    # inside a deferred block, or an import (an exception raised inside torch's import can abort
    # the process): the stop waits a moment. Inside the locking code of threading, queue,
    # multiprocessing or torch's DataLoader it waits too, for at most LOCKING_WAIT_S
    if _DEFERRING[0] or _importing() or (_in_locking_code(frame) and _waited() < LOCKING_WAIT_S):
        if _PENDING_SINCE[0] is None:
            _PENDING_SINCE[0] = time.monotonic()
        _deliver_again(signum)
        return
    _PENDING_SINCE[0] = None
    _ignore_stop_signals()  # once: the unwinding that follows (temporary files, locks) is not interrupted
    raise Terminated(signum)


RETRY_S = 0.05   # how soon a signal that arrived in a deferred block or an import is delivered again
#: how long a signal that keeps arriving in locking code waits before it is raised there anyway (a
#: main thread blocked for good in a queue's ``get`` must still stop)
LOCKING_WAIT_S = 10.0
_PENDING_SINCE: list[float | None] = [None]   # when the signal now waiting first arrived


def _waited() -> float:
    return 0.0 if _PENDING_SINCE[0] is None else time.monotonic() - _PENDING_SINCE[0]


def _locking_code() -> tuple[str, ...]:
    """Where an exception raised by a signal handler can leave a lock acquired and never released
    (e.g. inside ``threading.Condition.__enter__`` after its acquire: ``with`` never saw it
    succeed): the stdlib's threading, queue, multiprocessing, concurrent and logging code, and
    torch's DataLoader once imported. A queue lock leaked so deadlocked the DataLoader's shutdown
    at exit, after the stop line was printed (a hang in CI)."""
    import os
    import threading
    std = os.path.dirname(threading.__file__)
    paths = [os.path.join(std, f) for f in ("threading.py", "queue.py")]
    paths += [os.path.join(std, d, "") for d in ("multiprocessing", "concurrent", "logging")]
    data = getattr(sys.modules.get("torch.utils.data"), "__file__", None)
    if data:
        paths.append(os.path.join(os.path.dirname(data), ""))
    return tuple(paths)


def _in_locking_code(frame) -> bool:
    """The frame the signal interrupted runs code of :func:`_locking_code`."""
    return frame is not None and frame.f_code.co_filename.startswith(_locking_code())


def _importing() -> bool:
    """A module of this process is being imported (its code is running)."""
    return any(getattr(getattr(m, "__spec__", None), "_initializing", False) for m in list(sys.modules.values()))


def _deliver_again(signum: int) -> None:
    """Send ``signum`` to the main thread again in :data:`RETRY_S` (the deferred block or the import
    will have gone on), where :func:`_raise` asks again."""
    import threading
    main = threading.main_thread().ident
    if main is None or not hasattr(signal, "pthread_kill"):  # pragma: no cover - Windows
        return
    timer = threading.Timer(RETRY_S, signal.pthread_kill, (main, signum))
    timer.daemon = True
    timer.start()


def _ignore_stop_signals() -> None:
    import threading
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)


@contextlib.contextmanager
def _handlers(handler, signals=STOP_SIGNALS, outermost_after=None):
    """Install ``handler`` for ``signals`` (main thread only; elsewhere nothing changes); restore the
    previous handlers after the block, except that where there was none (the default action) and
    ``outermost_after`` is given, that is installed instead."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in signals}
    for s in signals:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in before.items():
            if h in (None, signal.SIG_DFL) and outermost_after is not None:
                h = outermost_after
            signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextlib.contextmanager
def stop_cleanly(prog: str = "augkit", process_exit: bool = False):
    """Run a command so that a stop signal unwinds it (temporary files removed, locks released),
    then prints ``prog: stopped by SIGTERM ...`` on stderr and exits with :func:`exit_code`.
    ``process_exit``: this is the process's entry point (a console script), so once the command
    has finished the signals are ignored while the interpreter shuts down (everything is written
    by then); otherwise the previous handlers come back."""
    try:
        with _handlers(_raise, outermost_after=signal.SIG_IGN if process_exit else None):
            yield
    except Terminated as e:
        print(f"{prog}: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)


class StopRequest:
    """Records a stop signal instead of raising it (used around the training loop). ``signum`` is
    the first signal received (None: none yet)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def _record(self, signum, frame):
        if self.signum is None:
            self.signum = int(signum)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @contextlib.contextmanager
    def listening(self):
        """Record the stop signals inside this block. After it the previous handlers come back,
        unless a signal was recorded: then further ones are ignored, so the stop that follows
        (a checkpoint written, the run folder's lock released) is not interrupted."""
        try:
            with _handlers(self._record):
                yield self
        finally:
            if self.requested:
                _ignore_stop_signals()


def ignore_in_worker() -> None:
    """In a worker process: ignore the stop signals (its parent stops it)."""
    _ignore_stop_signals()
