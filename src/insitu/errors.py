"""The insitu error family: every message names the problem and the fix, in one line.

The CLI prints ``str(error)`` on one line and exits with code 2; the server returns it as the
response detail. Raise these at the user's edge (files, plans, parameters) before any output is
written, so bad input never leaves a half-written result behind.
"""

from __future__ import annotations


class InsituError(Exception):
    """Base class: a problem the user can fix. ``str()`` is a one-line message with the fix."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem.rstrip(". ")
        self.fix = fix.rstrip(". ") if fix else None
        message = self.problem if not self.fix else f"{self.problem}; {self.fix}"
        super().__init__(" ".join(message.split()))


class InputFileError(InsituError):
    """A file is missing, unreadable, truncated or of the wrong kind."""


class GridError(InsituError):
    """A grid is malformed (spacing, direction, shape) or two grids do not match."""


class StructureError(InsituError):
    """A structure is empty, unlabeled, has an unknown role or sits on the wrong grid."""


class TissueError(InsituError):
    """An unknown tissue type or a tissue property that does not exist or is not finite."""


class PlanError(InsituError):
    """A plan document is invalid (unknown field, bad unit, unknown therapy or device)."""


class RegistryError(InsituError):
    """A name is not in a registry (therapy, device, solver, objective)."""


class OutputError(InsituError):
    """An output location cannot be written."""


class PhysicsError(InsituError):
    """A solver was given inputs it cannot run with (non-finite values, unstable step, …)."""


class AcousticWindowError(PlanError):
    """No acoustic window: ribs, bowel gas or lung block the ultrasound path to a focus."""


class ReachError(PlanError):
    """A focus lies deeper than the transducer reaches, or farther off its axis than it steers."""


class DeviceRangeError(PlanError):
    """A protocol value lies outside what the device can do (frequency, power)."""


class CouplingError(PlanError):
    """No water coupling path from the transducer to the skin."""
