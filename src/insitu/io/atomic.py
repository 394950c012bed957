"""Atomic outputs: everything is written to a temporary path beside the target and renamed at the end.

An interrupted or failed write therefore never leaves a half-written file or folder behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from insitu.errors import OutputError

# A folder holding one of these may be replaced by a new output of ours; anything else is kept.
_OUR_MARKERS = ("structures.yaml", "summary.json", ".insitu-output")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _normal_permissions(path: Path, directory: bool) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; give outputs the usual umask-based mode."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _prepare_parent(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create output folder {parent} ({exc.strerror or exc})",
            "choose a location you can write to",
        ) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {parent} is not writable", "choose a location you can write to")
    return parent


def _require_replaceable(path: Path) -> None:
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputError(f"{path} exists and is a file, not a folder", "choose another output path")
    entries = list(path.iterdir())
    if entries and not any((path / marker).exists() for marker in _OUR_MARKERS):
        raise OutputError(
            f"{path} exists and holds files that are not an insitu output",
            "choose an empty or new output folder",
        )


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path`` (an earlier insitu output is replaced)."""
    path = Path(path)
    parent = _prepare_parent(path)
    _require_replaceable(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    except OSError as exc:
        raise OutputError(
            f"cannot write in {parent} ({exc.strerror or exc})",
            "choose a location you can write to",
        ) from None
    try:
        yield tmp
        (tmp / ".insitu-output").touch()
        _normal_permissions(tmp, directory=True)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=parent))
            os.rename(path, old / "previous")
        os.rename(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path with the same suffixes; on success it replaces ``path``."""
    path = Path(path)
    parent = _prepare_parent(path)
    suffix = "".join(path.suffixes)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=suffix, dir=parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _normal_permissions(tmp, directory=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
