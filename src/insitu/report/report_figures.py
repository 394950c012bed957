"""Figures the HTML report embeds, rendered in memory as PNG bytes (matplotlib, Agg): slices through a target with
the zone, the peak temperature and the applicator paths; small line plots of a step's curves; temperature–volume
histograms. Nothing here writes files: the report base64-embeds the bytes so it stays one self-contained page.

Display convention (as report/figures.py): axial views show anterior at the top, coronal and sagittal views show
superior at the top; the patient's right is on the image's left (x grows to the left in LPS).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from insitu.errors import GridError
from insitu.patient.patient import Patient

SOFT_TISSUE_WINDOW = (40.0, 400.0)  # level, width (HU): the abdominal soft-tissue window
HEAT_RANGE_C = (40.0, 100.0)  # colour scale of the peak-temperature overlay (below 40 °C: not drawn)
MIN_HALF_WIDTH_MM = 20.0  # slices show at least ±20 mm around the target's centre
X_AXIS_CURVES = ("time_s", "plasma_time_h", "flr_weeks")  # curves that are abscissae of the others
SKIPPED_CURVE_PREFIXES = ("sar_",)  # the MWA SAR pattern is a flattened 2-D map, not a curve
MAX_CURVE_PANELS = 9
DPI = 80

Segment = tuple[Sequence[float], Sequence[float]]  # (entry_mm, tip_mm), LPS


def figure_png(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _window(image: np.ndarray, level: float, width: float) -> np.ndarray:
    return np.clip((image.astype(np.float32) - (level - width / 2.0)) / width, 0.0, 1.0)


def half_width_for_mm(masks: Sequence[np.ndarray], patient: Patient, center_mm: Sequence[float]) -> float:
    """Half the side of the square each slice shows: the farthest voxel of ``masks`` from the centre plus 10 mm."""
    grid = patient.grid
    reach = MIN_HALF_WIDTH_MM - 10.0
    for mask in masks:
        kji = np.argwhere(mask)
        if len(kji):
            points = grid.index_to_world(kji[:, ::-1].astype(float))
            reach = max(reach, float(np.abs(points - np.asarray(center_mm)).max()))
    return reach + 10.0


def slices_png(
    patient: Patient,
    center_mm: Sequence[float],
    target_mask: np.ndarray,
    zone: np.ndarray | None = None,
    peak_temperature_c: np.ndarray | None = None,
    paths_mm: Sequence[Segment] = (),
    margin_point_mm: Sequence[float] | None = None,
    title: str = "",
) -> bytes:
    """Axial, coronal and sagittal slices through ``center_mm``: CT, peak temperature ≥ 40 °C, the target's outline
    (gold), the zone's (white), each applicator path projected onto the view (cyan, entry ○ → tip ×) and the point
    of the minimal margin (magenta ◆)."""
    grid = patient.grid
    if not grid.is_axis_aligned:
        raise GridError("slice figures need an axis-aligned grid", "resample the patient onto an axis-aligned grid")
    k, j, i = grid.world_to_kji(center_mm)
    z, y, x = grid.axis_coordinates_mm()
    sx, sy, sz = grid.spacing_mm
    ct = _window(patient.image, *SOFT_TISSUE_WINDOW)
    heat = None if peak_temperature_c is None else np.ma.masked_less(peak_temperature_c, HEAT_RANGE_C[0])
    masks = [target_mask] + ([zone] if zone is not None else [])
    half = half_width_for_mm(masks, patient, center_mm)
    every = slice(None)
    views = [  # name, slice, (u, v) axes, spacing, world axes shown (0 = x, 1 = y, 2 = z), labels, position
        ("axial", (k, every, every), (x, y), (sx, sy), (0, 1), ("x (mm, L→)", "y (mm, P↓)"), f"z {z[k]:.0f}"),
        ("coronal", (every, j, every), (x, z), (sx, sz), (0, 2), ("x (mm, L→)", "z (mm, S↑)"), f"y {y[j]:.0f}"),
        ("sagittal", (every, every, i), (y, z), (sy, sz), (1, 2), ("y (mm, P→)", "z (mm, S↑)"), f"x {x[i]:.0f}"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.8), layout="constrained")
    image = None
    for ax, (name, index, (u, v), (du, dv), (a, b), (xl, yl), where) in zip(axes, views, strict=True):
        extent = (u[0] - du / 2, u[-1] + du / 2, v[0] - dv / 2, v[-1] + dv / 2)
        ax.imshow(ct[index], cmap="gray", extent=extent, origin="lower", interpolation="nearest")
        if heat is not None:
            image = ax.imshow(
                heat[index], cmap="inferno", vmin=HEAT_RANGE_C[0], vmax=HEAT_RANGE_C[1], alpha=0.55, extent=extent,
                origin="lower", interpolation="nearest",
            )  # fmt: skip
        for mask, colour in ((zone, "white"), (target_mask, "gold")):
            if mask is None:
                continue
            section = np.asarray(mask[index], dtype=float)
            if section.any() and min(section.shape) > 1:
                ax.contour(u, v, section, levels=[0.5], colors=colour, linewidths=1.4)
        for entry, tip in paths_mm:
            ax.plot([entry[a], tip[a]], [entry[b], tip[b]], color="cyan", linewidth=1.6)
            ax.plot(entry[a], entry[b], "o", color="cyan", markersize=5, markerfacecolor="none")
            ax.plot(tip[a], tip[b], "x", color="cyan", markersize=7)
        if margin_point_mm is not None:
            ax.plot(margin_point_mm[a], margin_point_mm[b], "D", color="magenta", markersize=5)
        ax.set_xlim(center_mm[a] - half, center_mm[a] + half)
        ax.set_ylim(center_mm[b] - half, center_mm[b] + half)
        if name == "axial":
            ax.invert_yaxis()  # anterior up, as radiologists read it
        if name in ("axial", "coronal"):
            ax.invert_xaxis()  # the patient's right on the image's left
        ax.set_title(f"{name} — {where} mm", fontsize=10)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    if image is not None:
        fig.colorbar(image, ax=axes[2], fraction=0.046, pad=0.04, label="peak temperature (°C)")
    handles = [
        Line2D([], [], color="gold", label="target"),
        Line2D([], [], color="white", label="ablation zone"),
        Line2D([], [], color="cyan", label="applicator path"),
        Line2D([], [], color="magenta", marker="D", linestyle="none", label="minimal margin (projected)"),
    ]
    axes[0].legend(handles=handles, loc="lower left", fontsize=7, facecolor="0.3", labelcolor="white")
    fig.suptitle(title, fontsize=12)
    return figure_png(fig)


def curve_pairs(curves: Mapping[str, Sequence[float]]) -> list[tuple[str | None, str]]:
    """(abscissa, ordinate) names of the curves worth a line plot: each ordinate against the abscissa of the same
    length that shares its prefix (``plasma_time_h`` for ``plasma_ng_ml``), else ``time_s``, else its sample index."""
    pairs: list[tuple[str | None, str]] = []
    for name, values in curves.items():
        if name in X_AXIS_CURVES or name.startswith(SKIPPED_CURVE_PREFIXES) or len(values) < 2:
            continue
        same_length = [a for a in X_AXIS_CURVES if a in curves and len(curves[a]) == len(values)]
        prefix = name.split("_")[0]
        chosen = next((a for a in same_length if a.split("_")[0] == prefix), None)
        if chosen is None:
            chosen = "time_s" if "time_s" in same_length else None
        pairs.append((chosen, name))
    return pairs[:MAX_CURVE_PANELS]


def _axis_label(name: str | None) -> str:
    if name is None:
        return "sample"
    if name == "time_s":
        return "time (min)"
    return name.replace("_", " ")


def curves_png(curves: Mapping[str, Sequence[float]], title: str = "") -> bytes | None:
    """Small multiples: one line plot per curve (time in minutes); None when the step has no plottable curve."""
    pairs = curve_pairs(curves)
    if not pairs:
        return None
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.6 * rows), squeeze=False, layout="constrained")
    for ax, (x_name, y_name) in zip(axes.ravel(), pairs, strict=False):
        values = np.asarray(curves[y_name], dtype=float)
        if x_name is None:
            abscissa = np.arange(values.size, dtype=float)
        else:
            abscissa = np.asarray(curves[x_name], dtype=float) / (60.0 if x_name == "time_s" else 1.0)
        ax.plot(abscissa, values, color="tab:red" if "power" in y_name else "tab:blue", linewidth=1.2)
        ax.set_title(y_name.replace("_", " "), fontsize=9)
        ax.set_xlabel(_axis_label(x_name), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(pairs) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    return figure_png(fig)


def histograms_png(
    histograms: Mapping[str, Mapping[str, Mapping]], targets: Sequence[str], quantities: Sequence[str], title: str = ""
) -> bytes | None:
    """Cumulative volume histograms (summary.json's ``thresholds``/``fraction``) of each quantity, one panel each:
    targets bold, other structures thin. None when no structure has any of the quantities."""
    present = [q for q in quantities if any(q in by for by in histograms.values())]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(5.2 * len(present), 3.6), squeeze=False, layout="constrained")
    for ax, quantity in zip(axes[0], present, strict=True):
        unit = ""
        for name, by in histograms.items():
            histogram = by.get(quantity)
            if histogram is None:
                continue
            unit = histogram.get("unit", "")
            thresholds = np.asarray([np.nan if v is None else v for v in histogram["thresholds"]], dtype=float)
            fraction = np.asarray(histogram["fraction"], dtype=float) * 100.0
            bold = name in targets
            ax.plot(thresholds, fraction, linewidth=2.2 if bold else 1.0, label=name.replace("_", " "))
        if quantity.startswith(("arrhenius", "cem43", "chemical")):
            ax.set_xscale("log")
        if histogram_direction(histograms, quantity) == "at_most":
            ax.invert_xaxis()  # colder to the right: the curve falls as the threshold gets harsher
        ax.set_xlabel(f"{quantity.replace('_', ' ')} ({unit})" if unit else quantity.replace("_", " "))
        ax.set_ylabel("volume reaching it (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    return figure_png(fig)


def histogram_direction(histograms: Mapping[str, Mapping[str, Mapping]], quantity: str) -> str:
    """``at_least`` (heat, damage) or ``at_most`` (cold) for ``quantity``, as summary.json records it."""
    for by in histograms.values():
        if quantity in by:
            return str(by[quantity].get("direction", "at_least"))
    return "at_least"
