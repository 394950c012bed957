"""insitu: plan and simulate image-guided minimally invasive tumour therapy.

The public API, one call per step (more arrive as the engine grows):

    patient = insitu.load_patient("patient/")          # or insitu.make_phantom()
    plan = insitu.load_plan("plan.yaml")
    outcome = insitu.simulate(plan, patient)
    evaluation = insitu.evaluate(outcome)               # coverage, margins, healthy tissue, OARs
"""

from insitu.errors import InsituError
from insitu.evaluation import evaluate
from insitu.grid import Grid
from insitu.io.patient_folder import load_patient, save_patient
from insitu.patient.patient import Patient
from insitu.patient.phantom import PhantomSpec, TumorSpec, make_phantom
from insitu.patient.structure import Role, Structure
from insitu.plan import load_plan
from insitu.simulation import simulate

__version__ = "0.1.0"

__all__ = [
    "Grid",
    "InsituError",
    "Patient",
    "PhantomSpec",
    "Role",
    "Structure",
    "TumorSpec",
    "__version__",
    "evaluate",
    "load_patient",
    "load_plan",
    "make_phantom",
    "save_patient",
    "simulate",
]
