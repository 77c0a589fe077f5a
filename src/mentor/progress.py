"""The one progress bar of long loops (teacher references, rollouts, evaluation): rich on stderr
with done/total, rate, elapsed and ETA, or a callback ``f(done)``, or nothing."""

from __future__ import annotations

import time
from collections.abc import Callable


class ProgressBar:
    def __init__(
        self,
        total: int,
        description: str,
        progress: bool | Callable[[int], None] = True,
        completed: int = 0,
        unit: str = "items",
    ):
        self.callback = progress if callable(progress) else None
        self.done = completed
        self.unit = unit
        self._start, self._t0 = completed, time.perf_counter()
        self._bar = None
        if progress is True:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task(description, total=total, completed=completed, rate="-/s")

    def advance(self) -> None:
        self.done += 1
        if self._bar is not None:
            rate = (self.done - self._start) / max(time.perf_counter() - self._t0, 1e-9)
            self._bar.update(self._task, advance=1, rate=f"{rate:.2f} {self.unit}/s")
        if self.callback:
            self.callback(self.done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
