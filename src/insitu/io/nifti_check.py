"""Checks ITK does not make on NIfTI files: complete data and finite values.

ITK's NIfTI reader zero-fills a truncated ``.nii.gz`` without an error and turns NaN voxels into 0,
so a damaged file would load as a plausible but wrong image. This module streams the data once
and raises a clear error instead.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from insitu.errors import InputFileError

_FLOAT_TYPES = {16: np.float32, 64: np.float64}
_CHUNK = 1 << 22


def verify_nifti(path: Path, what: str = "image") -> None:
    """Raise InputFileError when the NIfTI file's data is shorter than its header says or holds NaN/inf."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            header = handle.read(348)
            if len(header) < 348:
                raise InputFileError(
                    f"{what} {path.name} is truncated (incomplete header)",
                    "re-export or re-copy the file",
                )
            order = "<" if np.frombuffer(header[:4], "<i4")[0] == 348 else ">"
            dims = np.frombuffer(header[40:56], f"{order}i2")
            datatype = int(np.frombuffer(header[70:72], f"{order}i2")[0])
            bitpix = int(np.frombuffer(header[72:74], f"{order}i2")[0])
            vox_offset = int(np.frombuffer(header[108:112], f"{order}f4")[0])
            ndim = int(dims[0])
            if not 1 <= ndim <= 7 or bitpix <= 0:
                return  # not a header we understand: leave the verdict to ITK
            n_voxels = int(np.prod(dims[1 : ndim + 1].astype(np.int64)))
            handle.read(max(0, vox_offset - 348))
            remaining = n_voxels * bitpix // 8
            dtype = _FLOAT_TYPES.get(datatype)
            bad = 0
            while remaining > 0:
                chunk = handle.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                if dtype is not None:
                    usable = len(chunk) - len(chunk) % np.dtype(dtype).itemsize
                    values = np.frombuffer(chunk[:usable], np.dtype(dtype).newbyteorder(order))
                    bad += int(np.count_nonzero(~np.isfinite(values)))
    except (EOFError, zlib.error, gzip.BadGzipFile):
        raise InputFileError(
            f"{what} {path.name} is truncated or corrupt (compressed data ends early)",
            "re-export or re-copy the file",
        ) from None
    if remaining > 0:
        raise InputFileError(
            f"{what} {path.name} is truncated: {remaining} bytes of voxel data are missing",
            "re-export or re-copy the file",
        )
    if bad:
        raise InputFileError(f"{what} {path.name} has {bad} NaN or infinite voxels", "fix or re-export the image")
