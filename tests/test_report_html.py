"""The HTML report of a results folder: self-contained, numbers as summary.json has them, bad input in one line."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_small_patient
from insitu.errors import InputFileError
from insitu.io.results import write_outcome
from insitu.plan import plan_from_dict
from insitu.report.html import applicator_paths_mm, warnings, write_report
from insitu.report.report_figures import curve_pairs, half_width_for_mm
from insitu.simulation import simulate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NOTE = "stasis reached after 16 % of the vial"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A 0.6 W sphere in the small patient's tumour (partial coverage, negative margin), with generator curves and a
    note added to the step so the report has them to show."""
    patient = make_small_patient()
    centre = [float(v) for v in patient.structures["tumor"].centroid_mm]
    entry = [centre[0] + 12.0, centre[1], centre[2]]
    plan = plan_from_dict(
        {
            "patient": "patient",
            "targets": ["tumor"],
            "margin_mm": 2.0,
            "steps": [
                {
                    "therapy": "prescribed_source",
                    "placement": {"entry_mm": entry, "target_mm": centre},
                    "protocol": {"shape": "sphere", "power_w": 0.6, "duration_s": 90.0, "radius_mm": 3.0},
                }
            ],
        }
    )
    outcome = simulate(plan, patient)
    outcome.steps[0].curves = {
        "time_s": [0.0, 30.0, 60.0, 90.0],
        "power_w": [0.6, 0.6, 0.6, 0.6],
        "impedance_ohm": [80.0, 84.0, 90.0, 97.0],
    }
    outcome.steps[0].notes = [NOTE]
    folder = write_outcome(outcome, tmp_path_factory.mktemp("res") / "out")
    return folder, patient, entry, centre


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_the_report_is_self_contained_and_shows_the_summary_numbers(results):
    folder, patient, entry, _ = results
    path = write_report(folder, patient=patient)
    assert path == folder / "report.html"
    page = path.read_text(encoding="utf-8")
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    tumour = summary["evaluation"]["cumulative"]["targets"]["tumor"]
    assert 0.0 < tumour["coverage"] < 1.0  # 0.6 W leaves part of the tumour: the number is not a trivial 1.0
    assert tumour["minimal_margin_mm"] < 0.0
    for key in ("coverage", "margin_coverage", "minimal_margin_mm"):
        assert f">{json.dumps(tumour[key])}" in page  # as summary.json has it, in a table cell
    lost = summary["evaluation"]["cumulative"]["healthy_tissue_lost_ml"]["liver"]
    assert f">{json.dumps(lost)}<" in page
    # self-contained: no network reference, no script, every image inline and a real PNG
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower()
    assert re.findall(r'src="(?!data:image/png;base64,)', page) == []
    images = _pngs(page)
    assert len(images) >= 3  # slices through the target, temperature–volume histograms, the generator curves
    assert all(image.startswith(PNG_SIGNATURE) for image in images)
    # warnings come first: the step's note and the negative margin, above the plan
    plan_at = page.index("<h2>Plan</h2>")
    assert page.index(NOTE) < plan_at
    assert page.index(f"minimal margin {tumour['minimal_margin_mm']} mm") < plan_at
    # the plan as a table (entry point) and as YAML
    assert f"entry ({json.dumps(entry[0])}, " in page
    assert "power_w: 0.6" in page
    assert 'href="step1_ablation_zone.nii.gz"' in page


def test_the_report_goes_where_asked_and_replaces_an_older_one(results, tmp_path):
    folder, patient, _, _ = results
    out = tmp_path / "nested" / "r.html"
    out.parent.mkdir()
    out.write_text("old", encoding="utf-8")
    assert write_report(folder, out, patient=patient) == out
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.html"]  # no temporary left beside it


