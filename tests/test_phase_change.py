"""Tissue freezing (physics/phase_change.py and the bioheat solver's freezing kernel): the Neumann front (V5) on
coarse 1-D grids, energy conservation across the band, perfusion stopping in ice, the default path left unchanged,
sourced data, and bad input. Small grids run on one numba thread (a parallel launch costs more than the step)."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insitu.errors import PhysicsError
from insitu.physics import phase_change as pc
from insitu.physics.bioheat import BioheatSolver, Freezing, PhaseChange, ThermalMedium, _enthalpy_step
from insitu.tissue.library import load_library


@pytest.fixture
def one_thread():
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(threads)


def _enthalpy(t, cu, cf, latent, tl, ts):
    """Σ-able enthalpy (J/m³, relative to T_l) of the solver's model: C_u above, C_b = mean + L/w in the band, C_f
    below."""
    w = tl - ts
    cb = 0.5 * (cu + cf) + latent / w
    x = tl - np.asarray(t, np.float64)
    return np.where(x <= 0, -cu * x, np.where(x < w, -cb * x, -cb * w - cf * (x - w)))


# ----------------------------------------------------------------------------------------- Neumann (V5)
def test_neumann_root_and_fronts_reproduce_the_reference_sheet():
    problem = pc.v5_problem()
    assert problem.eta() == pytest.approx(0.52114, abs=2e-5)  # thermal-gaps.md §6
    fronts = problem.front_m(np.array([60.0, 300.0, 600.0])) * 1e3
    assert fronts == pytest.approx([8.51, 19.03, 26.91], abs=0.006)
    # the field is continuous at the front (T_f on both sides), at the wall and far away
    s = float(problem.front_m(300.0))
    x = np.array([0.0, s - 1e-12, s + 1e-12, 0.2])
    t = problem.temperature_c(x, 300.0)
    assert t == pytest.approx([-150.0, -1.0, -1.0, 37.0], abs=1e-6)


def test_one_phase_neumann_matches_its_closed_form():
    """Liquid at the freezing point: η e^{η²} erf η = St/√π with St = c_s ΔT / L (the classical one-phase root)."""
    base = pc.v5_problem()
    problem = pc.NeumannProblem(-50.0, -1.0, -1.0, 2.5e8, 2.0, 1.8e6, 0.5, 3.6e6)
    eta = problem.eta()
    stefan = 1.8e6 * 49.0 / 2.5e8
    assert eta * math.exp(eta * eta) * math.erf(eta) == pytest.approx(stefan / math.sqrt(math.pi), rel=1e-10)
    assert eta > base.eta() * 0  # defined


def test_simulated_front_within_two_percent_and_converges(one_thread):
    study = pc.neumann_study((0.8, 0.4, 0.2), band_per_mm=10.0)
    finest = study["rel_errors"][-1]
    assert np.all(finest < pc.V5_TOLERANCE), study["rel_errors"]
    assert np.all(study["rel_errors"][-1] < study["rel_errors"][0])
    assert study["order"] > 0.8, study["order"]  # measured ≈ 1.4 on this ladder


def test_dsc_latent_heat_moves_the_front_further(one_thread):
    """Less latent heat (DSC 159 vs the 250 MJ/m³ convention) → a faster front, in the model and the closed form."""
    low = pc.v5_problem(147.8e3 * 1079.0)
    high = pc.v5_problem()
    assert low.front_m(600.0) > 1.1 * high.front_m(600.0)
    simulated = pc.simulate_front_m(low, 0.4, 4.0, (600.0,))[0]
    assert simulated == pytest.approx(float(low.front_m(600.0)), rel=pc.V5_TOLERANCE)


# ----------------------------------------------------------------------------------------- the kernel
def test_freezing_conserves_energy_across_the_band(one_thread):
    """A closed box (zero-flux faces, no perfusion, nothing held) with a random field spanning frozen, band and
    unfrozen voxels and a jump in k: Σ H is constant to float32 precision while the voxels cross the band."""
    rng = np.random.default_rng(3)
    shape = (6, 7, 8)
    k = rng.uniform(0.4, 0.6, shape).astype(np.float32)
    cu = rng.uniform(3.5e6, 3.9e6, shape)
    medium = ThermalMedium(k, np.ones(shape), cu, np.zeros(shape), (1e-3,) * 3)
    latent = rng.uniform(1e8, 2.5e8, shape)
    cf = rng.uniform(1.6e6, 2.0e6, shape)
    freezing = Freezing(latent, -1.0, -8.0, cf, 3.85)
    solver = BioheatSolver(medium, freezing=freezing)
    T = rng.uniform(-60.0, 40.0, shape).astype(np.float32)
    before = _enthalpy(T, cu, cf, latent, -1.0, -8.0).sum()
    scale = np.abs(_enthalpy(T, cu, cf, latent, -1.0, -8.0)).sum()
    solver.advance(T, 200.0)
    after = _enthalpy(T, cu, cf, latent, -1.0, -8.0).sum()
    assert abs(after - before) < 1e-5 * scale
    assert T.max() - T.min() < 100.0 and np.all(np.isfinite(T))
    assert float(solver.minimum_temperature_c.min()) <= -59.0  # the running minimum kept the coldest start


def test_without_ice_the_freezing_path_equals_the_default_kernel(one_thread):
    """Everything above the liquidus: the freezing solver takes the default row update, bit for bit."""
    rng = np.random.default_rng(5)
    shape = (5, 6, 7)
    medium = ThermalMedium(rng.uniform(0.4, 0.6, shape), np.full(shape, 1079.0), np.full(shape, 3540.0),
                           np.full(shape, 0.01), (1e-3,) * 3)  # fmt: skip
    T0 = rng.uniform(10.0, 40.0, shape).astype(np.float32)
    plain, frozen = T0.copy(), T0.copy()
    BioheatSolver(medium).advance(plain, 30.0, dt_s=0.1)
    BioheatSolver(medium, freezing=Freezing(2.5e8, -1.0, -8.0, 1.8e6, 3.85)).advance(frozen, 30.0, dt_s=0.1)
    assert np.array_equal(plain, frozen)


def test_perfusion_stops_in_ice(one_thread):
    """One frozen voxel with perfusion and no neighbours: held by the ice when perfusion stops, warmed otherwise."""
    medium = ThermalMedium.uniform((1, 1, 1), 1e-3, 0.5, 1000.0, 3600.0, perfusion_1_s=0.01)
    for stops, expect_warm in ((True, False), (False, True)):
        T = np.full((1, 1, 1), -20.0, np.float32)
        BioheatSolver(medium, freezing=Freezing(2.5e8, -1.0, -8.0, 1.8e6, 4.0, perfusion_stops=stops)).advance(T, 60.0)
        assert (float(T[0, 0, 0]) > -19.0) == expect_warm


@settings(max_examples=60, deadline=None)
@given(
    t=st.floats(-150.0, 60.0),
    e1=st.floats(-3e8, 3e8),
    e2=st.floats(-3e8, 3e8),
    latent=st.floats(0.0, 3.5e8),
)
def test_enthalpy_update_is_additive_and_invertible(t, e1, e2, latent):
    """Adding e1 then e2 equals adding e1 + e2 (the enthalpy is a function of T); adding 0 changes nothing."""
    cu, cf, tl, wd = 3.8e6, 1.8e6, -1.0, 7.0
    rb = 1.0 / (0.5 * (cu + cf) + latent / wd)
    assert _enthalpy_step(np.float32(t), 0.0, 1 / cu, rb, 1 / cf, tl, wd) == pytest.approx(np.float32(t), abs=1e-9)
    a = _enthalpy_step(_enthalpy_step(np.float32(t), e1, 1 / cu, rb, 1 / cf, tl, wd), e2, 1 / cu, rb, 1 / cf, tl, wd)
    b = _enthalpy_step(np.float32(t), e1 + e2, 1 / cu, rb, 1 / cf, tl, wd)
    assert a == pytest.approx(b, abs=1e-6 * (1.0 + abs(b)))


@settings(max_examples=40, deadline=None)
@given(t=st.floats(-200.0, 100.0), ts=st.floats(-20.0, -2.0))
def test_ice_fraction_is_a_monotone_fraction(t, ts):
    f = float(pc.ice_fraction(t, -1.0, ts))
    assert 0.0 <= f <= 1.0
    assert float(pc.ice_fraction(t - 0.5, -1.0, ts)) >= f


# ----------------------------------------------------------------------------------------- data and bad input
def test_freezing_data_is_sourced_and_the_library_wins():
    data = pc.freezing_data()
    assert {"default", "water"} <= set(data.sets)
    library = load_library()
    liver = pc.freezing_set(library, "liver")
    assert liver.latent_heat_j_m3 == 2.5e8 and liver.liquidus_c == -1.0 and liver.solidus_c == -8.0
    assert liver.frozen_conductivity_w_m_k == 2.0 and liver.frozen_heat_capacity_j_m3k == pytest.approx(998 * 1800)
    water = pc.freezing_set(library, "water")
    assert water.latent_heat_j_m3 == pytest.approx(0.98 * 333.55e3 * 1000, rel=1e-3)
    assert pc.freezing_set(library, "fat") == pc.freezing_set(library, "muscle") == data.sets["default"]
    index = np.full((2, 2, 2), library.index_of("liver"), np.uint8)
    freezing = pc.tissue_freezing(library, index, "liver")
    assert freezing.conductivity_ratio == pytest.approx(2.0 / 0.519111, rel=1e-6)  # frozen / unfrozen liver k


def test_bad_freezing_input_is_one_line():
    medium = ThermalMedium.uniform((2, 2, 2), 1e-3, 0.5, 1000.0, 3600.0)
    with pytest.raises(PhysicsError, match="not a band"):
        BioheatSolver(medium, freezing=Freezing(2.5e8, -8.0, -1.0, 1.8e6, 4.0))
    with pytest.raises(PhysicsError, match="cannot be combined"):
        BioheatSolver(medium, freezing=Freezing(2.5e8, -1.0, -8.0, 1.8e6, 4.0), phase_change=PhaseChange(1e9, 99, 1))
    with pytest.raises(PhysicsError, match="frozen heat capacity"):
        BioheatSolver(medium, freezing=Freezing(2.5e8, -1.0, -8.0, 0.0, 4.0))
    with pytest.raises(PhysicsError, match="wall_temperature_c needs a Dirichlet"):
        BioheatSolver(medium, freezing=Freezing(2.5e8, -1.0, -8.0, 1.8e6, 4.0)).advance(
            np.full((2, 2, 2), 37.0, np.float32), 1.0, wall_temperature_c=lambda t, T: -100.0
        )
    for error in (PhysicsError("x", "y"),):
        assert "\n" not in str(error)
