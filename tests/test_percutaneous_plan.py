"""`insitu plan`: a proposed plan puts the applicator along the best safe path, its active part on the target, and the
plan runs; unavailable therapies and impossible targets are one-line errors that write nothing."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from insitu.errors import InsituError
from insitu.patient.phantom import PhantomSpec, make_phantom
from insitu.plan import load_plan
from insitu.planning.percutaneous import propose_plan


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(PhantomSpec(spacing_mm=3.0))


def _bone_or_lung_on_segment(patient, entry, tip) -> list[str]:
    hits = set()
    for t in np.linspace(0.0, 1.0, 400):
        point = entry + t * (tip - entry)
        k, j, i = patient.grid.world_to_kji(point)
        for name in ("ribs", "costal_cartilage", "spine", "lungs", "heart", "gallbladder"):
            if patient.structures[name].mask[k, j, i]:
                hits.add(name)
    return sorted(hits)


def test_rfa_proposal_centres_the_electrode_on_the_tumour_along_a_safe_path(phantom):
    proposed = propose_plan(phantom, "phantom", "rfa")
    step = proposed.plan.steps[0]
    tip = np.asarray(step.placement.tip_mm)
    entry = np.asarray(step.placement.entry_mm)
    centre = phantom.structure("tumor_1").centroid_mm
    axis = (tip - entry) / np.linalg.norm(tip - entry)
    # the 30 mm exposed tip is centred on the centroid: the tip lies 15 mm beyond it, on the path's axis
    np.testing.assert_allclose(tip, centre + 15.0 * axis, atol=0.05)
    assert _bone_or_lung_on_segment(phantom, entry, tip) == []
    path = proposed.trajectories["tumor_1"]
    assert path.tilt_deg <= 30.0 and path.length_mm <= 180.0
    assert proposed.plan.guidance == "ct" and step.protocol["duration_s"] == 720.0


def test_proposed_plan_round_trips_and_runs(phantom, tmp_path):
    from insitu.simulation import simulate

    proposed = propose_plan(phantom, "phantom", "rfa", protocol={"duration_s": 120.0})
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(proposed.plan.model_dump(mode="json", exclude_none=True), sort_keys=False))
    plan = load_plan(path)
    assert plan == proposed.plan
    outcome = simulate(plan, patient=phantom)
    metrics = outcome.steps[0].metrics
    assert metrics["coverage_tumor_1"] > 0.2  # 2 min at 3 mm: the zone grows inside the tumour
    assert metrics["ablation_volume_ml"] > 1.0


def test_transcatheter_proposal_lets_the_catheter_planner_choose(phantom):
    proposed = propose_plan(phantom, "phantom", "tace", protocol={"technique": "deb", "dose_mg": 50})
    step = proposed.plan.steps[0]
    assert step.placement.auto and step.device == "microcatheter-2.7fr" and proposed.trajectories == {}


def test_unavailable_therapy_and_unreachable_target_are_one_line_errors(phantom):
    with pytest.raises(InsituError, match="not available yet") as info:
        propose_plan(phantom, "phantom", "cryo")
    assert "\n" not in str(info.value)
    # a structure that is not a target is refused before any path is searched
    with pytest.raises(InsituError, match="'lymph_node_1' has role oar"):
        propose_plan(phantom, "phantom", "rfa", targets=["lymph_node_1"])
    # a point with no skin within reach in its axial plane: with a 0° tilt limit the reasons are given as shares
    from insitu.planning.trajectory import plan_trajectories

    node = tuple(phantom.structure("lymph_node_1").centroid_mm)
    with pytest.raises(InsituError, match=r"no CT-guided path .*tilted beyond 0°") as info:
        plan_trajectories(phantom, node, guidance="ct", device="rf-cooled-17g-30mm", max_tilt_deg=0.0)
    assert "\n" not in str(info.value)


def test_cli_plan_writes_the_plan_or_nothing(tmp_path, run_cli, phantom):
    from insitu.io.patient_folder import save_patient

    save_patient(phantom, tmp_path / "patient")
    code, out, err = run_cli("plan", tmp_path / "patient", "--therapy", "rfa", "--out", tmp_path / "plan.yaml")
    assert code == 0, err
    plan = load_plan(tmp_path / "plan.yaml")
    assert plan.steps[0].therapy == "rfa" and "tumor_1" in out
    code, _, err = run_cli("plan", tmp_path / "patient", "--therapy", "cryo", "--out", tmp_path / "cryo.yaml")
    assert code == 2 and "not available yet" in err and not (tmp_path / "cryo.yaml").exists()


def test_cli_plan_simulate_report_chain(tmp_path, run_cli, phantom):
    """The main job by hand: insitu plan → insitu simulate → insitu report, on a patient folder."""
    import json

    from insitu.io.patient_folder import save_patient

    save_patient(phantom, tmp_path / "patient")
    assert run_cli("plan", tmp_path / "patient", "--therapy", "rfa", "--out", tmp_path / "plan.yaml")[0] == 0
    plan = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    plan["steps"][0]["protocol"]["duration_s"] = 90.0  # short: the chain, not the ablation, is under test
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    code, out, err = run_cli("simulate", tmp_path / "plan.yaml", "--out", tmp_path / "results")
    assert code == 0, err
    evaluation = json.loads((tmp_path / "results" / "summary.json").read_text())["evaluation"]
    coverage = evaluation["cumulative"]["targets"]["tumor_1"]["coverage"]
    assert 0.0 < coverage < 1.0 and f"coverage {100 * coverage:.1f} %" in out
    code, out, err = run_cli("report", tmp_path / "results")
    assert code == 0, err
    html = (tmp_path / "results" / "report.html").read_text()
    assert "https://" not in html and html.count("data:image/png") >= 3 and "tumor_1" in html
    code, _, err = run_cli("report", tmp_path / "nowhere")
    assert code == 2 and err.strip().count("\n") == 0


def test_cover_margin_proposes_overlapping_electrodes_on_safe_paths(phantom, monkeypatch):
    import insitu.planning.placement as placement

    # the surrogate's one-electrode zone, simulated once at 2 mm (the default 1 mm reference takes ~12 s)
    reference = placement.reference_zone("rf-cooled-17g-30mm", {"duration_s": 720.0}, spacing_mm=2.0)
    monkeypatch.setattr(placement, "reference_zone", lambda *args, **kwargs: reference)  # same physics, coarser grid
    proposed = propose_plan(phantom, "phantom", "rfa", cover_margin=True)
    steps = proposed.plan.steps
    assert 1 <= len(steps) <= 3 and all(s.therapy == "rfa" for s in steps)
    for step in steps:
        tip, entry = np.asarray(step.placement.tip_mm), np.asarray(step.placement.entry_mm)
        assert _bone_or_lung_on_segment(phantom, entry, tip) == []
    with pytest.raises(InsituError, match="not available") as info:
        propose_plan(phantom, "phantom", "mwa", cover_margin=True)
    assert "\n" not in str(info.value)
