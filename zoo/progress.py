"""Progress for long work: rich bars on a terminal, plain lines under CI or in a pipe.

A bar counts items (``make_progress``); a wait with nothing to count (building the
catalogue index) is a :func:`waiting` line: a rich spinner on a terminal, one line at
its start and one at its end under CI or in a pipe.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["LineProgress", "RichProgress", "Waiting", "make_progress", "plain_output", "waiting"]


def plain_output() -> bool:
    """True under CI=true or when stderr is not a terminal."""
    return os.environ.get("CI", "").lower() in {"1", "true"} or not sys.stderr.isatty()


def say(message: str) -> None:
    """One ``zoo: MESSAGE`` line on stderr: what the engine tells the user while it works
    (the CLI's own lines go through zoo/cli/output.py)."""
    print(f"zoo: {message}", file=sys.stderr, flush=True)


def _amount(total: float, unit: str) -> str:
    """What a progress line counts: ``12 images``, ``4 steps``, ``18.4 MB``."""
    if unit == "bytes":
        return f"{total / 1e6:.1f} MB"
    return f"{total:g} {unit}"


def _duration(seconds: float) -> str:
    """``8 s``, ``3 min 5 s``, ``2 h 10 min``: a time left, as people say it."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{max(seconds, 1)} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class LineProgress:
    """Plain lines: one at start, one about every 10% or every minute (at most every 2 s)
    with the rate and the time left, one at the end; without a total, one a minute with
    the count and the rate."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.description = ""
        self.total: float | None = None
        self.unit = "items"
        self.done = 0.0
        self._last = 0.0
        self._last_done = 0.0
        self._next_fraction = 0.1

    def _say(self, text: str) -> None:
        print(f"zoo: {self.description}: {text}", file=self.stream, flush=True)

    def start(self, description: str, total: float | None, unit: str = "items") -> None:
        self.description, self.total, self.done, self.unit = description, total, 0.0, unit
        self._next_fraction, self._last, self._last_done = 0.1, time.monotonic(), 0.0
        self._say("started" + (f" ({_amount(total, unit)})" if total else ""))

    def advance(self, amount: float) -> None:
        self.done += amount
        now = time.monotonic()
        elapsed = now - self._last
        if not self.total:  # a count without an end (a stream): a line every minute
            if elapsed >= 60.0:
                rate = (self.done - self._last_done) / elapsed
                self._say(f"{self.done:,.0f} {self.unit} ({rate:,.0f} {self.unit}/s)")
                self._last, self._last_done = now, self.done
            return
        fraction = self.done / self.total
        if (fraction >= self._next_fraction or elapsed >= 60.0) and elapsed >= 2.0:
            self._say(f"{fraction:.0%}{self._pace(elapsed)}")
            self._last, self._last_done = now, self.done
            self._next_fraction = fraction + 0.1

    def _pace(self, elapsed: float) -> str:
        """`` (8,000/20,000 images, 1,234 images/s, about 10 s left)``: the rate since the
        previous line (what is done from a cache goes fast: the rate follows the work)."""
        assert self.total
        rate = (self.done - self._last_done) / elapsed
        if self.unit == "bytes":
            return f" ({_amount(self.done, 'bytes')} of {_amount(self.total, 'bytes')})"
        pace = f" ({self.done:,.0f}/{self.total:,.0f} {self.unit}, {rate:,.0f} {self.unit}/s"
        if rate > 0 and self.done < self.total:
            pace += f", about {_duration((self.total - self.done) / rate)} left"
        return pace + ")"

    def finish(self) -> None:
        self._say("done")


class RichProgress:
    """A rich progress bar on stderr: what it counts, and for counts (not bytes) the rate;
    the time left."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def _make(self, unit: str) -> Any:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class CountColumn(ProgressColumn):
            """Sizes for downloads (unit="bytes"); N/M for images, steps, epochs."""

            def __init__(self) -> None:
                super().__init__()
                self.as_bytes, self.as_count = DownloadColumn(), MofNCompleteColumn()

            def render(self, task: Any) -> Any:
                column = self.as_bytes if task.fields.get("unit") == "bytes" else self.as_count
                return column.render(task)

        class RateColumn(ProgressColumn):
            """``1,234 images/s``: rich's estimate over the last 30 s."""

            def render(self, task: Any) -> Any:
                speed = task.finished_speed or task.speed
                unit = task.fields.get("unit", "items")
                shown = f"{speed:,.0f} {unit}/s" if speed and unit != "bytes" else ""
                return Text(shown, style="progress.data.speed")

        # downloads keep the row they had (their size tells the pace); counts get a rate
        rate = [] if unit == "bytes" else [RateColumn()]
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            CountColumn(),
            *rate,
            TimeRemainingColumn(),
            transient=False,
        )

    def start(self, description: str, total: float | None, unit: str = "items") -> None:
        if self._task is None:
            self._progress = self._make(unit)
            self._progress.start()
        self._task = self._progress.add_task(description, total=total, unit=unit)

    def advance(self, amount: float) -> None:
        if self._task is not None:
            self._progress.advance(self._task, amount)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._task = None


def make_progress() -> LineProgress | RichProgress:
    return LineProgress() if plain_output() else RichProgress()


class Waiting:
    """What :func:`waiting` hands out: ``update(detail)`` says what the wait is at now."""

    def __init__(self, title: str, status: Any = None, *, steps: bool = False) -> None:
        self.title = title
        self._status = status  # rich's Status on a terminal, None for plain lines
        self._steps = steps  # plain lines: each update is a line of its own

    def update(self, detail: str) -> None:
        if self._status is not None:
            # naming the spinner (rich's default) makes rich redraw now: a step shorter
            # than its refresh interval, or run while the machine is busy, is still shown
            self._status.update(f"{self.title}: {detail}", spinner="dots")
        elif self._steps:
            print(f"zoo: {self.title}: {detail}", file=sys.stderr, flush=True)

    def say(self, line: str) -> None:
        """A line that stays, printed above the spinner (a line written to the terminal
        past rich would be drawn over by it)."""
        if self._status is None:
            print(line, file=sys.stderr, flush=True)
            return
        self._status.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)


@contextmanager
def waiting(title: str, detail: str, *, steps: bool = False) -> Iterator[Waiting]:
    """Say what zoo waits for, on stderr, while the block runs.

    On a terminal: a rich spinner ``TITLE: DETAIL`` (``update`` changes the detail),
    gone when the block ends. Under CI or in a pipe: ``zoo: TITLE: DETAIL`` at the start
    and ``zoo: TITLE: done (N s)`` at the end; with ``steps`` (a wait made of steps, such
    as `zoo export`'s) every ``update`` is a line too.
    """
    if plain_output():
        print(f"zoo: {title}: {detail}", file=sys.stderr, flush=True)
        start = time.monotonic()
        yield Waiting(title, steps=steps)
        print(f"zoo: {title}: done ({time.monotonic() - start:.0f} s)", file=sys.stderr, flush=True)
        return
    from rich.console import Console

    # bound to this stderr: a library that redirects sys.stderr for a while (torch.onnx's
    # converter, quieted) must not swallow the spinner's redraws
    with Console(file=sys.stderr).status(f"{title}: {detail}") as status:
        yield Waiting(title, status)
