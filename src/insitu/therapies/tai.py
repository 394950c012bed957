"""``tai``: transarterial infusion chemotherapy (HAIC) — a drug solution infused at the catheter tip.

No embolization: the drug follows the flow into the territories downstream of the tip; the liver extracts its
first-pass share there and the rest reaches the systemic circulation (plasma curve, Cmax, AUC).
"""

from __future__ import annotations

from insitu.plan import Step
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState
from insitu.therapies.transcatheter import TAIProtocol, arterial_step, check_catheter

protocol_model = TAIProtocol
plans_placement = True  # placement auto: the catheter planner chooses the tip


def check_step(step: Step) -> None:
    """Plan-time check: a catalog catheter and a tip (or auto)."""
    check_catheter(step)


def apply(state: TissueState, step: Step, context: StepContext) -> tuple[TissueState, StepResult]:
    """Infuse the drug; return the state with the retained drug and the step result (plasma curve included)."""
    new, result, _ = arterial_step(state, step, context, embolic=False, drug=True, carrier_name="solution")
    return new, result
