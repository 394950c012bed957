"""The ``insitu`` command line (typer + rich). Every InsituError prints one line and exits with 2."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from insitu.errors import InsituError

app = typer.Typer(
    name="insitu",
    help="Plan and simulate image-guided minimally invasive tumour therapy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
error_console = Console(stderr=True)


class _RichProgress:
    """Adapts insitu's progress callback to a rich progress bar."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=1.0)
        self.progress.update(
            self.tasks[stage],
            completed=fraction,
            description=f"{stage}: {message}" if message else stage,
        )


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=error_console,
        transient=True,
    )


def _parse_point_mm(text: str) -> tuple[float, float, float]:
    """'x,y,z' in LPS millimetres → a point; a one-line error otherwise."""
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise InsituError(
            f"--tumor-center-mm {text!r} is not three numbers", "give x,y,z in LPS millimetres, e.g. -70,0,20"
        )
    return values  # type: ignore[return-value]


def _tumor_specs(
    count: int,
    diameter_mm: float,
    segments: list[str],
    kind: str,
    near_vessel: str | None,
    vessel_distance_mm: float | None,
    centers: list[str] | None = None,
):
    """Tumour specifications from the CLI options (explicit centres win over segments)."""
    from insitu.patient.phantom import TumorSpec

    if centers:
        return tuple(
            TumorSpec(diameter_mm=diameter_mm, segment=None, center_mm=_parse_point_mm(c), kind=kind) for c in centers
        )

    default_segments = ["8", "6", "2", "5", "7", "3"]
    chosen = segments or default_segments[:count]
    if len(chosen) < count:
        chosen = chosen + [s for s in default_segments if s not in chosen][: count - len(chosen)]
    specs = []
    for n in range(count):
        specs.append(
            TumorSpec(
                diameter_mm=diameter_mm,
                segment=chosen[n],
                kind=kind,
                near_vessel=near_vessel if n == 0 else None,
                vessel_distance_mm=vessel_distance_mm if n == 0 else None,
            )
        )
    return tuple(specs)


@app.command()
def phantom(
    out: Annotated[Path, typer.Option("--out", help="folder to write the patient into")],
    tumor_diameter_mm: Annotated[float, typer.Option(help="diameter of each tumour (mm)")] = 30.0,
    tumor_segment: Annotated[
        list[str], typer.Option(help="Couinaud segment (1–8 or I–VIII); repeat for several tumours")
    ] = [],  # noqa: B006
    tumors: Annotated[int, typer.Option(help="number of tumours")] = 1,
    tumor_kind: Annotated[str, typer.Option(help="hcc (hypervascular) or metastasis")] = "hcc",
    tumor_center_mm: Annotated[
        list[str], typer.Option(help="tumour centre 'x,y,z' in LPS mm (instead of a segment); repeatable")
    ] = [],  # noqa: B006
    near_vessel: Annotated[
        str | None,
        typer.Option(help="place the first tumour near portal_vein, hepatic_veins or hepatic_artery"),
    ] = None,
    vessel_distance_mm: Annotated[
        float | None, typer.Option(help="gap between that tumour and the vessel (mm)")
    ] = None,
    lymph_nodes: Annotated[int, typer.Option(help="hilar lymph nodes (0–4)")] = 2,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same phantom")] = 0,
    spacing_mm: Annotated[float, typer.Option(help="isotropic voxel spacing (mm)")] = 1.0,
) -> None:
    """Build the procedural upper-abdomen phantom and write it as a patient folder."""
    from insitu.io.patient_folder import save_patient
    from insitu.patient.phantom import PhantomSpec, make_phantom

    if tumors < 0 or tumors > 6:
        raise InsituError(f"--tumors {tumors} is outside 0–6", "give 0 to 6 tumours")
    spec = PhantomSpec(
        spacing_mm=spacing_mm,
        tumors=_tumor_specs(
            tumors, tumor_diameter_mm, tumor_segment, tumor_kind, near_vessel, vessel_distance_mm, tumor_center_mm
        ),
        seed=seed,
        lymph_nodes=lymph_nodes,
    )
    _check_output_parent(out)
    with _progress_bar() as bar:
        patient = make_phantom(spec, progress=_RichProgress(bar))
        save_patient(patient, out)
    console.print(f"phantom written to [bold]{out}[/bold] ({patient.grid.describe()})")
    _print_structures(patient)


