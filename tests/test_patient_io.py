"""Patient folder: exact round trips, world points through SimpleITK and nibabel, and bad input."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from scipy.spatial.transform import Rotation
from tests.conftest import make_small_patient

from insitu.errors import GridError, InputFileError, OutputError, StructureError, TissueError
from insitu.geometry import lps_to_ras
from insitu.io.images import read_image, write_image
from insitu.io.patient_folder import load_patient, save_patient
from insitu.patient.structure import Role, Structure


def _assert_same_patient(a, b):
    assert a.grid == b.grid
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.dtype == b.image.dtype
    assert list(a.structures) == list(b.structures)
    for name, s in a.structures.items():
        t = b.structures[name]
        np.testing.assert_array_equal(s.mask, t.mask)
        assert (s.role, s.tissue, s.code, s.label, tuple(s.color_rgb)) == (
            t.role,
            t.tissue,
            t.code,
            t.label,
            tuple(t.color_rgb),
        )
    assert a.metadata == b.metadata


def test_round_trip_is_exact(tmp_path, small_patient):
    save_patient(small_patient, tmp_path / "p")
    assert (tmp_path / "p" / "labels.nii.gz").exists()
    _assert_same_patient(small_patient, load_patient(tmp_path / "p"))


def test_round_trip_oblique_grid_and_overlapping_masks(tmp_path):
    direction = Rotation.from_euler("xyz", [12, -7, 30], degrees=True).as_matrix()
    patient = make_small_patient(direction)
    liver = patient.structures["liver"]
    whole = liver.mask | patient.structures["tumor"].mask
    patient.structures["liver"] = Structure(
        "liver", Role.ORGAN, whole, patient.grid, "liver", liver.code, None, liver.color_rgb
    )
    assert patient.overlapping_pairs() == [("liver", "tumor")]
    save_patient(patient, tmp_path / "p")
    assert (tmp_path / "p" / "masks" / "liver.nii.gz").exists()
    loaded = load_patient(tmp_path / "p")
    assert loaded.grid.matches(patient.grid, 1e-6)
    for name in patient.structures:
        np.testing.assert_array_equal(loaded.structures[name].mask, patient.structures[name].mask)


def test_structure_measures(small_patient):
    tumor = small_patient.structures["tumor"]
    expected_ml = 4.0 / 3.0 * np.pi * 5.0**3 / 1000.0
    assert tumor.volume_ml == pytest.approx(expected_ml, rel=0.12)
    np.testing.assert_allclose(
        tumor.centroid_mm,
        small_patient.grid.index_to_world([17.5, 14.5, 11.5]) + [3, 0, 0],
        atol=0.3,
    )
    lo, hi = tumor.bounding_box_mm()
    assert np.all(hi - lo >= 8.0 - 1e-9) and np.all(hi - lo <= 10.0 + 2.0)  # voxel edges of a 10 mm sphere
    sd = tumor.signed_distance_mm()
    assert sd[tumor.mask].max() < 0.0 and sd[~tumor.mask].min() > 0.0


def test_off_centre_marker_lands_on_the_same_voxel_in_simpleitk_and_nibabel(tmp_path):
    direction = Rotation.from_euler("xyz", [8, 15, -25], degrees=True).as_matrix()
    patient = make_small_patient(direction)
    grid = patient.grid
    point_lps = grid.index_to_world([29.0, 7.0, 19.0]) + np.array([0.2, -0.1, 0.15])
    kji = grid.world_to_kji(point_lps)
    marker = np.zeros(grid.shape, np.uint8)
    marker[kji] = 1
    path = write_image(marker, grid, tmp_path / "marker.nii.gz")
    # SimpleITK: physical point → index
    image = sitk.ReadImage(str(path))
    assert tuple(image.TransformPhysicalPointToIndex(tuple(point_lps))) == (kji[2], kji[1], kji[0])
    # nibabel: RAS affine, array in (i, j, k) order
    nifti = nib.load(str(path))
    ijk = np.linalg.inv(nifti.affine) @ np.append(lps_to_ras(point_lps), 1.0)
    i, j, k = np.rint(ijk[:3]).astype(int)
    assert nifti.get_fdata()[i, j, k] == 1
    assert int(nifti.get_fdata().sum()) == 1


# ----------------------------------------------------------------------------- bad input
@pytest.fixture
def folder(tmp_path, small_patient) -> Path:
    save_patient(small_patient, tmp_path / "p")
    return tmp_path / "p"


def _edit_yaml(folder: Path, edit) -> None:
    path = folder / "structures.yaml"
    document = yaml.safe_load(path.read_text())
    edit(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def test_missing_image(folder):
    (folder / "ct.nii.gz").unlink()
    with pytest.raises(InputFileError, match="does not exist"):
        load_patient(folder)


def test_missing_folder_and_missing_yaml(tmp_path, folder):
    with pytest.raises(InputFileError, match="does not exist"):
        load_patient(tmp_path / "nope")
    (folder / "structures.yaml").unlink()
    with pytest.raises(InputFileError, match=r"no structures.yaml"):
        load_patient(folder)


def test_truncated_nifti(folder):
    data = (folder / "ct.nii.gz").read_bytes()
    (folder / "ct.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match=r"truncated or corrupt|cannot be read"):
        load_patient(folder)


def test_label_image_on_another_grid(folder, small_patient):
    labels, _ = small_patient.label_image()
    shifted = type(small_patient.grid)(
        shape=small_patient.grid.shape,
        spacing_mm=small_patient.grid.spacing_mm,
        origin_mm=(0.0, 0.0, 0.0),
    )
    write_image(labels, shifted, folder / "labels.nii.gz")
    with pytest.raises(GridError, match=r"label image labels.nii.gz is on a different grid"):
        load_patient(folder)


def test_label_value_not_named(folder, small_patient):
    labels, _ = small_patient.label_image()
    labels[0, 0, 0] = 9
    write_image(labels, small_patient.grid, folder / "labels.nii.gz")
    with pytest.raises(StructureError, match=r"value 9 that structures.yaml does not name"):
        load_patient(folder)


def test_empty_target(folder, small_patient):
    labels, _ = small_patient.label_image()
    labels[labels == 2] = 1
    write_image(labels, small_patient.grid, folder / "labels.nii.gz")
    with pytest.raises(StructureError, match="target 'tumor' is empty"):
        load_patient(folder)


@pytest.mark.parametrize("bad", ["0", "nan"])
def test_zero_or_nan_spacing(folder, small_patient, bad):
    image_path = folder / "ct.nrrd"
    sitk.WriteImage(small_patient.grid.to_sitk(small_patient.image), str(image_path), False)
    raw = image_path.read_bytes()
    header, _, body = raw.partition(b"\n\n")
    lines = [
        line
        if not line.startswith(b"space directions:")
        else f"space directions: ({bad},0,0) (0,1.1,0) (0,0,2)".encode()
        for line in header.split(b"\n")
    ]
    image_path.write_bytes(b"\n".join(lines) + b"\n\n" + body)
    (folder / "ct.nii.gz").unlink()
    _edit_yaml(folder, lambda d: d.update(image="ct.nrrd"))
    with pytest.raises((GridError, InputFileError)) as info:
        load_patient(folder)
    assert "spacing" in str(info.value) or "direction" in str(info.value) or "header" in str(info.value)


def test_zero_spacing_nifti_written_by_nibabel(folder, small_patient):
    nifti = nib.load(str(folder / "ct.nii.gz"))
    header = nifti.header.copy()
    header["pixdim"][1] = 0.0
    header.set_qform(None, code=0)
    header.set_sform(None, code=0)
    broken = nib.Nifti1Image(np.asarray(nifti.dataobj), None, header)
    nib.save(broken, str(folder / "ct.nii.gz"))
    with pytest.raises(GridError, match="spacing"):
        load_patient(folder)


def test_nan_voxels(folder, small_patient):
    """A NaN written by another tool (nibabel keeps it; ITK would silently read 0)."""
    nifti = nib.load(str(folder / "ct.nii.gz"))
    data = np.asarray(nifti.dataobj).astype(np.float32)
    data[3, 4, 5] = np.nan
    nib.save(nib.Nifti1Image(data, nifti.affine), str(folder / "ct.nii.gz"))
    with pytest.raises(InputFileError, match="1 NaN"):
        load_patient(folder)


def test_writing_nan_is_refused(tmp_path, small_patient):
    image = small_patient.image.astype(np.float32)
    image[0, 0, 0] = np.inf
    with pytest.raises(InputFileError, match="refusing to write"):
        write_image(image, small_patient.grid, tmp_path / "x.nii.gz")
    assert not list(tmp_path.iterdir())


def test_unknown_tissue(folder):
    _edit_yaml(folder, lambda d: d["structures"][0].update(tissue="livr"))
    with pytest.raises(TissueError, match="livr") as info:
        load_patient(folder)
    assert "liver" in str(info.value)


def test_unknown_role_and_unknown_key(folder):
    _edit_yaml(folder, lambda d: d["structures"][0].update(role="tumour"))
    with pytest.raises(StructureError, match=r"structures.0.role"):
        load_patient(folder)
    _edit_yaml(folder, lambda d: (d["structures"][0].update(role="organ"), d.update(colour="red")))
    with pytest.raises(StructureError, match="colour"):
        load_patient(folder)


def test_unwritable_output_leaves_nothing(tmp_path, small_patient):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        save_patient(small_patient, blocker / "p")
    with pytest.raises(OutputError, match="not an insitu output"):
        (tmp_path / "user").mkdir()
        (tmp_path / "user" / "thesis.tex").write_text("keep me")
        save_patient(small_patient, tmp_path / "user")
    assert (tmp_path / "user" / "thesis.tex").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "user"]


def test_failed_save_leaves_previous_output_intact(tmp_path, small_patient, monkeypatch):
    save_patient(small_patient, tmp_path / "p")
    before = sorted(p.name for p in (tmp_path / "p").rglob("*"))
    import insitu.io.patient_folder as pf

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pf, "write_image", boom)
    with pytest.raises(RuntimeError):
        save_patient(small_patient, tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["p"]


def test_read_image_rejects_unknown_format(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(InputFileError, match="not a supported image format"):
        read_image(path)


def test_gzip_garbage_is_a_clear_error(tmp_path):
    path = tmp_path / "ct.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti file at all" * 20))
    with pytest.raises(InputFileError, match="cannot be read"):
        read_image(path)


# ----------------------------------------------------------------------------- CLI exit codes
def test_cli_bad_input_is_one_line_and_exit_code_2(run_cli, folder):
    (folder / "ct.nii.gz").unlink()
    code, _out, err = run_cli("info", folder)
    assert code == 2
    assert err.strip().count("\n") == 0
    assert err.startswith("error:") and "ct.nii.gz does not exist" in err


def test_cli_info_lists_structures(run_cli, folder):
    code, out, _ = run_cli("info", folder)
    assert code == 0
    assert "tumor" in out and "target" in out and "hcc" in out


def test_cli_info_json(run_cli, folder):
    import json

    code, out, _ = run_cli("info", folder, "--json")
    assert code == 0
    info = json.loads(out)
    assert {s["name"] for s in info["structures"]} == {"liver", "tumor", "portal_vein"}
    assert info["grid"]["spacing_mm"] == [0.9, 1.1, 2.0]


def test_cli_unwritable_output(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli("phantom", "--out", blocker / "p", "--spacing-mm", "3")
    assert code == 2 and "error:" in err and err.strip().count("\n") == 0
    assert not (blocker.parent / "p").exists()


def test_copy_of_folder_loads(tmp_path, folder):
    shutil.copytree(folder, tmp_path / "copy")
    assert load_patient(tmp_path / "copy").structures["tumor"].voxel_count > 0


def test_outputs_get_normal_permissions(tmp_path, small_patient):
    import os
    import stat

    save_patient(small_patient, tmp_path / "p")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "p").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "p" / "ct.nii.gz").stat().st_mode) == 0o666 & ~umask
