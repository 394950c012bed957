"""Figure of one microwave ablation step: the antenna's SAR pattern in the (r, z) half-plane (mirrored about the
axis) beside the peak temperature and the ablation zone on the plane through the antenna's axis, on the same axes
(z from the tip toward the feed). PNG, written atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from insitu.grid import Grid
from insitu.io.atomic import atomic_file
from insitu.simulation import StepResult

HEAT_RANGE_C = (37.0, 110.0)
SAR_DECADES = 3.0  # the SAR panel spans this many decades below its peak


def _plane_samples(grid: Grid, volume: np.ndarray, tip_mm, feed_dir, across, s_mm, z_mm) -> np.ndarray:
    """Nearest-voxel samples of ``volume`` at tip + z·feed + s·across (NaN outside the grid); shape (z, s)."""
    points = (
        np.asarray(tip_mm, float)[None, None, :]
        + np.asarray(z_mm)[:, None, None] * feed_dir[None, None, :]
        + np.asarray(s_mm)[None, :, None] * across[None, None, :]
    )
    ijk = np.rint(grid.world_to_index(points.reshape(-1, 3))).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(grid.shape[::-1])), axis=1)
    out = np.full(ijk.shape[0], np.nan)
    i, j, k = ijk[inside].T
    out[inside] = volume[k, j, i]
    return out.reshape(len(z_mm), len(s_mm))


def render_mwa(
    result: StepResult,
    grid: Grid,
    path: str | os.PathLike[str],
    tip_mm: Sequence[float],
    direction: Sequence[float],
    title: str | None = None,
) -> Path:
    """Two panels: log₁₀ SAR (W/kg per generator W) of the step's first field solve, and the peak temperature with
    the zone's outline (white) on the plane through the axis (``direction``: the insertion direction, entry → tip)."""
    from insitu.therapies.mwa import sar_pattern

    r, z, sar = sar_pattern(result)
    feed = -np.asarray(direction, float) / np.linalg.norm(direction)
    helper = np.eye(3)[int(np.argmin(np.abs(feed)))]
    across = np.cross(feed, helper)
    across /= np.linalg.norm(across)
    s_full = np.concatenate([-r[::-1], r])
    mirrored = np.concatenate([sar[::-1, :], sar], axis=0).T  # (z, s)
    peak = max(float(sar.max()), 1e-30)
    log_sar = np.log10(np.maximum(mirrored, peak * 10.0**-SAR_DECADES))

    step_mm = min(grid.spacing_mm) / 2.0
    s_mm = np.arange(s_full[0], s_full[-1] + step_mm, step_mm)
    z_mm = np.arange(z[0], z[-1] + step_mm, step_mm)
    heat = _plane_samples(grid, result.fields["max_temperature_c"], tip_mm, feed, across, s_mm, z_mm)
    zone = _plane_samples(grid, result.fields["ablation_zone"].astype(np.float32), tip_mm, feed, across, s_mm, z_mm)

    fig, axes = plt.subplots(1, 2, figsize=(10.5, 5.6), sharey=True)
    im = axes[0].pcolormesh(s_full, z, log_sar, shading="nearest", cmap="viridis")
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.04, label="log₁₀ SAR (W/kg per W)")
    axes[0].set_title("SAR pattern (first field solve)")
    hot = axes[1].pcolormesh(s_mm, z_mm, np.ma.masked_invalid(heat), shading="nearest", cmap="inferno",
                             vmin=HEAT_RANGE_C[0], vmax=HEAT_RANGE_C[1])  # fmt: skip
    fig.colorbar(hot, ax=axes[1], fraction=0.046, pad=0.04, label="peak temperature (°C)")
    if np.nansum(zone) > 0:
        axes[1].contour(s_mm, z_mm, np.nan_to_num(zone), levels=[0.5], colors="white", linewidths=1.4)
    m = result.metrics
    axes[1].set_title(f"zone {m.get('long_axis_mm', 0):.0f} × {m.get('short_axis_mm', 0):.0f} mm")
    for ax in axes:
        ax.plot([0.0, 0.0], [0.0, z[-1]], color="0.85", linewidth=2.0)  # the antenna from its tip to the feed
        ax.set_xlabel("distance across the antenna (mm)")
        ax.set_aspect("equal")
    axes[0].set_ylabel("z from the tip toward the feed (mm)")
    fig.suptitle(title or "insitu microwave ablation", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
