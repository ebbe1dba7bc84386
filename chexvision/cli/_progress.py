"""Progress of the long data commands (`data build`, `data transcode`): a rich bar on a terminal, plain lines in a log.

A Kaggle kernel's log (and any pipe) is not a terminal, where rich draws nothing until the end; there the reporter
prints `what: 12,000/112,120 images (10.7 %), 310 images/s, 5 min 58 s left` at most every `every_s` seconds, plus
the first and the last call, so a long build shows it is alive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

__all__ = ["progress_reporter"]

Progress = Callable[[int, int], None]  # (done, total)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


class _PlainLines:
    def __init__(self, what: str, console: Console, every_s: float) -> None:
        self.what, self.console, self.every_s = what, console, every_s
        self.start = time.monotonic()
        self.first: int | None = None  # done at the first call (a resumed build starts there)
        self.last = float("-inf")

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = done
        elif now - self.last < self.every_s and done < total:
            return
        self.last = now
        line = f"{self.what}: {done:,}/{total:,} images ({100 * done / max(total, 1):.1f} %)"
        rate = (done - self.first) / max(now - self.start, 1e-9)
        if done > self.first:
            line += f", {rate:,.0f} images/s"
            if done < total:
                line += f", {_duration((total - done) / rate)} left"
        self.console.print(line, markup=False, highlight=False)


@contextmanager
def progress_reporter(what: str, console: Console, every_s: float = 10.0) -> Iterator[Progress]:
    """Yield a `(done, total)` callback: a transient rich bar when `console` is a terminal, else plain lines."""
    if not console.is_terminal:
        yield _PlainLines(what, console, every_s)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # transient: an error raised under the bar leaves only its one line on screen
    with Bar(*columns, console=console, transient=True) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
