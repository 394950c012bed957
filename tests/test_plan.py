"""Plan documents: validation with one-line errors, units in names, YAML/JSON, schema; source fields."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from insitu.errors import InputFileError, PlanError
from insitu.grid import Grid
from insitu.plan import load_plan, plan_from_dict, plan_json_schema
from insitu.therapies.prescribed_source import PrescribedSourceProtocol, source_field

GOOD = {
    "name": "test",
    "patient": "patient",
    "targets": ["tumor"],
    "margin_mm": 5,
    "steps": [
        {
            "therapy": "prescribed_source",
            "placement": {"tip_mm": [1.0, 2.0, 3.0]},
            "protocol": {"shape": "sphere", "power_w": 10, "duration_s": 60, "radius_mm": 4},
        }
    ],
}


def _with(**changes):
    data = json.loads(json.dumps(GOOD))
    for dotted, value in changes.items():
        target = data
        keys = dotted.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        target[keys[-1]] = value
    return data


def test_good_plan_round_trips_through_yaml_and_json(tmp_path):
    plan = plan_from_dict(GOOD)
    assert plan.steps[0].protocol["power_w"] == 10.0
    assert plan.steps[0].protocol["cooldown_s"] == 0.0  # default filled in by the therapy's protocol model
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "plan.json").write_text(json.dumps(GOOD))
    a, b = load_plan(tmp_path / "plan.yaml"), load_plan(tmp_path / "plan.json")
    assert a == b
    assert a.patient == str((tmp_path / "patient").resolve())  # relative to the plan file


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps__0__therapy": "tace"}, "steps.0.shape: Extra inputs"),
        ({"steps__0__therapy": "prescribed_sorce"}, "did you mean 'prescribed_source'"),
        ({"steps__0__protocol__power": 10}, "power"),
        ({"steps__0__protocol__power_w": -1}, "power_w"),
        ({"steps__0__protocol__duration_s": "long"}, "duration_s"),
        ({"steps__0__placement": {}}, "tip_mm"),
        ({"steps__0__placement": {"tip_mm": [0, 0, 0], "target_mm": [1, 1, 1]}}, "not both"),
        ({"steps__0__placement": {"tip_mm": [0, 0]}}, "tip_mm"),
        ({"margin_mm": -2}, "margin_mm"),
        ({"steps": []}, "steps"),
        ({"colour": "red"}, "colour"),
        ({"targets": ["a", "a"]}, "twice"),
    ],
)
def test_bad_plans_are_one_line_errors(changes, message):
    with pytest.raises(PlanError) as info:
        plan_from_dict(_with(**changes))
    text = str(info.value)
    assert message in text and "\n" not in text


def test_unparseable_and_missing_plan_files(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_plan(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("steps: [\n")
    with pytest.raises(InputFileError, match="cannot be parsed"):
        load_plan(tmp_path / "bad.yaml")


def test_schema_names_units():
    schema = json.dumps(plan_json_schema())
    assert "margin_mm" in schema and "tip_mm" in schema


@pytest.mark.parametrize("shape", ["sphere", "gaussian"])
def test_source_integrates_to_the_power(shape):
    grid = Grid(shape=(40, 44, 48), spacing_mm=(0.8, 1.0, 1.25), origin_mm=(-30.0, -22.0, -20.0))
    protocol = PrescribedSourceProtocol(shape=shape, power_w=12.5, duration_s=10, radius_mm=6, sigma_mm=3)
    q = source_field(grid, (0.3, -0.2, 0.1), protocol)
    assert q.dtype == np.float32
    total_w = float(q.astype(np.float64).sum()) * grid.voxel_volume_ml * 1e-6
    assert total_w == pytest.approx(12.5, rel=1e-5)


def test_source_that_misses_every_voxel_is_an_error():
    grid = Grid(shape=(10, 10, 10), spacing_mm=(2.0, 2.0, 2.0))
    with pytest.raises(PlanError, match="radius_mm"):
        source_field(grid, (1.0, 1.0, 1.0), PrescribedSourceProtocol(power_w=1, duration_s=1, radius_mm=0.2))


@pytest.mark.parametrize(
    "name", ["prescribed_source", "rfa", "mwa", "laser", "injection", "cryo", "hifu", "tace", "tace_rfa", "tace_pvce"]
)
def test_every_example_plan_in_the_readme_reads(name):
    """The plans the README tells users to run are valid documents: therapy, device and protocol check out."""
    from pathlib import Path

    plan = load_plan(Path(__file__).parents[1] / "examples" / f"{name}.yaml")
    assert plan.patient == "phantom" and plan.steps
    first = {"prescribed_source": "prescribed_source", "tace_rfa": "tace"}.get(name, name)
    assert plan.steps[0].therapy == first
