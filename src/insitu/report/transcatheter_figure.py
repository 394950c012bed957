"""Figure of one transcatheter step: where the arterial inflow fell (a coronal projection over the liver with the
artery's visible branches, and the axial slice through the tumour) and the plasma drug curve. PNG, atomic."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection

from insitu.errors import PlanError
from insitu.io.atomic import atomic_file
from insitu.patient.patient import Patient
from insitu.simulation import StepResult

TREE_MIN_RADIUS_MM = 0.3  # arterial branches drawn (thinner ones would fill the panel)


def render_transcatheter(
    result: StepResult, patient: Patient, targets: np.ndarray, path: str | os.PathLike[str], title: str | None = None
) -> Path:
    """Three panels: the coronal maximum of the arterial inflow drop (0–1) with the artery's branches of at least
    ``TREE_MIN_RADIUS_MM``, the liver's (grey) and the targets' (cyan) outlines; the axial slice through the targets'
    centre; the plasma curve."""
    drop = result.fields.get("arterial_inflow_drop")
    if drop is None:
        raise PlanError(
            f"step {result.label!r} has no arterial inflow field", "render an embolization step (tae, tace, tace_pvce)"
        )
    grid = patient.grid
    targets = np.asarray(targets, dtype=bool)
    (x0, y0, z0), (x1, y1, z1) = (np.asarray(b, float) for b in grid.bounds_mm())
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1.35, 1.0, 0.9]})
    style = {"cmap": "inferno", "vmin": 0.0, "vmax": 1.0, "origin": "lower", "interpolation": "nearest"}

    liver = patient.structures["liver"].mask.astype(bool) if "liver" in patient.structures else None
    ax = axes[0]
    image = ax.imshow(drop.max(axis=1), extent=(x0, x1, z0, z1), **style)
    if liver is not None:
        ax.contour(liver.any(axis=1), levels=[0.5], colors="0.6", linewidths=0.8, extent=(x0, x1, z0, z1))
    ax.contour(targets.any(axis=1), levels=[0.5], colors="cyan", linewidths=1.0, extent=(x0, x1, z0, z1))
    trees = [t for t in patient.trees.values() if str(t.kind) == "hepatic_artery"]
    if trees:
        tree = trees[0]
        shown = np.flatnonzero((tree.parent >= 0) & (tree.radius_mm >= TREE_MIN_RADIUS_MM))
        pts = tree.points_mm
        segments = np.stack([pts[tree.parent[shown]][:, [0, 2]], pts[shown][:, [0, 2]]], axis=1)
        widths = 0.3 + 1.2 * tree.radius_mm[shown]
        ax.add_collection(LineCollection(segments, colors="white", linewidths=widths, alpha=0.6))
        node = int(result.metrics.get("catheter_tip_node", -1))
        if 0 <= node < tree.n_nodes:
            ax.plot(*pts[node][[0, 2]], marker="v", color="lime", markersize=9, label="catheter tip")
            ax.legend(loc="upper right", fontsize=8, facecolor="black", labelcolor="white", frameon=False)
    ax.set_xlim(x0, x1)
    ax.set_ylim(z0, z1)
    ax.set_title("arterial inflow drop, coronal maximum")
    ax.set_xlabel("x (mm, L→)")
    ax.set_ylabel("z (mm, S↑)")
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of arterial inflow lost")

    ax = axes[1]
    centre = np.argwhere(targets).mean(axis=0) if targets.any() else np.array(grid.shape) / 2.0
    k = int(np.rint(centre[0]))
    ax.imshow(drop[k], extent=(x0, x1, y0, y1), **style)
    if liver is not None:
        ax.contour(liver[k], levels=[0.5], colors="0.6", linewidths=0.8, extent=(x0, x1, y0, y1))
    ax.contour(targets[k], levels=[0.5], colors="cyan", linewidths=1.2, extent=(x0, x1, y0, y1))
    ax.set_title(f"axial slice z = {grid.index_to_world(np.array([0.0, 0.0, k]))[2]:.0f} mm (tumour: cyan)")
    ax.set_xlabel("x (mm, L→)")
    ax.set_ylabel("y (mm, P↑)")

    ax = axes[2]
    if "plasma_ng_ml" in result.curves:
        ax.plot(result.curves["plasma_time_h"], result.curves["plasma_ng_ml"], color="tab:red")
        ax.set_xlabel("time after the injection (h)")
        ax.set_ylabel("plasma concentration (ng/mL)")
        cmax = result.metrics.get("plasma_cmax_ng_ml", float("nan"))
        ax.set_title(f"plasma drug: Cmax {cmax:.3g} ng/mL")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.grid(alpha=0.3)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "no drug in this step", ha="center", va="center")
    fig.suptitle(title or result.label)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
