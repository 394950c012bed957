"""The patient folder: an image, a label image (or one mask per structure) and ``structures.yaml``.

Layout written by :func:`save_patient` and read by :func:`load_patient`::

    ct.nii.gz            the image (CT in HU; .nrrd / .mha also read)
    labels.nii.gz        one label value per structure (when no structures overlap)
    masks/NAME.nii.gz    one mask per structure (when some overlap; also accepted on input)
    maps/NAME.nii.gz     extra label volumes (e.g. Couinaud segments)
    trees/NAME.json      vessel trees as graphs
    structures.yaml      label value → name, role, tissue type, code; trees; metadata
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from insitu.errors import InputFileError, StructureError
from insitu.grid import Grid
from insitu.io.atomic import atomic_directory
from insitu.io.images import IMAGE_SUFFIXES, image_suffix, read_image, write_image
from insitu.patient.patient import Patient
from insitu.patient.structure import Code, Role, Structure

STRUCTURES_FILE = "structures.yaml"
_IMAGE_STEMS = ("ct", "image", "mr")


class CodeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scheme: str = "SCT"
    value: str
    meaning: str


class StructureEntry(BaseModel):
    """One structure in ``structures.yaml``: found by ``label`` in the label image, or by ``file``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    role: Role
    tissue: str = Field(min_length=1)
    label: int | None = Field(default=None, ge=1, le=65535)
    file: str | None = None
    code: CodeEntry | None = None
    color_rgb: tuple[int, int, int] = (200, 200, 200)

    @field_validator("role", mode="before")
    @classmethod
    def _lower_role(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class LabelMapEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    file: str
    labels: dict[int, str]


class TreeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    file: str


class GridEntry(BaseModel):
    """The exact grid (float64); NIfTI headers keep only float32, so this restores the last digits."""

    model_config = ConfigDict(extra="forbid")
    shape_kji: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, float, float, float, float, float, float, float, float]