def _check_output_parent(out: Path) -> None:
    """Fail before long work when the output cannot be written."""
    from insitu.io.atomic import _prepare_parent, _require_replaceable

    _prepare_parent(out)
    _require_replaceable(out)


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="patient folder or image file")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Describe a patient: grid, structures (role, tissue, volume), vessel trees."""
    from insitu.io.patient_folder import is_patient_folder, load_image_as_patient, load_patient

    patient = load_patient(path) if is_patient_folder(path) or path.is_dir() else load_image_as_patient(path)
    if as_json:
        typer.echo(json.dumps(patient.summary(), indent=2))
        return
    console.print(f"[bold]{path}[/bold]: {patient.modality}, {patient.grid.describe()}")
    _print_structures(patient)
    if patient.trees:
        table = Table(title="vessel trees")
        for column in (
            "tree",
            "kind",
            "segments",
            "terminals",
            "root radius (mm)",
            "min radius (mm)",
            "volume (mL)",
        ):
            table.add_column(
                column, justify="right" if column != "tree" else "left", no_wrap=column in ("tree", "kind")
            )
        for name, tree in patient.trees.items():
            stats = tree.statistics()
            table.add_row(
                name,
                str(tree.kind),
                str(stats["n_segments"]),
                str(stats["n_terminals"]),
                f"{stats['radius_max_mm']:.2f}",
                f"{stats['radius_min_mm']:.2f}",
                f"{stats['volume_ml']:.1f}",
            )
        console.print(table)


def _print_structures(patient) -> None:
    table = Table(title="structures")
    for column in ("structure", "role", "tissue", "label", "volume (mL)"):
        table.add_column(
            column, justify="right" if column in ("label", "volume (mL)") else "left", no_wrap=column == "structure"
        )
    for structure in patient.structures.values():
        table.add_row(
            structure.name,
            structure.role.value,
            structure.tissue,
            str(structure.label or "—"),
            f"{structure.volume_ml:.1f}",
        )
    console.print(table)


@app.command()
def therapies() -> None:
    """List the therapies insitu knows and whether each is available in this version."""
    from insitu.registry import therapies as registry

    table = Table(title="therapies")
    for column in ("name", "family", "status", "what it is"):
        table.add_column(column, no_wrap=column == "name")
    for entry in registry():
        status = entry.availability.value
        if status == "planned":
            status = f"planned ({entry.details.get('planned_in')})"
        table.add_row(entry.name, entry.family, status, entry.summary)
    console.print(table)


@app.command()
def devices(
    therapy: Annotated[str | None, typer.Option(help="only devices for this therapy")] = None,
) -> None:
    """List the device catalog (applicators, probes, fibres) with their sources."""
    from insitu.registry import devices as registry

    table = Table(title="device catalog")
    for column in ("name", "therapy", "kind", "parameters", "source"):
        table.add_column(column, no_wrap=column == "name")
    for entry in registry():
        device = entry.value
        if therapy and device.therapy != therapy:
            continue
        params = ", ".join(f"{k}={v}" for k, v in device.parameters.items())
        table.add_row(device.name, device.therapy, device.kind, params, device.sources[0])
    console.print(table)


@app.command("plan")
def plan_command(
    patient: Annotated[str, typer.Argument(help="patient folder, or 'phantom' for the built-in phantom")],
    therapy: Annotated[str, typer.Option("--therapy", help="rfa, or a transcatheter therapy (tae, tai, tace, ...)")],
    out: Annotated[Path, typer.Option("--out", help="plan file to write (YAML)")],
    device: Annotated[str | None, typer.Option(help="catalog device (default: the therapy's standard one)")] = None,
    guidance: Annotated[str, typer.Option(help="ct or us")] = "ct",
    target: Annotated[list[str] | None, typer.Option(help="target structure (repeat for several; default all)")] = None,
    margin_mm: Annotated[float, typer.Option(help="required ablative margin (mm)")] = 5.0,
    max_tilt_deg: Annotated[float | None, typer.Option(help="CT: largest tilt to the axial plane (°)")] = None,
    cover_margin: Annotated[
        bool, typer.Option("--cover-margin", help="RF: as many electrodes as target + margin needs (overlapping)")
    ] = False,
) -> None:
    """Propose a plan: the applicator along the best safe path to each target (or the catheter planner for
    transcatheter steps), written as a plan file to review and run with `insitu simulate`."""
    import yaml

    from insitu.io.atomic import atomic_file
    from insitu.planning.percutaneous import propose_plan

    _check_output_parent(out)
    if patient == "phantom":
        from insitu.patient.phantom import make_phantom

        with _progress_bar() as bar:
            subject = make_phantom(progress=_RichProgress(bar))
        reference = "phantom"
    else:
        from insitu.io.patient_folder import load_patient

        subject = load_patient(Path(patient))
        reference = str(Path(patient).resolve())
    proposed = propose_plan(
        subject,
        reference,
        therapy,
        device=device,
        guidance=guidance,
        targets=list(target or []),
        margin_mm=margin_mm,
        max_tilt_deg=max_tilt_deg,
        cover_margin=cover_margin,
    )
    document = proposed.plan.model_dump(mode="json", exclude_none=True)
    with atomic_file(out) as tmp:
        tmp.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    console.print(f"[bold]{proposed.plan.name}[/bold] → {out}")
    for name, path in proposed.trajectories.items():
        passes = ", ".join(f"{tissue} {length:.0f}" for tissue, length in path.passes_through)
        console.print(
            f"  {name}: entry {tuple(round(float(v), 1) for v in path.entry_mm)} mm → tip "
            f"{tuple(round(float(v), 1) for v in path.tip_mm)} mm, {path.length_mm:.0f} mm, tilt {path.tilt_deg:.0f}°, "
            f"nearest organ at risk {path.nearest_oar_mm:.0f} mm; through {passes} mm"
        )


@app.command()
def simulate(
    plan_file: Annotated[Path | None, typer.Argument(help="plan file (YAML or JSON)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="folder for result volumes and summary.json")] = None,
    schema: Annotated[bool, typer.Option("--schema", help="print the plan JSON schema and exit")] = False,
) -> None:
    """Run a plan's steps in order on the patient and write the results."""
    from insitu.plan import load_plan, plan_json_schema

    if schema:
        typer.echo(json.dumps(plan_json_schema(), indent=2))
        return
    if plan_file is None or out is None:
        raise InsituError("simulate needs a plan file and --out", "run: insitu simulate plan.yaml --out results/")
    from insitu.io.results import write_outcome
    from insitu.simulation import resolve_patient
    from insitu.simulation import simulate as run_plan

    plan = load_plan(plan_file)
    _check_output_parent(out)
    patient = resolve_patient(plan)
    with _progress_bar() as bar:
        outcome = run_plan(plan, patient, progress=_RichProgress(bar))
    write_outcome(outcome, out)
    console.print(f"[bold]{plan.name}[/bold]: {len(outcome.steps)} step(s), results in {out}/")
    for step in outcome.steps:
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in step.metrics.items())
        console.print(f"  {step.label}: {metrics}")
        for note in step.notes:
            console.print(f"  [yellow]note:[/yellow] {escape(note)}")
    _print_evaluation(json.loads((out / "summary.json").read_text(encoding="utf-8"))["evaluation"])


