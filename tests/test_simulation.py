"""simulate(): steps act in order on one tissue state; outputs are written atomically; bad input is clear."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from insitu.errors import PlanError, StructureError
from insitu.io.patient_folder import save_patient
from insitu.plan import plan_from_dict
from insitu.simulation import simulate


def _plan(tip, **protocol):
    return plan_from_dict(
        {
            "patient": "patient",
            "targets": ["tumor"],
            "steps": [
                {
                    "therapy": "prescribed_source",
                    "placement": {"tip_mm": list(tip)},
                    "protocol": {"shape": "sphere", "power_w": 3.0, "duration_s": 60.0, "radius_mm": 3.0} | protocol,
                }
            ],
        }
    )


def _tumour_centre(patient):
    return tuple(float(v) for v in patient.structures["tumor"].centroid_mm)


def test_a_heating_step_ablates_the_tumour_and_conserves_what_it_should(small_patient):
    plan = _plan(_tumour_centre(small_patient), power_w=4.0, duration_s=90.0)
    outcome = simulate(plan, small_patient)
    step = outcome.steps[0]
    assert step.metrics["peak_temperature_c"] > 60.0
    assert step.metrics["ablation_volume_ml"] > 0.05
    assert 0.0 < step.metrics["coverage_tumor"] <= 1.0
    state = outcome.final_state
    assert state.time_s == pytest.approx(90.0)
    # far from the source nothing changed; perfusion stopped only where the tissue died
    assert state.temperature_c[0, 0, 0] == pytest.approx(37.0)
    dead = step.fields["ablation_zone"]
    assert np.all(state.perfusion_per_s[dead] == 0.0)
    initial = simulate(
        plan_from_dict(
            plan.model_dump()
            | {"steps": [plan.steps[0].model_dump() | {"protocol": plan.steps[0].protocol | {"power_w": 0.001}}]}
        ),
        small_patient,
    )
    untouched = ~dead
    assert np.allclose(state.perfusion_per_s[untouched], initial.final_state.perfusion_per_s[untouched])


def test_an_earlier_step_changes_what_the_next_step_sees(small_patient):
    """Perfusion shut down by step 1 makes the same source in step 2 heat more (the TACE-then-RFA idea)."""
    centre = _tumour_centre(small_patient)
    single = _plan(centre, power_w=2.0, duration_s=60.0, cooldown_s=600.0)
    one = simulate(single, small_patient)
    twice = plan_from_dict(single.model_dump() | {"steps": [single.steps[0].model_dump()] * 2})
    two = simulate(twice, small_patient)
    assert len(two.steps) == 2
    first, second = two.steps
    assert first.metrics["ablation_volume_ml"] == pytest.approx(one.steps[0].metrics["ablation_volume_ml"])
    # the same source after 10 min of cooling: dead tissue no longer perfused, so the zone grows
    assert second.metrics["ablation_volume_ml"] > 1.1 * first.metrics["ablation_volume_ml"]
    assert second.metrics["peak_temperature_c"] > first.metrics["peak_temperature_c"]
    running_max = two.final_state.damage["max_temperature_c"]
    assert float(np.nanmax(running_max)) == pytest.approx(second.metrics["peak_temperature_c"])


@pytest.mark.parametrize(
    ("tip", "message"),
    [
        ((500.0, 0.0, 0.0), "outside the image"),
    ],
)
def test_bad_placement_is_a_clear_error(small_patient, tip, message):
    with pytest.raises(PlanError, match=message):
        simulate(_plan(tip), small_patient)


def test_placement_in_air_is_refused(small_patient):
    corner = tuple(small_patient.grid.index_to_world([0, 0, 0]))
    with pytest.raises(PlanError, match="outside the body"):
        simulate(_plan(corner), small_patient)


def test_unknown_target_is_refused(small_patient):
    plan = plan_from_dict(_plan(_tumour_centre(small_patient)).model_dump() | {"targets": ["tumour"]})
    with pytest.raises(StructureError, match="no structure named 'tumour'"):
        simulate(plan, small_patient)


def test_cli_simulate_writes_results(tmp_path, small_patient, run_cli):
    save_patient(small_patient, tmp_path / "patient")
    plan = _plan(_tumour_centre(small_patient)).model_dump(mode="json")
    plan["patient"] = "patient"
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    code, out, err = run_cli("simulate", tmp_path / "plan.yaml", "--out", tmp_path / "results")
    assert code == 0, err
    assert "peak_temperature_c" in out
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert summary["steps"][0]["metrics"]["peak_temperature_c"] > 40.0
    # the evaluation rides along: the cumulative coverage equals the step's own
    targets = summary["evaluation"]["cumulative"]["targets"]
    for name, target in targets.items():
        assert target["coverage"] == pytest.approx(summary["steps"][0]["metrics"][f"coverage_{name}"], abs=1e-3)
    assert "step1_ablation_zone.nii.gz" in summary["files"]
    assert (tmp_path / "results" / "final_temperature_c.nii.gz").exists()


def test_cli_simulate_bad_plan_writes_nothing(tmp_path, run_cli):
    (tmp_path / "plan.yaml").write_text(
        yaml.safe_dump({"patient": "p", "steps": [{"therapy": "tae", "placement": {"tip_mm": [0, 0, 0]}}]})
    )
    code, _, err = run_cli("simulate", tmp_path / "plan.yaml", "--out", tmp_path / "results")
    assert code == 2 and "names no device" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "results").exists()
