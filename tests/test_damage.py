"""Thermal damage: exact isothermal cases (thermal.md V4, §3.1 table, hifu.md §8 case 6), the
three-state model against a high-accuracy ODE solution, criteria, perfusion shut-down, properties
(monotone, additive, voxel-order invariant) and bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from insitu.errors import PhysicsError
from insitu.physics import damage_verification as dv
from insitu.physics.damage import (
    CHUNK,
    DATA_FILE,
    DamageAccumulator,
    arrhenius_set,
    entropy_enthalpy_residual,
    eyring_to_arrhenius,
    load_damage_models,
    three_state_set,
)

ALL = ("arrhenius:liver_comsol", "arrhenius:liver_jacques", "cem43", "three_state", "extremes")
OMEGA_C = "arrhenius_omega_liver_comsol"
OMEGA_J = "arrhenius_omega_liver_jacques"
HYP = settings(max_examples=30, deadline=None)


def vol(values, shape=None) -> np.ndarray:
    a = np.asarray(values, dtype=np.float32)
    return a.reshape(shape if shape is not None else (1, 1, a.size))


# ----------------------------------------------------------------------------------- V4 / exact cases
@pytest.mark.parametrize(("name", "printed"), [("liver_comsol", 3.43), ("liver_jacques", 44.2)])
@pytest.mark.parametrize("steps", [1, 3, 10, 100, 1000])
def test_v4_omega_is_one_at_the_exact_isothermal_time(name, printed, steps):
    t_star = (
        math.exp(arrhenius_set(name).ea_j_mol / (load_damage_models().gas_constant * 333.15))
        / arrhenius_set(name).a_1_s
    )
    assert t_star == pytest.approx(printed, abs=0.005 if printed < 10 else 0.05)
    omega = dv.isothermal_omega(name, 60.0, t_star, steps)
    assert omega == pytest.approx(1.0, rel=1e-6)
    assert abs(omega - 1.0) < 1e-12  # in fact to round-off


@given(temp=st.floats(45.0, 95.0), steps=st.integers(1, 400))
@HYP
def test_isothermal_omega_exact_for_any_step_that_divides_the_interval(temp, steps):
    s = arrhenius_set("liver_comsol")
    t_star = s.time_to_omega_s(np.float32(temp))
    assert dv.isothermal_omega("liver_comsol", float(np.float32(temp)), t_star, steps) == pytest.approx(1.0, rel=1e-6)


def test_v4_and_hifu6_cem43_numbers():
    t240 = 240.0 * 60.0 * 0.5 ** (60 - 43)  # 0.10986 s, "0.11 s" in thermal.md §3.3
    assert t240 == pytest.approx(0.11, abs=0.005)
    assert dv.isothermal_cem43(60.0, t240) == pytest.approx(240.0, rel=1e-6)
    assert dv.isothermal_cem43(60.0, t240, steps=7) == pytest.approx(240.0, rel=1e-6)
    cem = dv.isothermal_cem43(56.0, 10.0, steps=10)
    assert cem == pytest.approx(10.0 / 60.0 * 2.0**13, rel=1e-6)
    assert round(cem, 1) == 1365.3  # hifu.md §8 case 6 as printed
    assert dv.isothermal_cem43(43.0, 240.0 * 60.0, steps=240) == pytest.approx(240.0, rel=1e-6)
    assert dv.isothermal_cem43(42.0, 60.0) == pytest.approx(0.25, rel=1e-12)  # R = 0.25 below 43 °C
    for temp, printed in dv.CEM43_TABLE_S.items():  # thermal.md §3.3
        assert 240.0 / dv.isothermal_cem43(temp, 1.0) == pytest.approx(printed, rel=0.02)


@pytest.mark.parametrize("name", ["liver_comsol", "liver_jacques"])
def test_isothermal_time_table_of_thermal_md(name):
    times = dv.isothermal_times(name, dv.ISOTHERMAL_TABLE_C)
    closed = arrhenius_set(name).time_to_omega_s(np.asarray(dv.ISOTHERMAL_TABLE_C))
    np.testing.assert_allclose(times, closed, rtol=1e-12)
    for t_sim, printed in zip(times, dv.ISOTHERMAL_TABLE_S[name], strict=True):
        assert float(f"{t_sim:.3g}") == pytest.approx(printed, rel=1e-12), (name, t_sim, printed)


def test_jacques_eyring_conversion():
    s = arrhenius_set("liver_jacques")
    assert s.status == "derived" and s.delta_s_j_mol_k == 553.5 and s.delta_h_j_mol == 2.768e5
    assert s.a_1_s == pytest.approx(1.5e42, rel=0.04)  # thermal.md: A ≈ 1.5 × 10⁴²
    assert s.ea_j_mol == pytest.approx(2.796e5, rel=2e-4)  # Ea ≈ 2.796 × 10⁵
    m = load_damage_models()
    temps = np.array([45.0, 50.0, 55.0, 60.0, 65.0, 70.0, 80.0])
    t_k = temps + 273.15
    eyring = m.boltzmann * t_k / m.planck * np.exp(553.5 / m.gas_constant - 2.768e5 / (m.gas_constant * t_k))
    ratio = s.rate_1_s(temps) / eyring
    assert ratio[3] == pytest.approx(1.0, rel=1e-12)  # matched at T* = 60 °C
    assert np.all(np.abs(ratio - 1.0) < 2e-3)  # and close over 45–80 °C
    a, ea = eyring_to_arrhenius(553.5, 2.768e5, 60.0)
    assert (a, ea) == (s.a_1_s, s.ea_j_mol)


def test_entropy_enthalpy_sanity_relation_for_liver_sets():
    for name in ("liver_comsol", "liver_jacques"):
        ds, predicted, residual = entropy_enthalpy_residual(name)
        assert abs(residual) / ds < 0.1, (name, ds, predicted)  # Jacques 2006: ΔS ≈ a + bΔH
    assert entropy_enthalpy_residual("liver_jacques")[2] == pytest.approx(553.5 - (-327.5 + 31.47e-4 * 2.768e5))


def test_every_yaml_entry_has_a_source_and_a_status():
    raw = yaml.safe_load(DATA_FILE.read_text(encoding="utf-8"))
    sources = raw["sources"]
    statuses = {"confirmed", "derived", "recalled", "choice"}
    m = load_damage_models()
    assert len(m.arrhenius) >= 4 and {"liver_comsol", "liver_jacques", "fat", "prostate"} <= set(m.arrhenius)
    for s in m.arrhenius.values():
        assert s.source in sources and s.status in statuses, s.name
        assert s.a_1_s > 0 and s.ea_j_mol > 0

    def walk(node, path):
        if isinstance(node, dict):
            if "source" in node:
                assert node["source"] in sources, path
                assert node.get("status") in statuses, path
            for k, v in node.items():
                if k != "sources":
                    walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for k, v in enumerate(node):
                walk(v, f"{path}[{k}]")

    walk(raw, "")
    assert (arrhenius_set("fat").a_1_s, arrhenius_set("prostate").ea_j_mol) == (4.43e16, 5.6e5)
    ts = three_state_set()
    assert (ts.kf_bar_1_s, ts.kb_1_s, ts.tk_c, ts.dead_threshold) == (3.33e-3, 7.77e-3, 40.5, 0.8)


# ----------------------------------------------------------------------------------- three-state
def test_three_state_converges_at_fourth_order_against_solve_ivp():
    conv = dv.three_state_convergence(70.0, 800.0, (4.0, 2.0, 1.0))
    assert all(a > b for a, b in itertools.pairwise(conv["errors"]))
    assert all(3.6 < p < 4.4 for p in conv["orders"]), conv
    assert conv["dead_reference"] > 0.8  # D passes the threshold (at 691 s)
    for dt in (0.05, 0.25, 1.0):  # explicit bioheat steps
        a, d = dv.three_state_run(70.0, 800.0, dt)
        assert abs(d - conv["dead_reference"]) < 1e-9 and abs(a - conv["alive_reference"]) < 1e-9


def test_three_state_dead_rises_monotonically_and_fractions_sum_to_one():
    acc = DamageAccumulator((1, 1, 4), models=("three_state",))
    t = vol([45.0, 60.0, 80.0, 100.0])
    last = acc.state("three_state_dead").copy()
    for _ in range(600):
        acc.update(t, 1.0)
        a, d = acc.state("three_state_alive"), acc.state("three_state_dead")
        v = 1.0 - a - d
        assert np.all(d >= last) and np.all(v >= -1e-15) and np.all(a >= 0)
        np.testing.assert_allclose(a + v + d, 1.0, rtol=0, atol=1e-15)
        last = d.copy()
    d = acc.state("three_state_dead").ravel()
    assert np.all(np.diff(d) > 0)  # hotter dies faster
    assert acc.dead_mask("three_state").ravel().tolist() == [False, False, True, True]  # 100 °C: 243 s, 80 °C: 472 s


def test_three_state_cold_voxels_hold_and_damaged_voxels_keep_dying():
    acc = DamageAccumulator((1, 1, 2), models=("three_state",))
    ts = three_state_set()
    acc.update(vol([37.0, 80.0]), 300.0)  # one long step: substeps keep RK4 accurate
    a0, d_heated = acc.state("three_state_alive").ravel().copy(), acc.state("three_state_dead").ravel().copy()
    assert a0[0] == ts.initial_alive and d_heated[0] == 0.0  # untouched tissue stays at the initial state
    a_ref, d_ref = dv.three_state_reference(80.0, 300.0)
    assert d_heated[1] == pytest.approx(d_ref, abs=1e-7) and a0[1] == pytest.approx(a_ref, abs=1e-7)
    for _ in range(60):
        acc.update(vol([37.0, 37.0]), 10.0)
    d_after = acc.state("three_state_dead").ravel()
    assert d_after[0] == 0.0
    assert d_after[1] > d_heated[1] + 0.05  # vulnerable cells die at body temperature in this model


def test_three_state_never_undies_in_the_cold():
    acc = DamageAccumulator((1, 1, 1), models=("three_state",))
    acc.update(vol([90.0]), 200.0)
    d = float(acc.state("three_state_dead")[0, 0, 0])
    acc.update(vol([-120.0]), 600.0)  # k_f < 0 below −54 °C is clamped to 0
    assert float(acc.state("three_state_dead")[0, 0, 0]) >= d


# ----------------------------------------------------------------------------------- within-step rule
def test_linear_rule_is_second_order_and_constant_rule_first_order_on_a_ramp():
    lin = [abs(s - e) / e for s, e in (dv.ramp_omega(dt_s=dt) for dt in (1.0, 0.5, 0.25))]
    const = [abs(s - e) / e for s, e in (dv.ramp_omega(dt_s=dt, within_step="constant") for dt in (1.0, 0.5, 0.25))]
    assert all(1.8 < math.log2(a / b) < 2.2 for a, b in itertools.pairwise(lin)), lin
    assert all(0.9 < math.log2(a / b) < 1.1 for a, b in itertools.pairwise(const)), const
    assert lin[1] < 1e-4


def test_cem43_is_exact_for_a_linear_ramp_across_43():
    acc = DamageAccumulator((1, 1, 1), models=("cem43",), cem43_floor_c=-math.inf)
    acc.observe(vol([40.0]))
    acc.update(vol([50.0]), 20.0)  # 2 °C/s through the breakpoint
    slope = 10.0 / 20.0
    below = (1 - 0.25**3) / math.log(4) / slope  # ∫ 0.25^(43−T) dT/slope from 40 to 43 (s)
    above = (2.0**7 - 1) / math.log(2) / slope  # ∫ 2^(T−43) dT/slope from 43 to 50 (s)
    assert float(acc.state("cem43_min")[0, 0, 0]) == pytest.approx((below + above) / 60.0, rel=1e-12)


def test_accumulation_floors():
    acc = DamageAccumulator((1, 1, 1), models=("arrhenius", "cem43"))
    acc.update(vol([37.0]), 3600.0)
    assert float(acc.state(OMEGA_C)[0, 0, 0]) == 0.0 and float(acc.state("cem43_min")[0, 0, 0]) == 0.0
    raw = DamageAccumulator((1, 1, 1), models=("arrhenius",), arrhenius_floor_c=-math.inf)
    t37 = arrhenius_set("liver_comsol").time_to_omega_s(37.0)
    assert t37 == pytest.approx(3401.4, rel=1e-4)  # why the floor exists: unheated liver "dies" in an hour
    raw.update(vol([37.0]), t37)
    assert float(raw.state(OMEGA_C)[0, 0, 0]) == pytest.approx(1.0, rel=1e-6)


# ----------------------------------------------------------------------------------- criteria and perfusion
def _heated(models=ALL, **kw):
    acc = DamageAccumulator((3, 4, 5), models=models, **kw)
    t = np.full((3, 4, 5), 37.0, np.float32)
    t[1, 1:3, 1:4] = 70.0  # Ω ≫ 1 after 30 s
    t[0, 0, 0] = -45.0  # a frozen voxel
    for _ in range(30):
        acc.update(t, 1.0)
    return acc, t


def test_perfusion_factor_drops_to_zero_where_dead_and_stays_one_elsewhere():
    acc, t = _heated()
    hot = t == 70.0
    assert np.all(acc.state(OMEGA_C)[hot] >= 1.0) and np.all(acc.state(OMEGA_C)[~hot] == 0.0)
    f = acc.perfusion_factor()
    assert f.dtype == np.float32 and f.shape == t.shape
    assert np.all(f[hot] == 0.0) and np.all(f[~hot] == 1.0)
    assert acc.perfusion_factor() is f  # a buffer owned by the accumulator: no allocation per call
    out = np.empty_like(f)
    assert acc.perfusion_factor(out) is out and np.array_equal(out, f)
    smooth = DamageAccumulator(t.shape, models=ALL, perfusion_mode="smooth")
    smooth.update(t, 1.0)
    np.testing.assert_allclose(smooth.perfusion_factor(), np.exp(-smooth.state(OMEGA_C)), rtol=1e-6)
    three = DamageAccumulator(t.shape, models=("three_state",), perfusion_mode="smooth")
    three.update(t, 100.0)
    np.testing.assert_allclose(three.perfusion_factor(), 1.0 - three.state("three_state_dead"), rtol=1e-6)
    cold = DamageAccumulator(t.shape, models=("extremes",))
    assert np.all(cold.perfusion_factor() == 1.0)  # no criterion: perfusion intact
    resid = DamageAccumulator(t.shape, models=("arrhenius",), residual_perfusion=0.25)
    resid.update(t, 30.0)
    assert set(np.unique(resid.perfusion_factor()).tolist()) == {0.25, 1.0}


def test_dead_mask_criteria():
    acc, t = _heated()
    hot = t == 70.0
    assert np.array_equal(acc.dead_mask("arrhenius"), hot)
    assert np.array_equal(acc.dead_mask("arrhenius:liver_jacques"), acc.state(OMEGA_J) >= 1.0)
    assert acc.state(OMEGA_J)[hot].min() == pytest.approx(30.0 / 2.3363, rel=1e-3)  # 2.34 s at 70 °C
    assert np.array_equal(acc.dead_mask("cem43"), hot)  # 30 s at 70 °C ≫ 240 CEM43
    assert np.array_equal(acc.dead_mask("cem43:1e12"), np.zeros_like(hot))
    assert np.array_equal(acc.dead_mask("isotherm:60"), hot)
    assert np.array_equal(acc.dead_mask("isotherm:37"), t >= 37.0)
    cryo = np.zeros_like(hot)
    cryo[0, 0, 0] = True
    assert np.array_equal(acc.dead_mask("cryo:-40"), cryo)
    assert not acc.dead_mask("cryo:-50").any()
    assert not acc.dead_mask("three_state").any()  # 30 s is far too short for the three-state model
    f = acc.fields()
    assert f["max_temperature_c"][1, 1, 1] == 70.0 and f["min_temperature_c"][0, 0, 0] == -45.0
    assert all(v.dtype == np.float32 and v.shape == t.shape for v in f.values())
    assert set(f) == {OMEGA_C, OMEGA_J, "cem43_min", "three_state_alive", "three_state_dead"} | {
        "max_temperature_c",
        "min_temperature_c",
    }


def test_criteria_need_their_models():
    acc = DamageAccumulator((2, 2, 2), models=("arrhenius",))
    for criterion, word in (("cem43", "cem43"), ("three_state", "three-state"), ("isotherm:60", "extremes")):
        with pytest.raises(PhysicsError, match=word):
            acc.dead_mask(criterion)
    with pytest.raises(PhysicsError, match="did you mean 'isotherm'"):
        acc.dead_mask("isotherms:60")
    with pytest.raises(PhysicsError, match="no valid number"):
        DamageAccumulator((2, 2, 2), models=("extremes",)).dead_mask("isotherm:hot")
    with pytest.raises(PhysicsError, match="smooth"):
        DamageAccumulator((2, 2, 2), models=("cem43",), perfusion_mode="smooth")


# ----------------------------------------------------------------------------------- properties
temps = st.lists(st.floats(20.0, 110.0), min_size=1, max_size=12)


@given(history=temps, dts=st.lists(st.floats(0.0, 5.0), min_size=12, max_size=12))
@HYP
def test_omega_and_cem43_are_monotone_in_time(history, dts):
    acc = DamageAccumulator((1, 1, 1), models=("arrhenius", "cem43", "three_state"))
    last = (0.0, 0.0, 0.0)
    for temp, dt in zip(history, dts, strict=False):
        acc.update(vol([temp]), dt)
        now = tuple(float(acc.state(n)[0, 0, 0]) for n in (OMEGA_C, "cem43_min", "three_state_dead"))
        assert all(b >= a for a, b in zip(last, now, strict=True))
        last = now


@given(
    temp=st.floats(20.0, 110.0),
    a=st.floats(0.0, 20.0),
    b=st.floats(0.0, 20.0),
    rule=st.sampled_from(["linear", "constant"]),
)
@HYP
def test_split_steps_add_up(temp, a, b, rule):
    one = DamageAccumulator((1, 1, 1), models=ALL, within_step=rule, cem43_floor_c=-math.inf)
    two = DamageAccumulator((1, 1, 1), models=ALL, within_step=rule, cem43_floor_c=-math.inf)
    t = vol([temp])
    one.update(t, a + b)
    two.update(t, a)
    two.update(t, b)
    for name in (OMEGA_C, OMEGA_J, "cem43_min"):
        assert float(two.state(name)[0, 0, 0]) == pytest.approx(float(one.state(name)[0, 0, 0]), rel=1e-12, abs=1e-300)


def _scrambled_run(shape, seed):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    history = [np.full(n, 37.0, np.float32) for _ in range(4)]
    hot = rng.choice(n, size=n // 20, replace=False)
    for h in history:
        h[hot] = rng.uniform(30.0, 95.0, size=hot.size).astype(np.float32)
    perm = rng.permutation(n)
    a = DamageAccumulator(shape, models=ALL)
    b = DamageAccumulator(shape, models=ALL)
    for h in history:
        a.update(h.reshape(shape), 2.0)
        b.update(h[perm].reshape(shape), 2.0)
    return a.fields(), b.fields(), perm


@given(seed=st.integers(0, 2**31 - 1))
@settings(max_examples=8, deadline=None)
def test_results_do_not_depend_on_voxel_order(seed):
    shape = (3, 5, 2 * CHUNK // 15 + 7)  # several chunks, some never heated
    fa, fb, perm = _scrambled_run(shape, seed)
    for name in fa:
        np.testing.assert_array_equal(fa[name].ravel()[perm], fb[name].ravel(), err_msg=name)


def test_parallel_and_serial_passes_agree(monkeypatch):
    import insitu.physics.damage as damage

    shape = (4, 64, 160)  # 40960 voxels: above SERIAL_BELOW, so the parallel kernels run
    assert int(np.prod(shape)) >= damage.SERIAL_BELOW
    par_a, par_b, perm = _scrambled_run(shape, 7)
    monkeypatch.setattr(damage, "SERIAL_BELOW", 1 << 62)
    ser_a, _, _ = _scrambled_run(shape, 7)
    for name in par_a:
        np.testing.assert_array_equal(par_a[name], ser_a[name], err_msg=name)
        np.testing.assert_array_equal(par_a[name].ravel()[perm], par_b[name].ravel(), err_msg=name)


def test_fields_load_observe_continue_a_run():
    temps = [np.full((2, 3, 4), 37.0 + 6.0 * k, np.float32) for k in range(10)]
    whole = DamageAccumulator((2, 3, 4), models=ALL)
    for t in temps:
        whole.update(t, 1.0)
    first = DamageAccumulator((2, 3, 4), models=ALL)
    for t in temps[:5]:
        first.update(t, 1.0)
    second = DamageAccumulator((2, 3, 4), models=ALL)
    assert second.load(first.fields() | {"ablation_zone": np.zeros((2, 3, 4), bool)}) == sorted(first.field_names())
    second.observe(temps[4])
    for t in temps[5:]:
        second.update(t, 1.0)
    for name, values in whole.fields().items():
        np.testing.assert_allclose(
            second.fields()[name], values, rtol=2e-6, atol=1e-9, err_msg=name
        )  # float32 round trip
    assert second.neutral_value("three_state_alive") == 0.99 and math.isnan(second.neutral_value("max_temperature_c"))
    second.reset()
    assert np.all(second.fields()[OMEGA_C] == 0) and np.all(np.isnan(second.fields()["max_temperature_c"]))


def test_drives_the_bioheat_solver():
    from insitu.physics.bioheat import BioheatSolver, ThermalMedium

    med = ThermalMedium.uniform((9, 9, 9), 1e-3, 0.52, 1079.0, 3540.0, perfusion_1_s=0.01)
    q = np.zeros(med.shape, np.float32)
    q[3:6, 3:6, 3:6] = 4e7
    acc = DamageAccumulator(med.shape, models=ALL)
    temperature = np.full(med.shape, 37.0, np.float32)
    run = BioheatSolver(med).advance(temperature, 20.0, source_w_m3=q, damage=acc)
    assert acc.steps == run.steps and acc.time_s == pytest.approx(20.0)
    assert acc.dead_mask("arrhenius")[4, 4, 4] and not acc.dead_mask("arrhenius")[0, 0, 0]
    assert acc.perfusion_factor()[4, 4, 4] == 0.0
    np.testing.assert_array_equal(acc.fields()["max_temperature_c"], run.peak_temperature_c)


# ----------------------------------------------------------------------------------- bad input
def test_bad_input_raises_physics_error_and_changes_nothing():
    with pytest.raises(PhysicsError, match="did you mean 'liver_comsol'"):
        DamageAccumulator((2, 2, 2), models=("arrhenius:liver_comsl",))
    with pytest.raises(PhysicsError, match="did you mean 'three_state'"):
        DamageAccumulator((2, 2, 2), models=("three-state",))
    with pytest.raises(PhysicsError, match="known"):
        arrhenius_set("kidney")
    acc = DamageAccumulator((2, 2, 2), models=ALL)
    t = np.full((2, 2, 2), 60.0, np.float32)
    acc.update(t, 1.0)
    before = acc.fields()
    for bad, message in ((np.nan, "non-finite"), (np.inf, "non-finite"), (-300.0, "absolute zero")):
        t2 = t.copy()
        t2[1, 1, 1] = bad
        with pytest.raises(PhysicsError, match=message):
            acc.update(t2, 1.0)
    for dt in (-1.0, math.nan, math.inf):
        with pytest.raises(PhysicsError, match="time step"):
            acc.update(t, dt)
    with pytest.raises(PhysicsError, match="shape"):
        acc.update(np.full((2, 2, 3), 60.0, np.float32), 1.0)
    with pytest.raises(PhysicsError, match="shape"):
        acc.load({OMEGA_C: np.zeros((3, 3, 3), np.float32)})
    with pytest.raises(PhysicsError, match="negative"):
        acc.load({"cem43_min": -np.ones((2, 2, 2), np.float32)})
    after = acc.fields()
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
    acc.update(t.astype(np.float64), 1.0)  # other dtypes are converted
    with pytest.raises(PhysicsError, match="3-D"):
        DamageAccumulator((4, 4), models=("cem43",))
    with pytest.raises(PhysicsError, match="'linear' or 'constant'"):
        DamageAccumulator((2, 2, 2), within_step="midpoint")  # type: ignore[arg-type]
    with pytest.raises(PhysicsError, match="out="):
        acc.perfusion_factor(np.empty((2, 2, 2), np.float64))


def test_start_field_from_the_caller_gives_the_same_damage():
    """``update(T, dt, start_c=old)`` (the solver's other buffer) accumulates exactly what the accumulator's own
    copy of the previous field gives, for every model."""
    from insitu.physics.damage import DamageAccumulator

    rng = np.random.default_rng(3)
    shape = (6, 7, 9000 // 42)
    fields = [np.full(shape, 37.0, np.float32)]
    for _ in range(6):
        fields.append((fields[-1] + rng.uniform(0.0, 9.0, shape)).astype(np.float32))
    models = ("arrhenius:liver_comsol", "cem43", "three_state")
    own, given = DamageAccumulator(shape, models=models), DamageAccumulator(shape, models=models)
    own.observe(fields[0])
    given.observe(fields[0])
    for old, new in itertools.pairwise(fields):
        own.update(new, 2.0)
        given.update(new, 2.0, start_c=old)
    for name, values in own.fields().items():
        np.testing.assert_array_equal(values, given.fields()[name], err_msg=name)
    assert float(own.fields()["arrhenius_omega_liver_comsol"].max()) > 1.0  # the fields did accumulate
    with pytest.raises(PhysicsError, match="start_c"):
        given.update(fields[-1], 1.0, start_c=fields[-1])


@pytest.mark.parametrize("criterion", ["arrhenius", "cem43", "three_state", "isotherm:55", "cryo:-20"])
def test_criterion_level_is_non_negative_exactly_on_the_dead_mask(criterion):
    """The continuous level used for sub-voxel zone extents marks the same voxels as the zone criterion."""
    from insitu.physics.damage import DamageAccumulator

    shape = (4, 5, 300)
    ramp = np.linspace(-40.0, 95.0, shape[-1], dtype=np.float32)
    T = np.broadcast_to(ramp, shape).copy()
    models = ("arrhenius:liver_comsol", "cem43", "three_state", "extremes")
    d = DamageAccumulator(shape, models=models)
    d.observe(T)
    for _ in range(60):
        d.update(T, 10.0)  # 10 min
    dead = d.dead_mask(criterion)
    level = d.criterion_level(criterion)
    assert 0 < np.count_nonzero(dead) < dead.size  # the ramp crosses the threshold
    np.testing.assert_array_equal(level >= 0.0, dead)
    assert np.all(np.isfinite(level))
