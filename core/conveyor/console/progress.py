"""
Live progress: one line per task name with its runs by state, the rate and the time left,
redrawn in place four times a second on stderr (a terminal) or in a notebook, and frozen (or
removed, for ``conveyor run``, which prints its report next) when the flow run ends.

The engine counts, not a plugin hook: while a display is shown, the flow run appends
``(task name, old state type, new state type)`` to a deque at each change (about 70 ns), and
the display's refresh counts it in one C call; how many runs were submitted it reads from the
flow run's run-name counters. Without a display nothing is appended. Drawing is
`rich <https://rich.readthedocs.io>`_'s, imported only when a display is shown.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
from collections import Counter, deque
from typing import Any, Protocol

from conveyor.run_record import RunRecord
from conveyor.states import StateType

__all__ = ["Display", "ProgressSource", "start_display"]

logger = logging.getLogger("conveyor")

REFRESH_PER_SECOND = 4

_ORDER = (
    StateType.PENDING,
    StateType.RUNNING,
    StateType.COMPLETED,
    StateType.FAILED,
    StateType.CRASHED,
    StateType.CANCELLED,
)
_FINAL = _ORDER[2:]
_STYLE = {
    StateType.PENDING: "dim",
    StateType.RUNNING: "cyan",
    StateType.COMPLETED: "green",
    StateType.FAILED: "red",
    StateType.CRASHED: "magenta",
    StateType.CANCELLED: "yellow",
}
_lock = threading.Lock()
_shown: list[Display] = []  # at most one display at a time: a nested flow run shows none
_warned: list[bool] = []


class ProgressSource(Protocol):
    """What a display reads: the flow run's change events and its record."""

    name: str
    record: RunRecord
    events: deque[tuple[str, StateType | None, StateType]] | None
    progress_transient: bool

    def submitted_counts(self) -> dict[str, int]:
        """Runs submitted so far, by task name."""
        ...


def _visible() -> bool:
    """Whether a live display can be seen: stderr is a terminal, or this is a notebook."""
    try:
        if sys.stderr.isatty():
            return os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # a closed or replaced stderr
        return False
    return "ipykernel" in sys.modules


def start_display(source: ProgressSource) -> Display | None:
    """
    Show live progress for ``source`` and return the display, or None where it cannot be seen
    (a pipe, a file), another display is shown already (a nested flow run), or rich is not
    installed (then a warning, once, says how to install it).
    """
    if not _visible():
        return None
    with _lock:
        if _shown:
            return None
        try:
            display = Display(source)
        except ImportError:
            if not _warned:
                _warned.append(True)
                logger.warning(
                    "Live progress needs rich, which is not installed; install it with `pip "
                    'install "conveyor[progress]"`, or turn progress off (--no-progress, '
                    "CONVEYOR_PROGRESS=0)."
                )
            return None
        _shown.append(display)
    return display


class Display:
    """A live progress display of one flow run; :meth:`close` freezes or removes it."""

    def __init__(self, source: ProgressSource) -> None:
        progress_class = _progress_class()  # raises ImportError without rich
        from rich.console import Console  # deferred: rich only when progress is shown

        self.source = source
        self.counts: dict[str, Counter[StateType]] = {}
        self.rows: dict[str, Any] = {}
        self._drain_lock = threading.Lock()
        self._retired: tuple[deque[tuple[str, StateType | None, StateType]], int] = (deque(), 0)
        source.events = deque()
        self.progress = progress_class(
            self,
            console=Console(stderr=True),
            transient=source.progress_transient,
            refresh_per_second=REFRESH_PER_SECOND,
        )
        self.progress.start()

    def drain(self, blocking: bool = False) -> None:
        """
        Apply the change events since the last refresh to the rows. A redraw (which holds
        rich's lock) never waits here: if another drain runs, or this thread's own (adding a
        row redraws), it goes on with the rows as they are.
        """
        if self.source.events is None or not self._drain_lock.acquire(blocking):
            return
        try:
            self._apply()
        finally:
            self._drain_lock.release()

    def _apply(self) -> None:
        # Swap in a fresh deque and count the old one in one C call (no thread can append
        # meanwhile). A thread that fetched the old deque just before the swap may still
        # append to it: the next drain counts what came after.
        old, self.source.events = self.source.events, deque()
        assert old is not None
        batch = Counter(old)
        seen = sum(batch.values())
        retired, counted = self._retired
        batch.update(list(itertools.islice(retired, counted, None)))
        self._retired = (old, seen)
        for (name, old_type, new_type), k in batch.items():
            counts = self.counts.get(name)
            if counts is None:
                counts = self.counts[name] = Counter()
            if old_type is StateType.RUNNING:
                counts[StateType.RUNNING] -= k
            counts[new_type] += k
        submitted = self.source.submitted_counts()
        for name, total in submitted.items():
            self._update_row(name, self.counts.setdefault(name, Counter()), total)

    def _update_row(self, name: str, counts: Counter[StateType], total: int) -> None:
        final = sum(counts[t] for t in _FINAL)
        shown = Counter(counts)
        shown[StateType.PENDING] = max(0, total - final - counts[StateType.RUNNING])
        parts = [f"[{_STYLE[t]}]{shown[t]} {t.value.lower()}[/]" for t in _ORDER[:3]]
        parts += [f"[{_STYLE[t]}]{shown[t]} {t.value.lower()}[/]" for t in _FINAL[1:] if shown[t]]
        states = " · ".join(parts)
        row = self.rows.get(name)
        if row is None:
            self.rows[name] = self.progress.add_task(
                name, total=total, completed=final, states=states
            )
        else:
            self.progress.update(row, total=total, completed=final, states=states)

    def close(self) -> None:
        """Draw the last frame, then freeze or remove the display; idempotent."""
        with _lock:
            if self not in _shown:
                return
            _shown.remove(self)
        try:
            self.drain(blocking=True)  # stop() draws the last frame
        finally:
            self.progress.stop()
            self.source.events = None


_classes: list[type] = []


def _progress_class() -> type:
    """rich's Progress, draining the engine's events before each refresh (made on first use)."""
    if _classes:
        return _classes[0]
    # deferred: rich is imported only when a display is shown, so `import conveyor` stays light
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text  # deferred with the rest of rich

    class RateColumn(ProgressColumn):
        """Finished runs per second."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.1f}/s", style="progress.data.speed")

    class EngineProgress(Progress):
        def __init__(self, display: Display, **kwargs: Any) -> None:
            self.display = display
            super().__init__(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TextColumn("{task.fields[states]}"),
                RateColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                **kwargs,
            )

        def get_renderables(self) -> Any:
            try:
                self.display.drain()
            except Exception:  # a drawing problem never breaks the run, nor the redraws
                logger.debug("The progress display failed to count.", exc_info=True)
            yield from super().get_renderables()

    _classes.append(EngineProgress)
    return EngineProgress
