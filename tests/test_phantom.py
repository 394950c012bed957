"""The built-in phantom at default settings: the acceptance numbers of issue 2."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from insitu.errors import StructureError
from insitu.geometry import segment_segment_distance
from insitu.io.patient_folder import load_patient, save_patient
from insitu.patient.phantom import PhantomSpec, TumorSpec, ct_numbers, make_phantom


@pytest.fixture(scope="module")
def phantom():
    """The default phantom (1 mm, one 30 mm HCC in segment VIII), built once for this module."""
    return make_phantom(PhantomSpec())


def test_default_grid_covers_the_upper_abdomen(phantom):
    assert phantom.grid.size_ijk == (300, 220, 200)
    assert phantom.grid.spacing_mm == (1.0, 1.0, 1.0)


def test_liver_volume_is_adult(phantom):
    liver = phantom.structures["liver"]
    assert 1200.0 <= liver.volume_ml <= 1800.0
    assert 1200.0 <= phantom.metadata["liver_organ_ml"] <= 1800.0


def test_tumour_volume_matches_requested_sphere(phantom):
    tumor = phantom.structures["tumor_1"]
    sphere_ml = 4.0 / 3.0 * np.pi * 15.0**3 / 1000.0
    assert tumor.volume_ml == pytest.approx(sphere_ml, rel=0.10)
    assert tumor.role.value == "target" and tumor.tissue == "hcc"
    assert phantom.metadata["tumors"][0]["segment"] == "VIII"


def test_tumour_is_lobulated_not_a_sphere(phantom):
    tumor = phantom.structures["tumor_1"]
    sd = tumor.signed_distance_mm()
    surface = np.argwhere(np.abs(sd) < 0.6)
    radii = np.linalg.norm(phantom.grid.index_to_world(surface[:, ::-1].astype(float)) - tumor.centroid_mm, axis=1)
    assert radii.std() > 0.5  # a sphere voxelised at 1 mm has a spread of ~0.3 mm


def test_murray_law_at_every_bifurcation(phantom):
    assert set(phantom.trees) == {
        "portal_vein",
        "hepatic_artery",
        "right_hepatic_vein",
        "middle_hepatic_vein",
        "left_hepatic_vein",
    }
    for tree in phantom.trees.values():
        residuals = tree.murray_residuals(3.0)
        assert len(residuals) > 5
        assert float(np.max(residuals)) < 1e-6


def _sample_centrelines(tree, step_mm=0.5):
    points, radii = [], []
    for n in range(1, len(tree.points_mm)):
        a, b = tree.points_mm[tree.parent[n]], tree.points_mm[n]
        count = max(2, int(np.ceil(np.linalg.norm(b - a) / step_mm)) + 1)
        t = np.linspace(0.0, 1.0, count)[:, None]
        points.append(a + t * (b - a))
        radii.append(np.full(count, tree.radius_mm[n]))
    return np.concatenate(points), np.concatenate(radii)


def test_trees_lie_inside_the_liver(phantom):
    organ = phantom.label_maps["couinaud"][0] > 0
    for tree in phantom.trees.values():
        points, _ = _sample_centrelines(tree)
        ijk = phantom.grid.world_to_voxel(points)
        inside = organ[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
        assert inside.mean() == 1.0, f"{tree.name}: {np.count_nonzero(~inside)} centreline samples outside the liver"


def test_trees_do_not_intersect_each_other(phantom):
    trees = list(phantom.trees.values())
    for a_index, a in enumerate(trees):
        for b in trees[a_index + 1 :]:
            mid_b = 0.5 * (b.points_mm[1:] + b.points_mm[b.parent[1:]])
            half_b = 0.5 * np.linalg.norm(b.points_mm[1:] - b.points_mm[b.parent[1:]], axis=1)
            index = cKDTree(mid_b)
            reach = half_b.max() + b.radius_mm[1:].max()
            worst = np.inf
            for n in range(1, len(a.points_mm)):
                p0, p1 = a.points_mm[a.parent[n]], a.points_mm[n]
                mid = 0.5 * (p0 + p1)
                for m in index.query_ball_point(mid, 0.5 * np.linalg.norm(p1 - p0) + a.radius_mm[n] + reach):
                    q1 = b.points_mm[m + 1]
                    q0 = b.points_mm[b.parent[m + 1]]
                    gap = segment_segment_distance(p0, p1, q0, q1) - a.radius_mm[n] - b.radius_mm[m + 1]
                    worst = min(worst, gap)
            assert worst >= -1e-9, f"{a.name} and {b.name} overlap by {-worst:.3f} mm"


def test_root_calibres_are_anatomical_and_taper_to_the_grid(phantom):
    from insitu.vascular.generate import load_anatomy

    # common hepatic artery on MDCT: 4.3 mm (type I) and 5.07 mm (variants), Bilir (anatomy.yaml)
    cha_diameter = max(
        e["value"]
        for e in load_anatomy()["calibres"]["common_hepatic_artery_diameter_mm"]
        if e["status"] == "confirmed"
    )
    pv = phantom.trees["portal_vein"]
    ha = phantom.trees["hepatic_artery"]
    rhv = phantom.trees["right_hepatic_vein"]

    # portal trunk and hepatic-vein confluence: many millimetres; proper hepatic artery: a few
    def root_radius(tree):
        return float(tree.radius_mm[tree.children(0)[0]])

    assert 2 * root_radius(pv) >= 8.0
    assert 2 * root_radius(rhv) >= 8.0
    assert 2.0 <= 2 * root_radius(ha) <= cha_diameter
    for tree in phantom.trees.values():
        terminal = tree.radius_mm[tree.terminals]
        assert root_radius(tree) > 3 * float(np.median(terminal))
        if tree.kind == "hepatic_artery":
            continue  # balanced arterioles far below the voxel size: tests/test_tumour_supply.py
        # the finest veins are about the voxel size (radius 0.3–1.2 voxels at 1 mm)
        assert 0.3 <= float(np.median(terminal)) <= 1.2, tree.name


def test_ct_numbers_per_tissue_are_documented(phantom):
    numbers = ct_numbers(phantom)
    image = phantom.image.astype(np.float64)
    # the synthetic CT reproduces each structure's documented value (median over its interior)
    for name in (
        "liver",
        "tumor_1",
        "aorta",
        "portal_vein",
        "kidney_right",
        "subcutaneous_fat",
        "lungs",
        "spine",
    ):
        structure = phantom.structures[name]
        from scipy import ndimage

        interior = ndimage.binary_erosion(structure.mask, iterations=2)
        if interior.sum() < 50:
            interior = structure.mask
        assert float(np.median(image[interior])) == pytest.approx(numbers[name], abs=8.0), name
    # arterial phase: HCC enhances above liver, aorta above portal vein, fat and lung negative
    assert numbers["tumor_1"] > numbers["liver"] + 20
    assert numbers["aorta"] > numbers["portal_vein"] > numbers["hepatic_veins"]
    assert numbers["subcutaneous_fat"] < -50 and numbers["lungs"] < -600
    noise = image[ndimage.binary_erosion(phantom.structures["liver"].mask, iterations=3)].std()
    assert 5.0 < noise < 25.0


def test_couinaud_segments(phantom):
    labels, names = phantom.label_maps["couinaud"]
    counts = np.bincount(labels.reshape(-1), minlength=9)[1:]
    fractions = counts / counts.sum()
    assert all(counts > 0)
    assert names[8] == "VIII"
    # portal-perfusion volumetry (HPB 2013, PMID 24033584): VIII largest (median 26.1 %, range 11–38 %),
    # II and III each below 10 %
    assert int(np.argmax(fractions)) + 1 == 8
    assert 0.111 <= fractions[7] <= 0.380
    assert fractions[1] < 0.10 and fractions[2] < 0.10


def test_every_body_voxel_has_a_known_tissue(phantom):
    from insitu.tissue.library import load_library

    library = load_library()
    tissue = phantom.tissue_index_volume(library)
    assert tissue.dtype == np.uint8
    assert (
        tissue[phantom.structures["tumor_1"].mask].tolist().count(library.index_of("hcc"))
        == phantom.structures["tumor_1"].voxel_count
    )


def test_same_seed_same_phantom_and_other_seed_differs():
    a = make_phantom(PhantomSpec(spacing_mm=3.0, seed=4))
    b = make_phantom(PhantomSpec(spacing_mm=3.0, seed=4))
    c = make_phantom(PhantomSpec(spacing_mm=3.0, seed=5))
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)


def test_tumour_options(tmp_path):
    spec = PhantomSpec(
        spacing_mm=2.0,
        tumors=(
            TumorSpec(diameter_mm=20.0, segment="VI", kind="metastasis"),
            TumorSpec(diameter_mm=16.0, segment=2),
        ),
        lymph_nodes=3,
    )
    patient = make_phantom(spec)
    assert [t["segment"] for t in patient.metadata["tumors"]] == ["VI", "II"]
    assert patient.structures["tumor_1"].tissue == "liver_metastasis"
    assert sum(name.startswith("lymph_node_") for name in patient.structures) == 3
    save_patient(patient, tmp_path / "p")
    assert load_patient(tmp_path / "p").structures["tumor_2"].voxel_count == patient.structures["tumor_2"].voxel_count


def test_tumour_near_a_vessel_keeps_the_requested_gap():
    spec = PhantomSpec(
        spacing_mm=1.5,
        tumors=(TumorSpec(diameter_mm=20.0, segment=7, near_vessel="hepatic_veins", vessel_distance_mm=5.0),),
    )
    patient = make_phantom(spec)
    from scipy import ndimage

    # the gap is measured to the hepatic-vein branches of ≥ 5 mm (an assured heat sink, Lu 2002)
    large = np.zeros(patient.grid.shape, bool)
    for tree in patient.trees.values():
        if str(tree.kind) == "hepatic_vein":
            large |= tree.rasterize(patient.grid, min_radius_mm=2.5)
    distance = ndimage.distance_transform_edt(~large, sampling=patient.grid.spacing_kji_mm)
    gap = float(distance[patient.structures["tumor_1"].mask].min())
    assert gap == pytest.approx(5.0, abs=1.5 + 1.5)  # ± one voxel each side of the surface


def test_impossible_tumour_requests_are_clear_errors():
    with pytest.raises(StructureError, match="does not fit"):
        make_phantom(PhantomSpec(spacing_mm=3.0, tumors=(TumorSpec(diameter_mm=90.0, segment=3),)))
    with pytest.raises(StructureError, match="Couinaud segment"):
        TumorSpec(segment="IX")
    with pytest.raises(StructureError, match="spacing"):
        PhantomSpec(spacing_mm=0.0)


def test_round_trip_of_the_phantom_is_exact(tmp_path, phantom):
    save_patient(phantom, tmp_path / "phantom")
    loaded = load_patient(tmp_path / "phantom")
    assert loaded.grid == phantom.grid
    np.testing.assert_array_equal(loaded.image, phantom.image)
    assert list(loaded.structures) == list(phantom.structures)
    for name, structure in phantom.structures.items():
        np.testing.assert_array_equal(loaded.structures[name].mask, structure.mask)
        assert loaded.structures[name].role == structure.role
        assert loaded.structures[name].tissue == structure.tissue
    for name, tree in phantom.trees.items():
        np.testing.assert_array_equal(loaded.trees[name].points_mm, tree.points_mm)
        np.testing.assert_array_equal(loaded.trees[name].radius_mm, tree.radius_mm)
    np.testing.assert_array_equal(loaded.label_maps["couinaud"][0], phantom.label_maps["couinaud"][0])
