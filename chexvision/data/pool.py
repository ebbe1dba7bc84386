"""Per-shard work over every CPU, the one way `data build`, `data build --source ...` and `data transcode` run it.

Inline for one worker (no pool: simpler tracebacks, nothing to start); otherwise a process pool started with spawn,
not fork (the parent may hold pyarrow/OpenCV thread pools, which fork does not copy safely), one OpenCV thread per
process (one process per core already), one shard a task. Results are yielded as shards finish, so a caller can
record each in its resume manifest at once; a closed generator cancels what has not started.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TypeVar

__all__ = ["run_tasks"]

T = TypeVar("T")
R = TypeVar("R")


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)


def run_tasks(fn: Callable[[T], R], tasks: Sequence[T], workers: int | None) -> Generator[R, None, None]:
    """Yield `fn(task)` for every task as it finishes (tasks finishing together: in submission order)."""
    workers = max(1, min(workers or 1, len(tasks)))
    if workers == 1:
        for task in tasks:
            yield fn(task)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
        order: dict[Future[R], int] = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
        pending = set(order)
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=order.__getitem__):
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()
