"""One progress-callback protocol for long work: the CLI shows it with rich, the server streams it.

A callable ``progress(stage, fraction, message)`` is passed down to long-running functions; they
call it with a short stage name, the fraction done in that stage (0…1) and an optional message.
``None`` means "report nothing" — use :func:`ensure_progress` to get a callable either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    """Called as work advances; must be cheap (it may be called thousands of times)."""

    def __call__(self, stage: str, fraction: float, message: str = "") -> None: ...


def silent(stage: str, fraction: float, message: str = "") -> None:
    """A progress callback that reports nothing."""


def ensure_progress(progress: Progress | None) -> Progress:
    """``progress`` itself, or the silent callback when it is ``None``."""
    return silent if progress is None else progress


class Recorder:
    """A progress callback that keeps every call: for tests and for the server's job log."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float, str]] = []

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        self.events.append((stage, float(fraction), message))

    def stages(self) -> list[str]:
        seen: list[str] = []
        for stage, _, _ in self.events:
            if stage not in seen:
                seen.append(stage)
        return seen


def scaled(progress: Progress | None, start: float, stop: float, stage: str | None = None) -> Progress:
    """A callback mapping a sub-task's 0…1 onto ``start…stop`` of the parent's stage."""
    parent = ensure_progress(progress)

    def inner(sub_stage: str, fraction: float, message: str = "") -> None:
        parent(stage or sub_stage, start + (stop - start) * min(max(fraction, 0.0), 1.0), message)

    return inner


ProgressFactory = Callable[[], Progress]
