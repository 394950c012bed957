"""``tae``: bland transarterial embolization — particles from a catheter tip devascularise the tumour's territory.

The step lowers the arterial perfusion of every territory whose flow the particles stopped or cut (see
:mod:`insitu.therapies.transcatheter`); no drug is given.
"""

from __future__ import annotations

from insitu.plan import Step
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState
from insitu.therapies.transcatheter import TAEProtocol, arterial_step, check_catheter

protocol_model = TAEProtocol
plans_placement = True  # placement auto: the catheter planner chooses the tip


def check_step(step: Step) -> None:
    """Plan-time check: a catalog catheter and a tip (or auto)."""
    check_catheter(step)


def apply(state: TissueState, step: Step, context: StepContext) -> tuple[TissueState, StepResult]:
    """Embolize from the catheter tip; return the state with lowered arterial perfusion and the step result."""
    new, result, _ = arterial_step(state, step, context, embolic=True, drug=False)
    return new, result
