"""Reading and writing 3-D images with SimpleITK (NIfTI, NRRD, MHA), with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from insitu.errors import GridError, InputFileError
from insitu.grid import Grid
from insitu.io.atomic import atomic_file
from insitu.io.nifti_check import verify_nifti

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def image_suffix(path: str | os.PathLike[str]) -> str | None:
    """The supported image suffix of ``path`` (``.nii.gz`` counts as one), or None."""
    name = Path(path).name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)


def read_image(path: str | os.PathLike[str], what: str = "image") -> tuple[np.ndarray, Grid]:
    """Read a 3-D image: the ``[k, j, i]`` array and its grid. Errors name the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{what} file {path} does not exist", "check the path or the patient folder")
    if not path.is_file():
        raise InputFileError(f"{what} {path} is not a file", "give an image file (.nii.gz, .nrrd, .mha)")
    if image_suffix(path) is None:
        raise InputFileError(
            f"{what} {path.name} is not a supported image format",
            f"convert it to one of {', '.join(IMAGE_SUFFIXES)}",
        )
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        spacing = reader.GetSpacing()
        origin = reader.GetOrigin()
        direction = reader.GetDirection()
        size = reader.GetSize()
    except RuntimeError:
        raise InputFileError(
            f"{what} {path.name} cannot be read (not an image, or its header is damaged)",
            "re-export the file",
        ) from None
    if len(size) != 3 and not (len(size) == 4 and size[3] == 1):
        raise InputFileError(f"{what} {path.name} has {len(size)} dimensions", "give a single 3-D volume")
    try:
        grid = Grid(
            shape=(size[2], size[1], size[0]),
            spacing_mm=spacing[:3],
            origin_mm=origin[:3],
            direction=np.asarray(direction, dtype=float).reshape(len(size), len(size))[:3, :3],
        )
    except GridError as exc:
        raise GridError(f"{what} {path.name}: {exc.problem}", exc.fix) from None
    if image_suffix(path) in (".nii.gz", ".nii"):
        verify_nifti(path, what)
    try:
        image = reader.Execute()
    except RuntimeError:
        raise InputFileError(
            f"{what} {path.name} is truncated or corrupt (its data could not be read)",
            "re-export or re-copy the file",
        ) from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputFileError(f"{what} {path.name} has several components per voxel", "give a scalar volume")
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 4:
        array = array[0]
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputFileError(f"{what} {path.name} has {bad} NaN or infinite voxels", "fix or re-export the image")
    return array, grid


def write_image(array: np.ndarray, grid: Grid, path: str | os.PathLike[str]) -> Path:
    """Write ``array`` on ``grid`` atomically (the format follows the suffix); returns the path."""
    path = Path(path)
    if image_suffix(path) is None:
        raise InputFileError(f"cannot write {path.name}", f"use one of {', '.join(IMAGE_SUFFIXES)}")
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise InputFileError(
            f"refusing to write {path.name}: {int(np.count_nonzero(~np.isfinite(array)))} voxels are NaN or infinite",
            "this is a bug in the step that produced the volume; please report it",
        )
    image = grid.to_sitk(array)
    with atomic_file(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return path
