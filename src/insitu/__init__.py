"""insitu: plan and simulate image-guided minimally invasive tumour therapy.

The public API, one call per step (more arrive as the engine grows):

    patient = insitu.load_patient("patient/")          # or insitu.make_phantom()
    insitu.save_patient(patient, "copy/")
"""

from insitu.errors import InsituError
from insitu.grid import Grid
from insitu.io.patient_folder import load_patient, save_patient
from insitu.patient.patient import Patient
from insitu.patient.phantom import PhantomSpec, TumorSpec, make_phantom
from insitu.patient.structure import Role, Structure

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
    "load_patient",
    "make_phantom",
    "save_patient",
]