def _print_evaluation(evaluation: dict) -> None:
    """One line per target: coverage of the target and of target + margin, the minimal margin; healthy liver lost."""
    cumulative = evaluation.get("cumulative") or {}
    for name, target in (cumulative.get("targets") or {}).items():
        margin = target.get("minimal_margin_mm")
        margin_text = "no zone" if margin is None else f"{margin:+.1f} mm"
        console.print(
            f"  {name}: coverage {100 * target['coverage']:.1f} %, target + {evaluation['margin_mm']:g} mm "
            f"{100 * target['margin_coverage']:.1f} %, minimal margin {margin_text}"
        )
    if cumulative:
        console.print(f"  healthy tissue lost {cumulative.get('healthy_tissue_lost_total_ml', 0.0):.1f} mL")


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="results folder written by insitu simulate")],
    out: Annotated[Path | None, typer.Option("--out", help="HTML file (default: RESULTS/report.html)")] = None,
) -> None:
    """Write a self-contained HTML report (plan, evaluation, slices, curves, histograms) of a results folder."""
    from insitu.report.html import load_summary, write_report
    from insitu.simulation import resolve_patient

    load_summary(results)  # a missing or truncated summary fails here, before the patient is built
    import yaml

    from insitu.plan import plan_from_dict

    plan = plan_from_dict(yaml.safe_load((results / "plan.yaml").read_text(encoding="utf-8")), "plan.yaml")
    with _progress_bar() as bar:
        bar.add_task("patient", total=None)
        patient = resolve_patient(plan)
    path = write_report(results, out, patient=patient)
    console.print(f"report → {path}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="folder for the demo outputs")] = Path("insitu-demo"),
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    spacing_mm: Annotated[float, typer.Option(help="voxel spacing (mm)")] = 1.0,
) -> None:
    """Build the phantom, ablate its tumour with one RF electrode (12 min, impedance control), write the patient,
    the result volumes and figures, and print a summary."""
    from insitu.demo import demo_plan
    from insitu.io.atomic import atomic_directory
    from insitu.io.patient_folder import save_patient
    from insitu.io.results import write_outcome
    from insitu.patient.phantom import PhantomSpec, make_phantom
    from insitu.report.ablation_figure import render_ablation
    from insitu.report.figures import render_orthogonal_slices
    from insitu.simulation import simulate

    t0 = time.perf_counter()
    _check_output_parent(out)
    with _progress_bar() as bar:
        patient = make_phantom(PhantomSpec(spacing_mm=spacing_mm, seed=seed), progress=_RichProgress(bar))
        plan, approach = demo_plan(patient)
        outcome = simulate(plan, patient, progress=_RichProgress(bar))
    rfa = outcome.steps[0]
    with atomic_directory(out) as tmp:
        write_outcome(outcome, tmp / "rfa")
        step = plan.steps[0]
        render_ablation(
            patient,
            tmp / "rfa_ablation.png",
            rfa.fields["ablation_zone"],
            rfa.fields["max_temperature_c"],
            center_mm=patient.targets[0].centroid_mm,
            target=patient.targets[0].name,
            curves=rfa.curves,
            title=f"RFA: {step.device}, {approach} approach, 12 min impedance-controlled — "
            f"zone {rfa.metrics['long_axis_mm']:.0f} × {rfa.metrics['short_axis_mm']:.0f} mm, "
            f"tumour coverage {100 * rfa.metrics[f'coverage_{patient.targets[0].name}']:.0f} %",
        )
        save_patient(patient, tmp / "patient")
        tumor = patient.targets[0]
        figure = render_orthogonal_slices(
            patient,
            tmp / "phantom_slices.png",
            center_mm=tumor.centroid_mm,
            title=f"insitu phantom (seed {seed}): {tumor.name}, {tumor.equivalent_diameter_mm():.1f} mm "
            f"{patient.metadata['tumors'][0]['kind'].upper()} in segment {patient.metadata['tumors'][0]['segment']}",
        )
        summary = {
            "patient": "patient/",
            "figure": figure.name,
            "grid": patient.grid.to_dict(),
            "structures": {s.name: round(s.volume_ml, 2) for s in patient.structures.values()},
            "tumors": patient.metadata["tumors"],
            "trees": {name: tree.statistics() for name, tree in patient.trees.items()},
            "rfa": {
                "plan": plan.model_dump(mode="json"),
                "approach": approach,
                "results": "rfa/",
                "figure": "rfa_ablation.png",
                "metrics": rfa.metrics,
            },
            "seconds": round(time.perf_counter() - t0, 2),
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    console.print(f"[bold]insitu demo[/bold] → {out}/ ({summary['seconds']:.1f} s)")
    console.print(f"  patient folder: {out}/patient   figure: {out}/phantom_slices.png")
    liver = patient.structures["liver"]
    console.print(f"  grid: {patient.grid.describe()}")
    console.print(
        f"  liver {liver.volume_ml:.0f} mL; tumour {tumor.volume_ml:.1f} mL at "
        f"{tuple(round(float(v)) for v in tumor.centroid_mm)} mm"
    )
    for name, tree in patient.trees.items():
        stats = tree.statistics()
        console.print(
            f"  {name}: {stats['n_terminals']} terminals, "
            f"radius {stats['radius_max_mm']:.1f} → {stats['radius_min_mm']:.2f} mm"
        )
    m = rfa.metrics
    tip = plan.steps[0].placement.tip_mm
    console.print(
        f"  RFA ({plan.steps[0].device}, {approach} approach, tip at {tuple(round(v) for v in tip)} mm, 12 min): "
        f"zone {m['long_axis_mm']:.0f} × {m['short_axis_mm']:.0f} mm (along × across the electrode), "
        f"{m['zone_volume_ml']:.1f} mL; tumour coverage {100 * m[f'coverage_{tumor.name}']:.0f} %"
    )
    console.print(
        f"  generator: {m['delivered_energy_j'] / 1e3:.1f} kJ, mean {m['mean_power_w']:.0f} W, "
        f"{m['initial_impedance_ohm']:.0f} → {m['final_impedance_ohm']:.0f} Ω, {m['rolloffs']:.0f} roll-offs; "
        f"figure: {out}/rfa_ablation.png"
    )


def main() -> None:
    """Entry point: typer handles usage errors (exit 2); an InsituError prints one line and exits 2."""
    try:
        app()
    except InsituError as exc:
        error_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
