"""The plan document: patient, targets, margin and an ordered list of steps (pydantic; YAML/JSON).

Units are in every field name (``power_w``, ``duration_s``, ``margin_mm``); unknown fields are
rejected so a misspelt key never silently falls back to a default. Each step's ``protocol`` is
validated by the therapy it names (the therapy registry gives its protocol model).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from insitu.errors import InputFileError, InsituError, PlanError, RegistryError

Point3 = tuple[float, float, float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Placement(_Strict):
    """Where a step acts, in LPS millimetres: a point (tip/focus/centre) and, for applicators, an axis.

    Give ``tip_mm`` (and optionally ``direction``), or ``entry_mm`` + ``target_mm`` (the tip is at the
    target, the axis points from the entry to the target). ``auto`` is for the planner (later issue).
    """

    tip_mm: Point3 | None = None
    direction: Point3 | None = None
    entry_mm: Point3 | None = None
    target_mm: Point3 | None = None
    auto: bool = False

    @model_validator(mode="after")
    def _one_way(self) -> Placement:
        if self.auto:
            if any(v is not None for v in (self.tip_mm, self.direction, self.entry_mm, self.target_mm)):
                raise ValueError("auto placement takes no coordinates")
            return self
        if self.tip_mm is None and self.target_mm is None:
            raise ValueError("give tip_mm, or entry_mm and target_mm, or auto: true")
        if self.tip_mm is not None and self.target_mm is not None:
            raise ValueError("give tip_mm or target_mm, not both")
        if self.target_mm is not None and self.entry_mm is None and self.direction is None:
            raise ValueError("target_mm needs entry_mm (or a direction)")
        if self.direction is not None and sum(v * v for v in self.direction) == 0.0:
            raise ValueError("direction has zero length")
        return self

    @property
    def point_mm(self) -> Point3:
        """The point the step acts at (tip, focus or centre)."""
        if self.tip_mm is not None:
            return self.tip_mm
        if self.target_mm is not None:
            return self.target_mm
        raise PlanError("this placement is 'auto' and has no point yet", "run the planner, or give tip_mm")


class Step(_Strict):
    """One therapy step: therapy, device, placement and protocol (validated by the therapy)."""

    therapy: str
    device: str | None = None
    placement: Placement
    protocol: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None

    @model_validator(mode="after")
    def _protocol_fits_therapy(self) -> Step:
        from insitu.registry import therapies

        try:
            therapy = therapies().get(self.therapy)
        except RegistryError as exc:
            raise ValueError(str(exc)) from None
        protocol_model = getattr(therapy, "protocol_model", None)
        if protocol_model is not None:
            validated = protocol_model.model_validate(self.protocol)
            object.__setattr__(self, "protocol", validated.model_dump())
        check_step = getattr(therapy, "check_step", None)  # device and protocol together (e.g. the generator)
        if check_step is not None:
            try:
                check_step(self)
            except InsituError as exc:
                raise ValueError(str(exc)) from None
        return self


class Plan(_Strict):
    """A treatment plan: which patient, which targets with what margin, and the steps in order."""

    name: str = "plan"
    patient: str = Field(description="patient folder (relative paths are relative to the plan file), or 'phantom'")
    targets: list[str] = Field(default_factory=list, description="structure names to treat; empty = every target")
    margin_mm: float = Field(default=5.0, ge=0.0, le=30.0)
    body_temperature_c: float = Field(default=37.0, ge=30.0, le=42.0)
    damage_model: str = Field(default="arrhenius:liver_comsol", description="criterion for the ablation zone")
    guidance: Literal["ct", "us"] = Field(
        default="ct", description="imaging guidance: CT (gantry tilt limit) or ultrasound (acoustic window)"
    )
    steps: list[Step] = Field(min_length=1)
    schema_version: Literal[1] = 1

    @field_validator("targets")
    @classmethod
    def _unique(cls, targets: list[str]) -> list[str]:
        if len(set(targets)) != len(targets):
            raise ValueError("a target is listed twice")
        return targets


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "plan"
    message = first["msg"].removeprefix("Value error, ")
    more = exc.error_count() - 1
    return f"{where}: {message}" + (f" (and {more} more)" if more else "")


def plan_from_dict(data: Any, where: str = "plan") -> Plan:
    """Validate a plan given as a mapping; every problem is a one-line PlanError."""
    if not isinstance(data, dict):
        raise PlanError(f"{where} is not a mapping", "see `insitu plan --schema` for its layout")
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(f"{where}: {_one_line(exc)}", "fix that field (units are in the field names)") from None


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Read a plan from YAML or JSON; the patient path is resolved relative to the plan file."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"plan file {path} does not exist", "check the path")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputFileError(
            f"plan file {path.name} cannot be parsed ({str(exc).splitlines()[0]})", "fix its syntax"
        ) from None
    plan = plan_from_dict(data, path.name)
    if plan.patient != "phantom" and not Path(plan.patient).is_absolute():
        plan = plan.model_copy(update={"patient": str((path.parent / plan.patient).resolve())})
    return plan


def plan_json_schema() -> dict[str, Any]:
    """The JSON schema of plan files (for editors and the server)."""
    return Plan.model_json_schema()