@pytest.mark.parametrize("damage", ["missing", "truncated", "not_a_summary"])
def test_a_bad_summary_is_one_line_and_writes_nothing(results, tmp_path, damage):
    folder, patient, _, _ = results
    bad = tmp_path / "bad"
    bad.mkdir()
    text = (folder / "summary.json").read_text(encoding="utf-8")
    if damage == "truncated":
        (bad / "summary.json").write_text(text[: len(text) // 2], encoding="utf-8")
    elif damage == "not_a_summary":
        (bad / "summary.json").write_text(json.dumps({"files": []}), encoding="utf-8")
    before = sorted(p.name for p in bad.iterdir())
    with pytest.raises(InputFileError) as error:
        write_report(bad, patient=patient)
    message = str(error.value)
    assert "\n" not in message
    assert "summary.json" in message and "insitu simulate" in message  # the file and the fix
    assert {"truncated": "truncated", "missing": "missing", "not_a_summary": "lacks plan"}[damage] in message
    assert sorted(p.name for p in bad.iterdir()) == before


def test_a_missing_results_folder_is_one_line(tmp_path):
    with pytest.raises(InputFileError, match="does not exist") as error:
        write_report(tmp_path / "nowhere", patient=make_small_patient())
    assert "\n" not in str(error.value)


def test_applicator_paths_come_from_entry_and_tip():
    plan = {
        "steps": [
            {"placement": {"entry_mm": [0, 0, 0], "target_mm": [10, 0, 0]}},
            {"placement": {"tip_mm": [1, 2, 3]}},  # a point without an entry: no path to draw
            {"placement": {"entry_mm": [5, 5, 5], "tip_mm": [1, 2, 3]}},
        ]
    }
    assert applicator_paths_mm(plan) == [([0, 0, 0], [10, 0, 0]), ([5, 5, 5], [1, 2, 3])]


def test_curves_pair_with_their_own_time_axis():
    curves = {
        "time_s": [0, 1, 2],
        "power_w": [1, 2, 3],
        "plasma_time_h": [0, 1, 2, 3],
        "plasma_ng_ml": [0, 5, 3, 1],
        "sar_r_mm": [1, 2],
        "focus_depth_mm": [70, 80, 75, 90, 85],
    }
    assert curve_pairs(curves) == [("time_s", "power_w"), ("plasma_time_h", "plasma_ng_ml"), (None, "focus_depth_mm")]


def test_warnings_name_uncovered_targets_negative_margins_and_damaged_organs():
    summary = {
        "steps": [{"index": 1, "therapy": "tace", "notes": ["stasis early"]}],
        "evaluation": {
            "margin_mm": 5.0,
            "cumulative": {
                "targets": {
                    "a": {"coverage": 0.9, "margin_coverage": 0.5, "minimal_margin_mm": -2.5},
                    "b": {"coverage": 1.0, "margin_coverage": 0.99, "minimal_margin_mm": 5.5},
                },
                "at_risk": {
                    "gallbladder": {"role": "oar", "damaged_ml": 1.25},
                    "ivc": {"role": "vessel", "damaged_ml": 0},
                },
            },
        },
    }
    assert warnings(summary) == [
        "step 2 (tace): stasis early",
        "target a: only 90.0 % covered by the ablation zone",
        "target a: minimal margin -2.5 mm (negative: tumour left outside the zone)",
        "target a: target + 5.0 mm margin only 50.0 % covered",
        "oar gallbladder: 1.25 mL inside the ablation zone",
    ]


@settings(max_examples=25, deadline=None)
@given(st.floats(-8.0, 8.0), st.floats(-8.0, 8.0), st.floats(-8.0, 8.0), st.floats(1.0, 12.0), st.floats(-5.0, 5.0))
def test_the_slice_window_holds_every_voxel_of_the_masks(dx, dy, dz, radius_mm, offset_mm):
    """Every voxel of the drawn masks lies inside the square each slice shows, with at least 10 mm to spare."""
    patient = make_small_patient()
    grid = patient.grid
    world = grid.world_coordinates_mm(np.float64)
    centre = np.asarray(patient.structures["tumor"].centroid_mm) + np.array([dx, dy, dz])
    ball = np.linalg.norm(world - centre - offset_mm, axis=-1) <= radius_mm
    half = half_width_for_mm([patient.structures["tumor"].mask, ball], patient, centre)
    assert half >= 20.0
    for mask in (patient.structures["tumor"].mask, ball):
        points = world[mask]
        if len(points):
            assert np.abs(points - centre).max() <= half - 10.0 + 1e-9
