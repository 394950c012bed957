"""Transcatheter steps on the phantom: TAE / TAI / TACE / TACE+PVCE write perfusion and drug into the state, and
an RFA after TACE grows from the lowered tumour perfusion alone (the RFA code knows nothing of TACE)."""

from __future__ import annotations

import numpy as np
import pytest

from insitu.demo import demo_plan
from insitu.errors import InsituError
from insitu.patient.phantom import PhantomSpec, make_phantom
from insitu.plan import plan_from_dict
from insitu.simulation import simulate
from insitu.state import TissueState
from insitu.therapies.vascular_bed import ARTERIAL, nearest_segment, vascular_bed
from insitu.tissue.library import load_library

RFA_S = 300.0  # a shortened Cool-tip run keeps the test small; the comparison is relative


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(PhantomSpec(spacing_mm=2.0))


def _step(therapy: str, protocol: dict, placement: dict | None = None) -> dict:
    return {
        "therapy": therapy,
        "device": "microcatheter-2.7fr",
        "placement": placement or {"auto": True},
        "protocol": protocol,
    }


def _run(phantom, steps: list[dict]):
    plan = plan_from_dict({"patient": "phantom", "targets": ["tumor_1"], "steps": steps})
    return simulate(plan, patient=phantom)


def test_tace_lowers_tumour_arterial_perfusion_and_leaves_drug(phantom):
    out = _run(phantom, [_step("tace", {"technique": "deb", "dose_mg": 75})])
    state, result = out.final_state, out.steps[0]
    tumour = phantom.structure("tumor_1").mask.astype(bool)
    before = TissueState.from_patient(phantom, load_library())
    drop = 1.0 - state.perfusion_arterial_per_s[tumour].sum() / before.perfusion_arterial_per_s[tumour].sum()
    assert drop > 0.9
    assert result.metrics["tumour_territory_coverage"] >= 0.95
    # the portal supply is untouched by an arterial step
    np.testing.assert_array_equal(state.perfusion_portal_per_s, before.perfusion_portal_per_s)
    assert result.metrics["drug_tumour_mg"] > 0.0
    # embolized fraction: the share of total inflow lost, consistent with the perfusion maps (territories that
    # gained flow from the redistribution count as not embolized)
    lost = 1.0 - state.perfusion_per_s[tumour] / before.perfusion_per_s[tumour]
    np.testing.assert_allclose(state.embolized_fraction[tumour], np.clip(lost, 0.0, 1.0), atol=1e-5)
    assert result.curves["plasma_ng_ml"][0] == 0.0