class StructuresDocument(BaseModel):
    """The schema of ``structures.yaml`` (unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid")
    image: str | None = None
    grid: GridEntry | None = None
    labels: str | None = None
    modality: str = "CT"
    background_tissue: str = "muscle"
    structures: list[StructureEntry]
    label_maps: list[LabelMapEntry] = []
    trees: list[TreeEntry] = []
    metadata: dict[str, Any] = {}


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")


def _find_image(folder: Path, declared: str | None) -> Path:
    if declared:
        return folder / declared
    for stem in _IMAGE_STEMS:
        for suffix in IMAGE_SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.exists():
                return candidate
    raise InputFileError(
        f"patient folder {folder} has no image (ct.nii.gz, ct.nrrd or ct.mha)",
        f"add the CT as ct.nii.gz or name it with 'image:' in {STRUCTURES_FILE}",
    )


def _read_document(folder: Path) -> StructuresDocument:
    path = folder / STRUCTURES_FILE
    if not path.exists():
        raise InputFileError(
            f"patient folder {folder} has no {STRUCTURES_FILE}",
            "add one naming each label value's structure, role and tissue (see the README)",
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputFileError(f"{STRUCTURES_FILE} is not valid YAML{line}", "fix the syntax") from None
    if not isinstance(raw, dict):
        raise InputFileError(f"{STRUCTURES_FILE} is not a mapping", "see the README for its layout")
    try:
        return StructuresDocument.model_validate(raw)
    except ValidationError as exc:
        raise StructureError(f"{STRUCTURES_FILE}: {_one_line(exc)}", "fix that entry") from None


def load_patient(path: str | os.PathLike[str], check_tissues: bool = True) -> Patient:
    """Load a patient folder (see the module docstring); every problem is a one-line InsituError."""
    folder = Path(path)
    if not folder.exists():
        raise InputFileError(f"patient folder {folder} does not exist", "check the path")
    if not folder.is_dir():
        raise InputFileError(f"{folder} is not a folder", "give a patient folder (image + structures.yaml)")
    document = _read_document(folder)
    image, grid = read_image(_find_image(folder, document.image), "image")
    grid = _exact_grid(grid, document.grid)

    label_image = None
    if document.labels or any(e.label is not None for e in document.structures):
        labels_path = folder / (document.labels or _default_labels_name(folder))
        label_image, label_grid = read_image(labels_path, "label image")
        grid.require_match(label_grid, f"label image {labels_path.name}")
        _check_label_values(label_image, document)

    structures: dict[str, Structure] = {}
    for entry in document.structures:
        if entry.name in structures:
            raise StructureError(f"{STRUCTURES_FILE} names structure {entry.name!r} twice", "give each a unique name")
        structures[entry.name] = Structure(
            name=entry.name,
            role=entry.role,
            mask=_structure_mask(folder, grid, entry, label_image),
            grid=grid,
            tissue=entry.tissue,
            code=Code(entry.code.scheme, entry.code.value, entry.code.meaning) if entry.code else None,
            label=entry.label,
            color_rgb=tuple(entry.color_rgb),
        )

    label_maps = {}
    for entry in document.label_maps:
        values, map_grid = read_image(folder / entry.file, f"label map {entry.name}")
        grid.require_match(map_grid, f"label map {entry.file}")
        label_maps[entry.name] = (values, dict(entry.labels))

    trees = {}
    if document.trees:
        from insitu.vascular.tree import VesselTree

        for entry in document.trees:
            tree_path = folder / entry.file
            try:
                trees[entry.name] = VesselTree.from_dict(json.loads(tree_path.read_text(encoding="utf-8")))
            except FileNotFoundError:
                raise InputFileError(
                    f"vessel tree file {tree_path} does not exist",
                    f"fix 'trees' in {STRUCTURES_FILE}",
                ) from None
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise InputFileError(f"vessel tree file {tree_path.name} is damaged ({exc})", "re-export it") from None

    patient = Patient(
        grid=grid,
        image=image,
        structures=structures,
        trees=trees,
        label_maps=label_maps,
        modality=document.modality,
        background_tissue=document.background_tissue,
        metadata=dict(document.metadata),
    )
    if check_tissues:
        from insitu.tissue.library import load_library

        patient.validate_tissues(load_library())
    for target in patient.targets:
        if target.is_empty:
            where = f"label {target.label}" if target.label is not None else "its mask file"
            raise StructureError(
                f"target {target.name!r} is empty: no voxel has {where}",
                "check the segmentation or the label value in structures.yaml",
            )
    return patient


def _exact_grid(header_grid: Grid, recorded: GridEntry | None) -> Grid:
    """The grid recorded in structures.yaml when the image header agrees with it to float32 precision."""
    if recorded is None:
        return header_grid
    exact = Grid(
        shape=recorded.shape_kji,
        spacing_mm=recorded.spacing_mm,
        origin_mm=recorded.origin_mm,
        direction=np.asarray(recorded.direction).reshape(3, 3),
    )
    return exact if header_grid.matches(exact, tolerance_mm=1e-3) else header_grid


def _default_labels_name(folder: Path) -> str:
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"labels{suffix}").exists():
            return f"labels{suffix}"
    return "labels.nii.gz"


def _check_label_values(label_image: np.ndarray, document: StructuresDocument) -> None:
    if np.issubdtype(label_image.dtype, np.floating):
        if not np.all(np.equal(np.mod(label_image, 1), 0)):
            raise StructureError("label image has non-integer values", "save labels as an integer image")
    present = {int(v) for v in np.unique(label_image)} - {0}
    named = {e.label for e in document.structures if e.label is not None}
    unnamed = sorted(present - named)
    if unnamed:
        raise StructureError(
            f"label image has value{'s' if len(unnamed) > 1 else ''} {', '.join(map(str, unnamed[:5]))} "
            f"that {STRUCTURES_FILE} does not name",
            "add an entry with that label (name, role, tissue) or clear those voxels",
        )


def _structure_mask(folder: Path, grid: Grid, entry: StructureEntry, label_image: np.ndarray | None) -> np.ndarray:
    if entry.file is not None:
        mask, mask_grid = read_image(folder / entry.file, f"mask of {entry.name}")
        grid.require_match(mask_grid, f"mask {entry.file}")
        values = set(np.unique(mask).tolist())
        if not values <= {0, 1}:
            raise StructureError(f"mask {entry.file} has values other than 0 and 1", "save it as a binary mask")
        return mask.astype(bool)
    if entry.label is None:
        raise StructureError(f"structure {entry.name!r} has neither 'label' nor 'file'", "give one of them")
    if label_image is None:
        raise StructureError(f"structure {entry.name!r} has a label but there is no label image", "add labels.nii.gz")
    return label_image == entry.label


def save_patient(patient: Patient, path: str | os.PathLike[str]) -> Path:
    """Write ``patient`` as a patient folder, atomically (the folder appears only when complete)."""
    path = Path(path)
    document: dict[str, Any] = {
        "image": "ct.nii.gz" if patient.modality.upper() == "CT" else "image.nii.gz",
        "modality": patient.modality,
        "grid": {
            "shape_kji": list(patient.grid.shape),
            "spacing_mm": [float(v) for v in patient.grid.spacing_mm],
            "origin_mm": [float(v) for v in patient.grid.origin_mm],
            "direction": [float(v) for v in patient.grid.direction.reshape(-1)],
        },
        "background_tissue": patient.background_tissue,
    }
    with atomic_directory(path) as tmp:
        write_image(patient.image, patient.grid, tmp / document["image"])
        entries = []
        overlap = bool(patient.overlapping_pairs())
        if not overlap:
            labels, names = patient.label_image()
            write_image(labels, patient.grid, tmp / "labels.nii.gz")
            document["labels"] = "labels.nii.gz"
            label_of = {name: value for value, name in names.items()}
        else:
            (tmp / "masks").mkdir()
        for structure in patient.structures.values():
            entry: dict[str, Any] = {
                "name": structure.name,
                "role": structure.role.value,
                "tissue": structure.tissue,
            }
            if overlap:
                entry["file"] = f"masks/{structure.name}.nii.gz"
                write_image(structure.mask.astype(np.uint8), patient.grid, tmp / entry["file"])
            else:
                entry["label"] = int(label_of[structure.name])
            if structure.code is not None:
                entry["code"] = structure.code.to_dict()
            entry["color_rgb"] = [int(c) for c in structure.color_rgb]
            entries.append(entry)
        document["structures"] = entries
        if patient.label_maps:
            (tmp / "maps").mkdir()
            document["label_maps"] = []
            for name, (values, names) in patient.label_maps.items():
                rel = f"maps/{name}.nii.gz"
                write_image(values, patient.grid, tmp / rel)
                document["label_maps"].append(
                    {"name": name, "file": rel, "labels": {int(k): v for k, v in names.items()}}
                )
        if patient.trees:
            (tmp / "trees").mkdir()
            document["trees"] = []
            for name, tree in patient.trees.items():
                rel = f"trees/{name}.json"
                (tmp / rel).write_text(json.dumps(tree.to_dict()), encoding="utf-8")
                document["trees"].append({"name": name, "file": rel})
        if patient.metadata:
            document["metadata"] = patient.metadata
        (tmp / STRUCTURES_FILE).write_text(
            yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
    return path


def is_patient_folder(path: str | os.PathLike[str]) -> bool:
    path = Path(path)
    return path.is_dir() and (path / STRUCTURES_FILE).exists()


def load_image_as_patient(path: str | os.PathLike[str]) -> Patient:
    """A bare image file as a patient with no structures (for ``insitu info IMAGE``)."""
    if image_suffix(path) is None:
        raise InputFileError(
            f"{path} is neither a patient folder nor an image",
            "give a folder with structures.yaml or an image file",
        )
    image, grid = read_image(path)
    return Patient(grid=grid, image=image)
