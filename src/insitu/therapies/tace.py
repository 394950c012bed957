"""``tace``: transarterial chemoembolization — conventional (drug in a Lipiodol emulsion) or drug-eluting beads.

Embolization and drug delivery from one catheter tip: the carrier lodges where the embolic does, releases its
drug there (emulsion wash-out or bead elution) and the liver extracts part of what is released; the plasma curve
follows from the release and the first-pass extraction.
"""

from __future__ import annotations

from insitu.plan import Step
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState
from insitu.therapies.transcatheter import TACEProtocol, arterial_step, check_catheter

protocol_model = TACEProtocol
plans_placement = True  # placement auto: the catheter planner chooses the tip
CARRIER_OF_TECHNIQUE = {"conventional": "lipiodol_emulsion", "deb": "dc_bead"}


def check_step(step: Step) -> None:
    """Plan-time check: a catalog catheter and a tip (or auto)."""
    check_catheter(step)


def apply(state: TissueState, step: Step, context: StepContext) -> tuple[TissueState, StepResult]:
    """Chemoembolize; return the state (lowered arterial perfusion, drug) and the step result."""
    carrier = CARRIER_OF_TECHNIQUE[step.protocol["technique"]]
    new, result, _ = arterial_step(state, step, context, embolic=True, drug=True, carrier_name=carrier)
    return new, result
