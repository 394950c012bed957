"""One self-contained HTML page for a results folder (``insitu simulate plan.yaml --out DIR``).

The page needs no network: CSS is inline, figures are base64-embedded PNGs, there is no script. It shows the plan
(table and YAML), warnings and each step's notes first, the cumulative evaluation per target (coverage, target +
margin coverage, signed minimal margin and where, healthy tissue lost, organs at risk), each step's metrics and
curves, slices through every target (CT, target and zone outlines, peak temperature, applicator paths) and
temperature–volume histograms. Numbers are printed as summary.json holds them, so the page and the file agree.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from insitu.errors import InputFileError
from insitu.io.atomic import atomic_file
from insitu.io.images import read_image
from insitu.patient.patient import Patient
from insitu.report.report_figures import curves_png, histograms_png, slices_png

SUMMARY = "summary.json"
REPORT = "report.html"
ZONE_FIELD = "ablation_zone"
PEAK_FIELD = "max_temperature_c"
FULL_MARGIN_COVERAGE = 0.95  # below this share of target + margin the report warns
HISTOGRAM_QUANTITIES = ("max_temperature_c", "min_temperature_c")
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
.warn{background:#fff3cd;border:2px solid #e0a800;padding:.6em 1em;border-radius:4px}
.warn li{margin:.2em 0}.ok{background:#e8f5e9;border:1px solid #66bb6a;padding:.5em 1em;border-radius:4px}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.8em;overflow-x:auto;font-size:.85em}
img{max-width:100%;border:1px solid #ddd;margin:.4em 0}.muted{color:#666;font-size:.9em}
"""


