"""The command line: every bad input is one line on stderr with exit code 2; commands write real output."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import yaml

from insitu.io.images import write_image
from insitu.io.patient_folder import save_patient


def _break(kind: str, folder, patient) -> None:
    labels, _ = patient.label_image()
    if kind == "missing file":
        (folder / "labels.nii.gz").unlink()
    elif kind == "truncated nifti":
        data = (folder / "ct.nii.gz").read_bytes()
        (folder / "ct.nii.gz").write_bytes(data[: len(data) * 2 // 3])
    elif kind == "label grid":
        shifted = type(patient.grid)(shape=patient.grid.shape, spacing_mm=(1.0, 1.0, 1.0))
        write_image(labels, shifted, folder / "labels.nii.gz")
    elif kind == "unnamed label":
        labels[1, 1, 1] = 12
        write_image(labels, patient.grid, folder / "labels.nii.gz")
    elif kind == "empty target":
        labels[labels == 2] = 0
        write_image(labels, patient.grid, folder / "labels.nii.gz")
    elif kind in ("zero spacing", "nan spacing"):
        image = nib.load(str(folder / "ct.nii.gz"))
        header = image.header.copy()
        header["pixdim"][2] = 0.0 if kind == "zero spacing" else np.nan
        header.set_qform(None, code=0)
        header.set_sform(None, code=0)
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj), None, header), str(folder / "ct.nii.gz"))
    elif kind == "unknown tissue":
        document = yaml.safe_load((folder / "structures.yaml").read_text())
        document["structures"][1]["tissue"] = "tumour_tissue"
        (folder / "structures.yaml").write_text(yaml.safe_dump(document))


BAD_INPUTS = {
    "missing file": "labels.nii.gz does not exist",
    "truncated nifti": "truncated",
    "label grid": "different grid",
    "unnamed label": "value 12",
    "empty target": "target 'tumor' is empty",
    "zero spacing": "spacing",
    "nan spacing": "spacing",
    "unknown tissue": "unknown tissue",
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2(kind, tmp_path, small_patient, run_cli):
    folder = tmp_path / "p"
    save_patient(small_patient, folder)
    _break(kind, folder, small_patient)
    code, out, err = run_cli("info", folder)
    assert code == 2, (kind, out, err)
    assert err.startswith("error: ")
    assert err.strip().count("\n") == 0, err
    assert BAD_INPUTS[kind] in err
    assert "Traceback" not in err + out


def test_phantom_command_writes_a_loadable_folder(tmp_path, run_cli):
    out = tmp_path / "ph"
    code, stdout, err = run_cli(
        "phantom",
        "--out",
        out,
        "--spacing-mm",
        "3",
        "--tumors",
        "2",
        "--tumor-diameter-mm",
        "24",
        "--tumor-segment",
        "VI",
        "--seed",
        "2",
    )
    assert code == 0, err
    assert "tumor_2" in stdout
    code, stdout, _ = run_cli("info", out, "--json")
    info = json.loads(stdout)
    tumors = [s for s in info["structures"] if s["role"] == "target"]
    assert len(tumors) == 2
    assert info["metadata"]["tumors"][0]["segment"] == "VI"
    assert set(info["trees"]) >= {"portal_vein", "hepatic_artery"}


def test_phantom_with_explicit_tumour_centre(tmp_path, run_cli):
    code, _, err = run_cli("phantom", "--out", tmp_path / "a", "--spacing-mm", "3", "--tumor-center-mm", "-70,0,20")
    assert code == 0, err
    code, _, err = run_cli("phantom", "--out", tmp_path / "b", "--spacing-mm", "3", "--tumor-center-mm", "1,2")
    assert code == 2 and "three numbers" in err
    code, _, err = run_cli("phantom", "--out", tmp_path / "c", "--spacing-mm", "3", "--tumor-center-mm", "0,-90,0")
    assert code == 2 and "not inside the phantom liver" in err
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--spacing-mm", "0"], "spacing"),
        (["--tumor-segment", "IX"], "Couinaud segment"),
        (["--tumor-diameter-mm", "200"], "diameter"),
        (["--tumors", "9"], "0 to 6"),
        (["--tumor-kind", "sarcoma"], "tumour kind"),
    ],
)
def test_phantom_bad_options(tmp_path, run_cli, args, message):
    code, _, err = run_cli("phantom", "--out", tmp_path / "x", *args)
    assert code == 2 and message in err and err.strip().count("\n") == 0
    assert not (tmp_path / "x").exists()


def test_demo_writes_patient_figure_and_summary(tmp_path, run_cli):
    code, out, err = run_cli("demo", "--out", tmp_path / "demo", "--spacing-mm", "3")
    assert code == 0, err
    assert "liver" in out and "terminals" in out
    demo = tmp_path / "demo"
    png = (demo / "phantom_slices.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    summary = json.loads((demo / "summary.json").read_text())
    assert summary["structures"]["liver"] > 1000
    assert (demo / "patient" / "structures.yaml").exists()
    # the RF ablation of the tumour: zone, axes, coverage, generator curves and the figure
    rfa = summary["rfa"]["metrics"]
    assert "RFA" in out and "roll-offs" in out
    assert rfa["long_axis_mm"] > rfa["short_axis_mm"] > 10.0
    assert 0.0 < rfa["coverage_tumor_1"] <= 1.0 and rfa["delivered_energy_j"] > 1000.0
    figure = (demo / "rfa_ablation.png").read_bytes()
    assert figure[:8] == b"\x89PNG\r\n\x1a\n" and len(figure) > 50_000
    steps = json.loads((demo / "rfa" / "summary.json").read_text())["steps"]
    assert len(steps[0]["curves"]["power_w"]) > 100
    assert (demo / "rfa" / "step1_ablation_zone.nii.gz").exists()


def test_listing_commands(run_cli):
    code, out, _ = run_cli("therapies")
    assert code == 0 and "rfa" in out and "tace_pvce" in out
    code, out, _ = run_cli("devices")
    assert code == 0 and "rf-cooled-17g-30mm" in out


def test_error_text_with_brackets_is_printed_verbatim(tmp_path, small_patient, run_cli):
    folder = tmp_path / "p"
    save_patient(small_patient, folder)
    document = yaml.safe_load((folder / "structures.yaml").read_text())
    document["structures"][0]["tissue"] = "[bold]liver"
    (folder / "structures.yaml").write_text(yaml.safe_dump(document))
    code, _, err = run_cli("info", folder)
    assert code == 2 and "[bold]liver" in err


def test_unknown_command_is_a_usage_error(run_cli):
    code, _, err = run_cli("simulat")
    assert code == 2
    assert "simulat" in err
