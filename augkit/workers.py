"""Worker processes that decode and warp images: how many by default, and OpenCV on one thread in
each (the workers are the parallelism; OpenCV's own pool in each of them would oversubscribe the
cores). Used by the training DataLoader and by TTA's producer; stdlib and OpenCV only.

Reconfiguring OpenCV's pthreads pool inside a forked child whose parent had the pool running
hangs, so forked workers are started while the parent is set to one thread (restored right after)
and inherit it; spawned workers start fresh and set it in :func:`init_worker`.
"""

from __future__ import annotations

import os

__all__ = ["default_workers", "init_worker", "usable_cores", "worker_context"]


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_workers(cap: int | None = None) -> int:
    """Worker processes per process by default: the CPU cores this process may use (its affinity
    mask), shared among the processes of this node (``LOCAL_WORLD_SIZE`` under torchrun), minus one
    for the process itself (it runs the model), at most ``cap`` (None: no cap; a 32-core box gets 31);
    0 on one core."""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    n = max(0, usable_cores() // local - 1)
    return n if cap is None else min(int(cap), n)


def init_worker(worker_id: int = 0) -> None:
    """``worker_init_fn``: OpenCV on one thread (left alone when the worker already has one), and,
    in a worker forked by :func:`worker_context`'s context, SIGTERM / SIGUSR1 ignored: a signal
    sent to every process of a job (Slurm's ``scancel``) must not kill the workers under a parent
    that is still saving. The parent ends them itself: through the DataLoader's shutdown, else at
    its exit (:func:`_end_workers`). They ignore the signals from the fork on
    (:func:`_ignore_if_forked_here`), and again here: torch's worker loop installs its own SIGTERM
    handler in between."""
    import cv2

    _ignore_if_forked_here()
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


def worker_context():
    """The multiprocessing context for workers: with the ``fork`` start method, one whose processes
    are forked while OpenCV is set to one thread here (so they inherit it without touching the
    pool); otherwise None (the default context)."""
    import multiprocessing
    method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    if method != "fork":
        return None
    cls = _fork_context_class()
    return cls() if cls is not None else None


_FORK_CONTEXT: list[type | None] = []   # the class, once built
_FORKED_HERE = False    # True in a worker forked by ForkProcessOneOpenCVThread (inherited through fork)
_STARTED: list = []     # [WeakSet of the workers started here]: ended at exit if still alive


def _ignore_if_forked_here() -> None:
    if _FORKED_HERE:
        from .signals import ignore_in_worker
        ignore_in_worker()


def _end_workers() -> None:
    """At the parent's exit (before multiprocessing's own exit handler, which would send SIGTERM to
    daemonic children and wait for them: these ignore it): kill the workers still alive (a loader
    still referenced at exit). torch's SIGCHLD handler, which would raise on their deaths in the
    middle of this, is switched off first."""
    import signal
    alive = []
    for p in list(_STARTED[0]) if _STARTED else ():
        try:
            if p.is_alive():
                alive.append(p)
        except (OSError, ValueError, AssertionError):  # pragma: no cover - not ours to ask any more
            pass
    if not alive:
        return
    if hasattr(signal, "SIGCHLD"):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for p in alive:
        try:
            p.kill()
        except (OSError, ValueError, AssertionError):  # pragma: no cover - already gone
            pass
    for p in alive:
        try:
            p.join(5)
        except (OSError, ValueError, AssertionError):  # pragma: no cover
            pass


def _fork_context_class():
    """A fork context whose processes inherit OpenCV set to one thread (None where there is no fork);
    built once."""
    if _FORK_CONTEXT:
        return _FORK_CONTEXT[0]
    import multiprocessing.context as mp_context
    if not hasattr(mp_context, "ForkContext"):
        _FORK_CONTEXT.append(None)
        return None

    class ForkProcessOneOpenCVThread(mp_context.ForkProcess):
        def start(self):
            import cv2
            global _FORKED_HERE
            if not _STARTED:
                import atexit
                import multiprocessing.util  # noqa: F401 - its exit handler registered first, so ours runs first
                import weakref
                _STARTED.append(weakref.WeakSet())
                atexit.register(_end_workers)  # runs before multiprocessing's (registered earlier)
                os.register_at_fork(after_in_child=_ignore_if_forked_here)  # before the child runs any code
            from .signals import deferred
            # known to _end_workers before the fork, and a stop signal held until the start is
            # complete: a Terminated raised between the fork and the registration left a child
            # that ignores SIGTERM to multiprocessing's exit handler, which sends SIGTERM and
            # waits for it without a timeout (a hang at exit, once in CI)
            _STARTED[0].add(self)
            with deferred():
                before = cv2.getNumThreads()
                cv2.setNumThreads(1)
                _FORKED_HERE = True
                try:
                    super().start()
                finally:
                    _FORKED_HERE = False
                    cv2.setNumThreads(before)

    class ForkOneOpenCVThread(mp_context.ForkContext):
        Process = ForkProcessOneOpenCVThread

    _FORK_CONTEXT.append(ForkOneOpenCVThread)
    return ForkOneOpenCVThread
