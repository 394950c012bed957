"""Patients: image + structures on one grid; the built-in phantom lives in ``phantom``."""

from insitu.patient.patient import Patient
from insitu.patient.structure import Code, Role, Structure

__all__ = ["Code", "Patient", "Role", "Structure"]