def test_tace_figure_is_written_and_a_drug_only_step_is_refused(phantom, tmp_path):
    from insitu.report.transcatheter_figure import render_transcatheter
    from insitu.therapies.transcatheter import target_mask

    tumour = target_mask(phantom, ["tumor_1"])
    out = _run(phantom, [_step("tace", {"technique": "deb", "dose_mg": 75})])
    path = render_transcatheter(out.steps[0], phantom, tumour, tmp_path / "tace.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    tai = _run(phantom, [_step("tai", {"drug": "5-fu", "dose_mg": 10.0})])
    with pytest.raises(InsituError, match="no arterial inflow field"):
        render_transcatheter(tai.steps[0], phantom, tumour, tmp_path / "tai.png")
    assert not (tmp_path / "tai.png").exists()


def test_tai_changes_no_perfusion_and_conserves_drug(phantom):
    out = _run(phantom, [_step("tai", {"drug": "5-fu", "dose_mg": 100.0, "infusion_duration_s": 600})])
    state, result = out.final_state, out.steps[0]
    before = TissueState.from_patient(phantom, load_library())
    np.testing.assert_array_equal(state.perfusion_arterial_per_s, before.perfusion_arterial_per_s)
    voxel_ml = phantom.grid.voxel_volume_ml
    in_tissue = float(state.drug_mg_per_ml.sum()) * voxel_ml
    # what the liver kept (first-pass extraction) is what the territories hold
    assert in_tissue == pytest.approx(result.metrics["drug_tumour_mg"] + result.metrics["drug_liver_mg"], rel=1e-3)
    assert 0.0 < in_tissue < 100.0


def test_catheter_in_a_too_narrow_vessel_is_a_clear_error(phantom):
    bed = vascular_bed(phantom, ARTERIAL)
    tree = bed.tree
    small = int(tree.terminals[np.argmin(tree.radius_mm[tree.terminals])])
    tip = tuple(float(v) for v in tree.points_mm[small])
    node, _ = nearest_segment(tree, np.asarray(tip))
    assert 2 * tree.radius_mm[node] < 0.9
    with pytest.raises(InsituError, match="narrower than the"):
        _run(phantom, [_step("tae", {}, {"tip_mm": tip})])


def test_unknown_agent_and_wrong_device_are_one_line_errors(phantom):
    with pytest.raises(InsituError, match="catheter"):
        plan_from_dict({"patient": "phantom", "steps": [{**_step("tae", {}), "device": "rf-cooled-17g-30mm"}]})
    with pytest.raises(InsituError, match="dc_bead"):
        plan_from_dict({"patient": "phantom", "steps": [_step("tace", {"technique": "deb", "agent": "lipiodol"})]})


def test_tace_pvce_drops_both_supplies_and_reports_the_remnant(phantom):
    out = _run(phantom, [_step("tace_pvce", {"dose_mg": 50, "height_cm": 175, "weight_kg": 70})])
    state, metrics = out.final_state, out.steps[0].metrics
    tumour = phantom.structure("tumor_1").mask.astype(bool)
    before = TissueState.from_patient(phantom, load_library())
    assert state.perfusion_arterial_per_s[tumour].sum() < 0.1 * before.perfusion_arterial_per_s[tumour].sum()
    assert state.perfusion_portal_per_s[tumour].sum() < 0.1 * before.perfusion_portal_per_s[tumour].sum()
    # the tumour sits in segment VIII: right portal embolization; the remnant is the left liver
    assert metrics["portal_branch_dice"] > 0.8
    liver_ml = float(vascular_bed(phantom, ARTERIAL).domain.sum()) * phantom.grid.voxel_volume_ml
    tumour_ml = float(tumour.sum()) * phantom.grid.voxel_volume_ml
    assert metrics["flr_ml"] + metrics["portal_embolized_ml"] == pytest.approx(liver_ml - tumour_ml, rel=0.02)
    assert 0.1 < metrics["flr_fraction"] < 0.5
    assert metrics["flr_ml_week_6"] > metrics["flr_ml"]
    assert 0.05 < metrics["sflr"] < 0.6


def _rfa_step(phantom) -> dict:
    plan, _ = demo_plan(phantom)
    step = plan.steps[0].model_dump(mode="json")
    step["protocol"]["duration_s"] = RFA_S
    return step


def _normal_liver_rfa_and_tip(phantom, rfa: dict) -> tuple[dict, list[float]]:
    """The RFA moved into normal liver far from the tumour, and a catheter tip on the artery feeding it."""
    from scipy import ndimage

    bed = vascular_bed(phantom, ARTERIAL)
    tumour = phantom.structure("tumor_1").mask.astype(bool)
    liver = bed.domain & ~tumour
    depth = ndimage.distance_transform_edt(liver, sampling=phantom.grid.spacing_kji_mm)
    far = ndimage.distance_transform_edt(~tumour, sampling=phantom.grid.spacing_kji_mm)
    score = np.where(far > 35.0, depth, 0.0)
    k, j, i = np.unravel_index(int(np.argmax(score)), score.shape)
    assert depth[k, j, i] > 10.0
    centre = phantom.grid.index_to_world(np.array([i, j, k], dtype=float))
    d = np.asarray(rfa["placement"]["direction"], dtype=float)
    moved = {
        **rfa,
        "placement": {**rfa["placement"], "tip_mm": [float(v) for v in centre + 15.0 * d / np.linalg.norm(d)]},
    }
    node, _ = nearest_segment(bed.tree, centre)
    while 2 * bed.tree.radius_mm[node] < 1.2:  # a segmental branch a 2.7 Fr microcatheter reaches
        node = int(bed.tree.parent[node])
    return moved, [float(v) for v in bed.tree.points_mm[node]]


def test_rfa_after_tace_grows_in_the_tumour_and_little_in_normal_liver(phantom):
    # the same RFA before and after TACE: the HCC loses its mostly arterial perfusion (arterial fraction 0.753,
    # tissues.yaml) and the zone grows; normal liver is mostly portal-fed (0.164), so the same embolization of
    # its artery changes an RFA there much less. Nothing in the RFA code knows about TACE.
    key = "ablation_volume_ml"
    rfa = _rfa_step(phantom)
    alone = _run(phantom, [rfa]).steps[0].metrics
    after = _run(phantom, [_step("tace", {"technique": "deb", "dose_mg": 75}), rfa]).steps[1].metrics
    tumour_gain = after[key] / alone[key] - 1.0
    assert tumour_gain > 0.08  # measured 0.11 at 2 mm, 300 s
    assert after["short_axis_mm"] - alone["short_axis_mm"] > 1.0  # measured 2.0 mm
    normal_rfa, tip = _normal_liver_rfa_and_tip(phantom, rfa)
    alone_n = _run(phantom, [normal_rfa]).steps[0].metrics
    tae = _run(phantom, [_step("tae", {"embolic_volume_ml": 2.0}, {"tip_mm": tip}), normal_rfa])
    assert tae.steps[0].metrics["infused_territory_ml"] > 50.0  # the embolization did reach this liver
    normal_gain = tae.steps[1].metrics[key] / alone_n[key] - 1.0
    assert 0.0 <= normal_gain < 0.6 * tumour_gain  # measured 0.05 against 0.11


def test_a_patient_without_trees_gets_them_from_the_segmentations(phantom):
    # a patient folder brings masks, not graphs: the bed extracts the portal vein from the 'portal_vein' mask
    from dataclasses import replace

    from scipy import ndimage

    from insitu.therapies.vascular_bed import PORTAL, find_tree

    bare = replace(phantom, trees={}, structures=dict(phantom.structures))
    tree = find_tree(bare, PORTAL)
    tree.validate()
    assert tree.terminals.size >= 10
    # the extracted tree lies on the drawn vein: its nodes are inside (or one voxel from) the mask
    mask = phantom.structure("portal_vein").mask.astype(bool)
    near = ndimage.binary_dilation(mask, iterations=1)
    kji = np.array([phantom.grid.world_to_kji(p) for p in tree.points_mm])
    assert near[kji[:, 0], kji[:, 1], kji[:, 2]].mean() > 0.9
    # its inlet is the widest end: the portal trunk (the phantom draws it at 6.5 mm radius)
    assert tree.radius_mm[0] == pytest.approx(6.5, abs=1.0)  # measured 6.04
    bare.structures.pop("hepatic_artery")
    with pytest.raises(InsituError, match="neither a hepatic artery tree"):
        find_tree(bare, ARTERIAL)


def test_particles_larger_than_the_lumen_and_unknown_agents_are_clear_errors(phantom):
    # an unknown agent or drug is refused when the plan is read, before anything runs
    with pytest.raises(InsituError, match="unknown embolic agent 'nbca'"):
        plan_from_dict({"patient": "phantom", "steps": [_step("tae", {"agent": "nbca"})]})
    with pytest.raises(InsituError, match="drug"):
        plan_from_dict({"patient": "phantom", "steps": [_step("tai", {"drug": "doxorubicine-x"})]})
    # 1–2 mm gelatin pieces cannot leave a microcatheter sitting in a ~1.5 mm artery
    with pytest.raises(InsituError, match=r"larger than the .* lumen at the catheter tip"):
        _run(phantom, [_step("tae", {"agent": "gelatin_sponge_1000_2000"})])