# ---------------------------------------------------------------------- reading the folder
def load_summary(results_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """summary.json of a results folder, checked for the parts the report needs; errors are one line."""
    folder = Path(results_dir)
    if not folder.is_dir():
        raise InputFileError(
            f"results folder {folder} does not exist", "give the folder written by `insitu simulate plan.yaml --out`"
        )
    path = folder / SUMMARY
    if not path.is_file():
        raise InputFileError(
            f"{path} is missing", f"run `insitu simulate plan.yaml --out {folder}` to write a complete results folder"
        )
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(
            f"{path} is truncated or not JSON ({str(exc).splitlines()[0]})",
            f"re-run `insitu simulate plan.yaml --out {folder}`",
        ) from None
    missing = [key for key in ("plan", "grid", "steps") if not isinstance(summary, dict) or key not in summary]
    if missing:
        raise InputFileError(
            f"{path} lacks {', '.join(missing)}", f"re-run `insitu simulate plan.yaml --out {folder}` with this insitu"
        )
    return summary


def _resolve_patient(summary: Mapping[str, Any]) -> Patient:
    from insitu.plan import plan_from_dict
    from insitu.simulation import resolve_patient

    return resolve_patient(plan_from_dict(summary["plan"], SUMMARY))


def _volume(folder: Path, name: str, patient: Patient) -> np.ndarray | None:
    path = folder / f"{name}.nii.gz"
    if not path.is_file():
        return None
    array, grid = read_image(path, what="result volume")
    if not grid.matches(patient.grid):
        raise InputFileError(
            f"{path.name} is on grid {grid.describe()}, the patient on {patient.grid.describe()}",
            "pass the patient the plan was simulated on (write_report(..., patient=...))",
        )
    return array


def _volumes(folder: Path, patient: Patient, n_steps: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The union of every step's zone and the peak temperature (final, else the hottest step's); None if absent."""
    zone = None
    peaks = []
    for n in range(1, n_steps + 1):
        step_zone = _volume(folder, f"step{n}_{ZONE_FIELD}", patient)
        if step_zone is not None:
            zone = step_zone > 0 if zone is None else zone | (step_zone > 0)
        step_peak = _volume(folder, f"step{n}_{PEAK_FIELD}", patient)
        if step_peak is not None:
            peaks.append(step_peak)
    peak = _volume(folder, f"final_{PEAK_FIELD}", patient)
    if peak is None and peaks:
        peak = np.maximum.reduce(peaks)
    return zone, peak


# ---------------------------------------------------------------------- HTML pieces
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    """A number exactly as summary.json holds it (``json.dumps``), other values as text."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "(" + ", ".join(_number(v) for v in value) + ")"
    return _esc(value)


def _fraction(value: Any) -> str:
    """A 0–1 fraction: the summary's number, then the percentage."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return _number(value)
    return f"{json.dumps(value)} ({100.0 * value:.1f} %)"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric_from: int = 1) -> str:
    """Cells are HTML already (escape before); columns from ``numeric_from`` are right-aligned."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if c >= numeric_from else ''}>{cell}</td>" for c, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _placement_text(placement: Mapping[str, Any]) -> str:
    if placement.get("auto"):
        return "auto (planner)"
    parts = [f"{key.removesuffix('_mm')} {_number(placement[key])} mm" for key in ("entry_mm", "tip_mm", "target_mm")]
    parts = [p for p, key in zip(parts, ("entry_mm", "tip_mm", "target_mm"), strict=True) if placement.get(key)]
    if placement.get("direction"):
        parts.append(f"direction {_number(placement['direction'])}")
    return "<br>".join(parts)


def applicator_paths_mm(plan: Mapping[str, Any]) -> list[tuple[list[float], list[float]]]:
    """(entry, tip) in LPS mm of every step whose placement has an entry point and a tip (or target)."""
    paths = []
    for step in plan.get("steps", []):
        placement = step.get("placement") or {}
        tip = placement.get("tip_mm") or placement.get("target_mm")
        if placement.get("entry_mm") and tip:
            paths.append((list(placement["entry_mm"]), list(tip)))
    return paths


def _plan_section(plan: Mapping[str, Any], plan_yaml: str) -> str:
    facts = [
        ("patient", _esc(plan.get("patient"))),
        ("targets", _esc(", ".join(plan.get("targets") or []) or "every target")),
        ("margin", f"{_number(plan.get('margin_mm'))} mm"),
        ("guidance", _esc(plan.get("guidance", "—"))),
        ("damage model", _esc(plan.get("damage_model", "—"))),
    ]
    rows = []
    for n, step in enumerate(plan.get("steps", []), start=1):
        protocol = "<br>".join(f"{_esc(k)} = {_number(v)}" for k, v in (step.get("protocol") or {}).items())
        rows.append(
            [
                str(n),
                _esc(step.get("label") or ""),
                _esc(step.get("therapy")),
                _esc(step.get("device") or "—"),
                _placement_text(step.get("placement") or {}),
                protocol,
            ]
        )
    return (
        "<h2>Plan</h2>"
        + _table(["plan", str(plan.get("name", ""))], facts, numeric_from=9)
        + _table(["step", "label", "therapy", "device", "placement (LPS)", "protocol"], rows, numeric_from=9)
        + f"<details><summary>plan.yaml</summary><pre>{_esc(plan_yaml)}</pre></details>"
    )


def warnings(summary: Mapping[str, Any]) -> list[str]:
    """What a reader must see first: every step's notes, then targets not fully covered, a negative minimal margin,
    target + margin coverage below 95 %, and organs at risk inside the zone. Plain text."""
    out = []
    for step in summary.get("steps", []):
        for note in step.get("notes") or []:
            out.append(f"step {int(step.get('index', 0)) + 1} ({step.get('therapy')}): {note}")
    evaluation = summary.get("evaluation") or {}
    cumulative = evaluation.get("cumulative")
    if cumulative is None:
        if evaluation:
            out.append("no step left an ablation zone: coverage and margins are not measured")
        return out
    margin = evaluation.get("margin_mm")
    for name, target in (cumulative.get("targets") or {}).items():
        coverage, minimal = target.get("coverage"), target.get("minimal_margin_mm")
        if isinstance(coverage, int | float) and coverage < 1.0:
            out.append(f"target {name}: only {100 * coverage:.1f} % covered by the ablation zone")
        if isinstance(minimal, int | float) and minimal < 0:
            out.append(f"target {name}: minimal margin {minimal} mm (negative: tumour left outside the zone)")
        margin_coverage = target.get("margin_coverage")
        if isinstance(margin_coverage, int | float) and margin_coverage < FULL_MARGIN_COVERAGE:
            out.append(f"target {name}: target + {margin} mm margin only {100 * margin_coverage:.1f} % covered")
    for name, risk in (cumulative.get("at_risk") or {}).items():
        damaged = risk.get("damaged_ml")
        if isinstance(damaged, int | float) and damaged > 0:
            out.append(f"{risk.get('role', 'structure')} {name}: {damaged} mL inside the ablation zone")
    return out


def _warnings_section(items: list[str]) -> str:
    if not items:
        return '<div class="ok">No warnings: every target covered with its margin, no organ at risk damaged.</div>'
    return (
        '<div class="warn"><b>Warnings and notes</b><ul>'
        + "".join(f"<li>{_esc(w)}</li>" for w in items)
        + "</ul></div>"
    )


def _zone_tables(zone: Mapping[str, Any], margin_mm: Any) -> str:
    """Targets, healthy tissue lost and organs at risk of one zone (an evaluation ``zone`` block)."""
    size = (
        f"<p>zone {_number(zone.get('zone_volume_ml'))} mL, axes {_number(zone.get('axes_mm'))} mm (longest first)</p>"
    )
    targets = [
        [
            _esc(name),
            _number(t.get("volume_ml")),
            _fraction(t.get("coverage")),
            _fraction(t.get("margin_coverage")),
            _number(t.get("minimal_margin_mm")),
            _number(t.get("margin_at_mm")),
        ]
        for name, t in (zone.get("targets") or {}).items()
    ]
    header = ["target", "volume (mL)", "coverage", f"target + {_number(margin_mm)} mm coverage"]
    header += ["minimal margin (mm, signed)", "where (LPS mm)"]
    lost = [[_esc(n), _number(v)] for n, v in (zone.get("healthy_tissue_lost_ml") or {}).items()]
    lost.append(["<b>total</b>", _number(zone.get("healthy_tissue_lost_total_ml"))])
    risks = [
        [
            _esc(name),
            _esc(r.get("role")),
            _number(r.get("max_temperature_c")),
            _number(r.get("min_temperature_c")),
            _number(r.get("damaged_ml")),
            _fraction(r.get("damaged_fraction")),
        ]
        for name, r in (zone.get("at_risk") or {}).items()
    ]
    risk_header = ["structure", "role", "max temperature (°C)", "min temperature (°C)", "damaged (mL)", "damaged"]
    return (
        size
        + _table(header, targets)
        + "<h3>Healthy tissue lost</h3>"
        + _table(["organ", "lost (mL)"], lost)
        + "<h3>Organs at risk and vessels</h3>"
        + (_table(risk_header, risks, numeric_from=2) if risks else "<p class=muted>none in the patient</p>")
    )


def _key_values(values: Mapping[str, Any], header: Sequence[str]) -> str:
    return _table(header, [[_esc(k), _number(v)] for k, v in values.items()])


def _evaluation_section(evaluation: Mapping[str, Any]) -> str:
    if not evaluation:
        return "<h2>Evaluation</h2><p class=muted>summary.json holds no evaluation block.</p>"
    parts = ["<h2>Evaluation of the whole treatment</h2>"]
    cumulative = evaluation.get("cumulative")
    if cumulative is not None:
        parts.append(_zone_tables(cumulative, evaluation.get("margin_mm")))
    else:
        parts.append("<p class=muted>No step left an ablation zone.</p>")
    if evaluation.get("transcatheter"):
        parts.append("<h3>Transcatheter totals</h3>" + _key_values(evaluation["transcatheter"], ["quantity", "value"]))
    return "".join(parts)


def _step_section(
    step: Mapping[str, Any],
    evaluation_step: Mapping[str, Any] | None,
    margin_mm: Any,
    targets: Sequence[str],
    several: bool,
) -> str:
    """One step: notes, metrics, its own zone's tables, delivery metrics, curves and (when the plan has several
    steps) its temperature–volume histograms."""
    n = int(step.get("index", 0)) + 1
    label = str(step.get("label") or step.get("therapy"))
    parts = [f"<h2>Step {_esc(label if label.startswith(f'{n}:') else f'{n}: {label}')}</h2>"]
    if step.get("notes"):
        parts.append('<div class="warn"><ul>' + "".join(f"<li>{_esc(x)}</li>" for x in step["notes"]) + "</ul></div>")
    parts.append("<h3>Metrics</h3>" + _key_values(step.get("metrics") or {}, ["metric", "value"]))
    if evaluation_step:
        if evaluation_step.get("zone"):
            parts.append("<h3>This step's zone</h3>" + _zone_tables(evaluation_step["zone"], margin_mm))
        if evaluation_step.get("transcatheter"):
            parts.append("<h3>Delivery</h3>" + _key_values(evaluation_step["transcatheter"], ["quantity", "value"]))
        if several and evaluation_step.get("histograms"):
            png = histograms_png(evaluation_step["histograms"], targets, HISTOGRAM_QUANTITIES, f"step {n}")
            parts.append(_image(png, f"step {n} temperature-volume histograms"))
    curves = step.get("curves") or {}
    if curves:
        parts.append("<h3>Curves</h3>" + _image(curves_png(curves, f"step {n}"), f"step {n} curves"))
    return "".join(parts)


def _target_figures(summary: Mapping[str, Any], patient: Patient, folder: Path) -> str:
    if not patient.grid.is_axis_aligned:
        return "<h2>Slices</h2><p class=muted>Slice figures need an axis-aligned grid; this patient's is oblique.</p>"
    zone, peak = _volumes(folder, patient, len(summary["steps"]))
    plan = summary["plan"]
    names = plan.get("targets") or [t.name for t in patient.targets]
    cumulative = (summary.get("evaluation") or {}).get("cumulative") or {}
    parts = ["<h2>Slices through each target</h2>"]
    for name in names:
        target = patient.structure(name)
        if target.is_empty:
            continue
        centre = [float(v) for v in target.centroid_mm]
        where = ((cumulative.get("targets") or {}).get(name) or {}).get("margin_at_mm")
        png = slices_png(
            patient, centre, target.mask, zone, peak, applicator_paths_mm(plan), where, f"{name}: CT, zone, peak heat"
        )
        parts.append(f"<h3>{_esc(name)}</h3>" + _image(png, f"{name} slices"))
    return "".join(parts)


def _histogram_section(summary: Mapping[str, Any], patient: Patient) -> str:
    evaluation = summary.get("evaluation") or {}
    histograms = evaluation.get("histograms") or {}
    names = summary["plan"].get("targets") or [t.name for t in patient.targets]
    png = histograms_png(histograms, names, HISTOGRAM_QUANTITIES, "temperature–volume histograms (whole treatment)")
    if png is None:
        return ""
    rows = [
        [_esc(name), _esc(q), _number(h.get("at_90_percent")), _esc(h.get("unit", ""))]
        for name in names
        for q, h in (histograms.get(name) or {}).items()
    ]
    return (
        "<h2>Volume histograms</h2>"
        + _image(png, "temperature-volume histograms")
        + _table(["target", "quantity", "reached by 90 % of the volume", "unit"], rows, numeric_from=2)
    )


def _files_section(summary: Mapping[str, Any]) -> str:
    files = summary.get("files") or []
    if not files:
        return ""
    links = "".join(f'<li><a href="{_esc(f)}">{_esc(f)}</a></li>' for f in files)
    return f"<h2>Result volumes (NIfTI, beside this page)</h2><ul>{links}</ul>"


def render_report(summary: Mapping[str, Any], patient: Patient, folder: Path, plan_yaml: str) -> str:
    """The whole page as text (nothing written)."""
    plan = summary["plan"]
    evaluation = summary.get("evaluation") or {}
    by_index = {s.get("index"): s for s in evaluation.get("steps") or []}
    title = f"insitu report — {plan.get('name', 'plan')}"
    steps = summary["steps"]
    targets = plan.get("targets") or [t.name for t in patient.targets]
    parts = [
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_esc(title)}</title>",
        f"<style>{CSS}</style></head><body><h1>{_esc(title)}</h1>",
        f"<p class=muted>results folder {_esc(folder.name)}; simulated time {_number(summary.get('simulated_time_s'))}"
        f" s; {len(summary['steps'])} step(s)</p>",
        _warnings_section(warnings(summary)),
        _plan_section(plan, plan_yaml),
        _evaluation_section(evaluation),
        _target_figures(summary, patient, folder),
        _histogram_section(summary, patient),
        *(
            _step_section(s, by_index.get(s.get("index")), evaluation.get("margin_mm"), targets, len(steps) > 1)
            for s in steps
        ),
        _files_section(summary),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(
    results_dir: str | os.PathLike[str], out_html: str | os.PathLike[str] | None = None, patient: Patient | None = None
) -> Path:
    """Write the report of ``results_dir`` to ``out_html`` (default ``results_dir/report.html``), atomically; the
    patient defaults to the plan's (the phantom is rebuilt: pass ``patient`` to skip that). Returns the path."""
    folder = Path(results_dir)
    summary = load_summary(folder)
    plan_file = folder / "plan.yaml"
    plan_yaml = (
        plan_file.read_text(encoding="utf-8")
        if plan_file.is_file()
        else yaml.safe_dump(summary["plan"], sort_keys=False)
    )
    if patient is None:
        patient = _resolve_patient(summary)
    try:
        page = render_report(summary, patient, folder, plan_yaml)
    except (KeyError, TypeError, AttributeError) as exc:  # a summary.json of another layout
        raise InputFileError(
            f"{folder / SUMMARY} does not have the expected layout ({type(exc).__name__}: {exc})",
            f"re-run `insitu simulate plan.yaml --out {folder}` with this insitu",
        ) from None
    out = Path(out_html) if out_html is not None else folder / REPORT
    with atomic_file(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
