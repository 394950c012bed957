"""Figure of one ablation step: the zone and peak temperature on three CT slices through a point, and the
generator's curves (power, impedance, tip temperature) over time. PNG, written atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from insitu.errors import GridError
from insitu.io.atomic import atomic_file
from insitu.patient.patient import Patient

SOFT_TISSUE_WINDOW = (40.0, 400.0)  # level, width (HU)
HEAT_RANGE_C = (40.0, 100.0)  # colour scale of the peak temperature overlay


def _window(image: np.ndarray, level: float, width: float) -> np.ndarray:
    return np.clip((image.astype(np.float32) - (level - width / 2)) / width, 0.0, 1.0)


def render_ablation(
    patient: Patient,
    path: str | os.PathLike[str],
    zone: np.ndarray,
    peak_temperature_c: np.ndarray,
    center_mm: Sequence[float],
    target: str | None = None,
    curves: Mapping[str, Sequence[float]] | None = None,
    title: str | None = None,
    half_width_mm: float = 45.0,
) -> Path:
    """Axial, coronal and sagittal slices through ``center_mm`` (±``half_width_mm``): CT, peak temperature above
    40 °C, the ablation zone's outline (white) and the target's (yellow); a fourth panel with the generator curves."""
    grid = patient.grid
    if not grid.is_axis_aligned:
        raise GridError("ablation figures need an axis-aligned grid", "resample the patient onto an axis-aligned grid")
    grid.require_array(zone, "ablation zone")
    grid.require_array(peak_temperature_c, "peak temperature")
    k, j, i = grid.world_to_kji(center_mm)
    z, y, x = grid.axis_coordinates_mm()
    sx, sy, sz = grid.spacing_mm
    ct = _window(patient.image, *SOFT_TISSUE_WINDOW)
    heat = np.ma.masked_less(peak_temperature_c, HEAT_RANGE_C[0])
    target_mask = patient.structure(target).mask if target else np.zeros(grid.shape, bool)
    views = [
        ("axial", (k, slice(None), slice(None)), (x, y), (sx, sy), ("x (mm, L→)", "y (mm, P↓)"), f"z = {z[k]:.0f} mm"),
        ("coronal", (slice(None), j, slice(None)), (x, z), (sx, sz), ("x (mm, L→)", "z (mm, S↑)"), f"y = {y[j]:.0f}"),
        ("sagittal", (slice(None), slice(None), i), (y, z), (sy, sz), ("y (mm, P→)", "z (mm, S↑)"), f"x = {x[i]:.0f}"),
    ]
    centre = {"axial": (center_mm[0], center_mm[1]), "coronal": (center_mm[0], center_mm[2])}
    centre["sagittal"] = (center_mm[1], center_mm[2])
    n_panels = 4 if curves else 3
    fig, axes = plt.subplots(1, n_panels, figsize=(5.2 * n_panels, 5.0))
    image = None
    for ax, (name, index, (u, v), (du, dv), (xl, yl), where) in zip(axes[:3], views, strict=True):
        extent = (u[0] - du / 2, u[-1] + du / 2, v[0] - dv / 2, v[-1] + dv / 2)
        ax.imshow(ct[index], cmap="gray", extent=extent, origin="lower", interpolation="nearest")
        image = ax.imshow(
            heat[index], cmap="inferno", vmin=HEAT_RANGE_C[0], vmax=HEAT_RANGE_C[1], alpha=0.55, extent=extent,
            origin="lower", interpolation="nearest",
        )  # fmt: skip
        for mask, colour in ((zone, "white"), (target_mask, "gold")):
            section = mask[index].astype(float)
            if section.any():
                ax.contour(u, v, section, levels=[0.5], colors=colour, linewidths=1.4)
        cu, cv = centre[name]
        ax.set_xlim(cu - half_width_mm, cu + half_width_mm)
        ax.set_ylim(cv - half_width_mm, cv + half_width_mm)
        if name == "axial":
            ax.invert_yaxis()  # anterior up, as radiologists read it
        ax.set_title(f"{name} — {where}")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    if image is not None:
        fig.colorbar(image, ax=axes[2], fraction=0.046, pad=0.04, label="peak temperature (°C)")
    handles = [Line2D([], [], color="white", label="ablation zone"), Line2D([], [], color="gold", label="target")]
    axes[0].legend(handles=handles, loc="lower left", fontsize=8, facecolor="0.3", labelcolor="white")
    if curves:
        _generator_panel(axes[3], curves)
    fig.suptitle(title or "insitu ablation", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def _generator_panel(ax, curves: Mapping[str, Sequence[float]]) -> None:
    """Power (W) and impedance (Ω) against time, the tip temperature (°C) on a third axis when measured."""
    t = np.asarray(curves["time_s"], dtype=float) / 60.0
    ax.step(t, curves["power_w"], where="post", color="tab:red", label="power (W)")
    ax.set_xlabel("time (min)")
    ax.set_ylabel("power (W)", color="tab:red")
    twin = ax.twinx()
    twin.plot(t, curves["impedance_ohm"], color="tab:blue", label="impedance (Ω)")
    twin.set_ylabel("impedance (Ω)", color="tab:blue")
    ax.set_title("generator")
    ax.grid(alpha=0.3)
