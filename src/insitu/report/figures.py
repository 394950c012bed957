"""Figures: orthogonal CT slices with structure overlays, and a projection of the vessel trees.

Radiological display convention: axial and coronal views show the patient's right on the image's
left; axial views show anterior at the top; coronal and sagittal views show superior at the top.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from insitu.errors import GridError
from insitu.io.atomic import atomic_file
from insitu.patient.patient import Patient
from insitu.patient.structure import Role

SOFT_TISSUE_WINDOW = (40.0, 400.0)  # level, width (HU): the abdominal soft-tissue window


def _window(image: np.ndarray, level: float, width: float) -> np.ndarray:
    return np.clip((image.astype(np.float32) - (level - width / 2.0)) / width, 0.0, 1.0)


def _overlay_structures(patient: Patient, names: Sequence[str] | None) -> list[str]:
    if names is not None:
        return [n for n in names if n in patient.structures]
    wanted = (Role.TARGET, Role.VESSEL, Role.OAR)
    skip = {"skin", "diaphragm"}
    return [s.name for s in patient.structures.values() if s.role in wanted and s.name not in skip and not s.is_empty]


def render_orthogonal_slices(
    patient: Patient,
    path: str | os.PathLike[str],
    center_mm: Sequence[float] | None = None,
    structures: Sequence[str] | None = None,
    title: str | None = None,
    window: tuple[float, float] = SOFT_TISSUE_WINDOW,
) -> Path:
    """Axial, coronal and sagittal CT slices through ``center_mm`` (default: first target's centroid)
    with translucent structure overlays, plus a coronal projection of the vessel trees; PNG, atomic."""
    grid = patient.grid
    if not grid.is_axis_aligned:
        raise GridError(
            "slice figures need an axis-aligned grid",
            "resample the patient onto an axis-aligned grid",
        )
    if center_mm is None:
        targets = [t for t in patient.targets if not t.is_empty]
        center_mm = targets[0].centroid_mm if targets else grid.index_to_world(np.array(grid.size_ijk) / 2.0 - 0.5)
    k, j, i = grid.world_to_kji(center_mm)
    names = _overlay_structures(patient, structures)
    colors = [np.array(patient.structures[n].color_rgb) / 255.0 for n in names]
    labels = np.zeros(grid.shape, dtype=np.uint8)
    for value, name in enumerate(names, start=1):
        labels[patient.structures[name].mask] = value
    cmap = ListedColormap([(0, 0, 0, 0)] + [(*c, 0.45) for c in colors])

    sx, sy, sz = grid.spacing_mm
    z, y, x = grid.axis_coordinates_mm()
    ext_axial = (x[0] - sx / 2, x[-1] + sx / 2, y[-1] + sy / 2, y[0] - sy / 2)
    ext_coronal = (x[0] - sx / 2, x[-1] + sx / 2, z[0] - sz / 2, z[-1] + sz / 2)
    ext_sagittal = (y[0] - sy / 2, y[-1] + sy / 2, z[0] - sz / 2, z[-1] + sz / 2)
    ct = _window(patient.image, *window)
    views = [
        (
            "axial",
            ct[k],
            labels[k],
            ext_axial,
            "x (mm, L→)",
            "y (mm, P↓)",
            f"z = {z[k]:.0f} mm",
            "upper",
        ),
        (
            "coronal",
            ct[:, j, :],
            labels[:, j, :],
            ext_coronal,
            "x (mm, L→)",
            "z (mm, S↑)",
            f"y = {y[j]:.0f} mm",
            "lower",
        ),
        (
            "sagittal",
            ct[:, :, i],
            labels[:, :, i],
            ext_sagittal,
            "y (mm, P→)",
            "z (mm, S↑)",
            f"x = {x[i]:.0f} mm",
            "lower",
        ),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(20, 5.0), gridspec_kw={"width_ratios": [1.36, 1.36, 1.0, 1.36]})
    for ax, (name, img, lab, extent, xl, yl, where, origin) in zip(axes[:3], views, strict=True):
        ax.imshow(img, cmap="gray", extent=extent, origin=origin, interpolation="nearest")
        ax.imshow(
            lab,
            cmap=cmap,
            vmin=0,
            vmax=len(names),
            extent=extent,
            origin=origin,
            interpolation="nearest",
        )
        ax.set_title(f"{name} — {where}")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        if origin == "lower":
            ax.set_ylim(extent[2], extent[3])
    _vessel_projection(axes[3], patient, ext_coronal)
    handles = [
        Patch(facecolor=c, edgecolor="none", label=n.replace("_", " ")) for n, c in zip(names, colors, strict=True)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 9), frameon=False, fontsize=9)
    fig.suptitle(title or "insitu", fontsize=13)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def _vessel_projection(ax, patient: Patient, extent) -> None:
    """Coronal maximum-intensity projection of the liver (grey) and its vessel trees (coloured)."""
    ax.set_facecolor("black")
    if "liver" in patient.structures:
        liver = patient.structures["liver"].mask.any(axis=1).astype(float)
        ax.imshow(
            liver,
            cmap="gray",
            vmin=0,
            vmax=3,
            extent=extent,
            origin="lower",
            interpolation="nearest",
        )
    kind_colors = {
        "portal_vein": (0.65, 0.35, 1.0),
        "hepatic_artery": (1.0, 0.25, 0.25),
        "hepatic_vein": (0.3, 0.6, 1.0),
    }
    draw_order = {"hepatic_vein": 0, "portal_vein": 1, "hepatic_artery": 2}  # the thin artery on top
    # branches thinner than half a voxel (the planning-scale artery's arterioles) are not in the image either
    min_radius_mm = 0.5 * float(min(patient.grid.spacing_mm))
    for tree in sorted(patient.trees.values(), key=lambda t: draw_order.get(str(t.kind), 3)):
        color = kind_colors.get(str(tree.kind), (0.9, 0.9, 0.9))
        pts = tree.points_mm
        shown = np.flatnonzero((tree.parent >= 0) & (tree.radius_mm >= min_radius_mm))
        segments = np.stack([pts[tree.parent[shown]][:, [0, 2]], pts[shown][:, [0, 2]]], axis=1)
        widths = np.maximum(0.3, 0.9 * tree.radius_mm[shown]) * (2.0 if str(tree.kind) == "hepatic_artery" else 1.0)
        ax.add_collection(LineCollection(segments, colors=[color], linewidths=widths, capstyle="round"))
    handles = [Patch(facecolor=c, label=k.replace("_", " ")) for k, c in kind_colors.items()]
    ax.legend(
        handles=handles,
        loc="upper right",
        fontsize=8,
        facecolor="black",
        labelcolor="white",
        frameon=False,
    )
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_title("vessel trees (coronal projection)")
    ax.set_xlabel("x (mm, L→)")
    ax.set_ylabel("z (mm, S↑)")
