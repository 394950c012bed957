"""Write an Outcome: result volumes (NIfTI) and a JSON summary, into one folder, atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from insitu.io.atomic import atomic_directory
from insitu.io.images import write_image

if TYPE_CHECKING:
    from insitu.simulation import Outcome


def write_outcome(outcome: Outcome, path: str | os.PathLike[str]) -> Path:
    """``path/`` gets ``summary.json``, ``plan.yaml``, the final damage/temperature fields and each
    step's fields as ``step<N>_<name>.nii.gz``; the folder appears only when everything is written."""
    path = Path(path)
    grid = outcome.patient.grid
    files: list[str] = []
    with atomic_directory(path) as tmp:
        state = outcome.final_state
        final = {"temperature_c": state.temperature_c, **state.damage}
        for name, values in final.items():
            rel = f"final_{name}.nii.gz"
            values = np.asarray(values, dtype=np.float32)
            if name.endswith("temperature_c"):  # extremes are NaN where no step reached: body temperature
                values = np.nan_to_num(values, nan=state.body_temperature_c)
            write_image(values, grid, tmp / rel)
            files.append(rel)
        for step in outcome.steps:
            for name, values in step.fields.items():
                rel = f"step{step.index + 1}_{name}.nii.gz"
                array = values.astype(np.uint8) if values.dtype == bool else np.asarray(values, dtype=np.float32)
                write_image(array, grid, tmp / rel)
                files.append(rel)
        from insitu.evaluation import evaluate

        summary = outcome.summary() | {"evaluation": evaluate(outcome).summary(), "files": files}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        (tmp / "plan.yaml").write_text(
            yaml.safe_dump(outcome.plan.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
        )
    return path
