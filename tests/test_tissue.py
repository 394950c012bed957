"""Tissue library: data integrity, reference values, Cole–Cole, look-ups and validation errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from insitu.errors import TissueError
from insitu.tissue import (
    REQUIRED_PROPERTIES,
    STATUSES,
    TEMPERATURE_COEFFICIENTS,
    ColeCole,
    conductivity_s_m,
    load_library,
    perfusion_ml_min_kg_to_per_s,
    perfusion_per_s_to_ml_min_kg,
    relative_permittivity,
)
from insitu.tissue.library import DEFAULT_PATH

EXPECTED_NAMES = (
    "air", "liver", "hcc", "liver_metastasis", "blood", "fat", "muscle", "skin", "bone_cortical",
    "bone_cancellous", "cartilage", "lung_inflated", "heart", "kidney", "gallbladder_bile",
    "bowel_wall", "stomach", "lymph_node", "water",
)  # fmt: skip


@pytest.fixture(scope="module")
def lib():
    return load_library()


@pytest.fixture()
def raw() -> dict:
    """The packaged YAML as a plain dict, for writing malformed variants."""
    with DEFAULT_PATH.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "tissues.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


# --- contents ---------------------------------------------------------------------------------


def test_names_and_index_order(lib):
    assert lib.names == EXPECTED_NAMES
    assert lib.index_of("air") == 0  # a zero-filled uint8 volume is "outside the body"
    assert all(lib.index_of(n) == i for i, n in enumerate(lib.names))
    assert len(lib) <= 256


def test_every_tissue_has_finite_positive_thermal_properties(lib):
    for prop in ("density_kg_m3", "specific_heat_j_kg_k", "thermal_conductivity_w_m_k"):
        table = lib.property_table(prop)
        assert table.dtype == np.float64 and table.shape == (len(lib),)
        assert np.all(np.isfinite(table)) and np.all(table > 0), prop


def test_every_required_property_is_finite_with_a_defined_source(lib):
    for tissue in lib:
        for prop in REQUIRED_PROPERTIES:
            q = tissue.quantity(prop)
            assert q.value is not None and math.isfinite(q.value), (tissue.name, prop)
            assert q.status in STATUSES
            assert q.source in lib.sources, (tissue.name, prop, q.source)
        assert tissue.dielectric_provenance[0].source in lib.sources


def test_liver_thermal_values_match_reference_sheet(lib):
    # thermal.md §2.1 (COMSOL bioheat library, [C]): 1079 kg/m³, 3540 J/kg/K, 0.52 W/m/K;
    # thermal-gaps.md §3.1 (IT'IS V4.2 row, [C]): 1078.75, 3540.2, 0.519111, HTR 860.46.
    liver = lib.tissue("liver")
    assert liver.density_kg_m3 == pytest.approx(1079, abs=0.5)
    assert liver.specific_heat_j_kg_k == pytest.approx(3540, abs=0.5)
    assert liver.thermal_conductivity_w_m_k == pytest.approx(0.52, abs=0.005)
    assert liver.perfusion_ml_min_kg == pytest.approx(860.46)
    # thermal-gaps.md §3.1: ω = HTR·ρ·1e-6/60 = 1.547e-2 1/s for liver, 6.68e-4 for muscle
    assert lib.perfusion_per_s("liver") == pytest.approx(1.547e-2, rel=1e-3)
    assert lib.perfusion_per_s("muscle") == pytest.approx(6.68e-4, rel=2e-3)
    for sheet_row in (
        ("muscle", 1090, 3421, 0.49),
        ("fat", 911, 2348, 0.21),
        ("bone_cortical", 1908, 1313, 0.32),
    ):
        name, rho, c, k = sheet_row  # thermal.md §2.1 COMSOL rows
        t = lib.tissue(name)
        assert (t.density_kg_m3, t.specific_heat_j_kg_k) == (
            pytest.approx(rho, abs=0.5),
            pytest.approx(c, abs=0.5),
        )
        assert t.thermal_conductivity_w_m_k == pytest.approx(k, abs=0.005)


def test_hcc_is_mostly_arterial_and_liver_mostly_portal(lib):
    # thermal-gaps.md §3.2: HPI 16.4 % normal liver, 75.3 % early HCC (what TACE relies on)
    table = lib.property_table("perfusion_arterial_fraction")
    assert table[lib.index_of("liver")] == pytest.approx(0.164)
    assert table[lib.index_of("hcc")] == pytest.approx(0.753)


def test_rf_conductivity_documents_its_origin(lib):
    # liver/metastasis are measured (Zurbuchen 2016, 470 kHz); others come from Cole–Cole at 480 kHz
    assert lib.tissue("liver").electrical_conductivity_s_m == pytest.approx(0.35)
    assert lib.tissue("liver_metastasis").electrical_conductivity_s_m == pytest.approx(0.57)
    muscle = lib.tissue("muscle")
    assert muscle.electrical_conductivity_s_m == pytest.approx(float(muscle.conductivity_s_m(480e3)))
    assert muscle.electrical_conductivity_s_m == pytest.approx(0.4425, rel=1e-3)  # thermal-gaps §1.3
    assert "Cole–Cole" in lib.sources_of("muscle", "electrical_conductivity_s_m")[0].note


def test_hcc_ct_enhances_in_arterial_phase(lib):
    hu, art = lib.property_table("ct_hu"), lib.property_table("ct_hu_arterial")
    i_hcc, i_liver = lib.index_of("hcc"), lib.index_of("liver")
    assert art[i_hcc] - hu[i_hcc] > 40 and art[i_hcc] > art[i_liver]
    assert hu[lib.index_of("air")] == -1000 and hu[lib.index_of("water")] == 0


def test_sources_of_gives_full_citations(lib):
    rows = lib.sources_of("liver", "thermal_conductivity_w_m_k")
    assert [r.quantity for r in rows] == [
        "thermal_conductivity_w_m_k",
        "thermal_conductivity_per_c",
    ]
    assert "IT'IS" in rows[0].citation and rows[0].status == "confirmed"
    diel = lib.sources_of("hcc", "dielectric")
    assert diel[0].source == "stauffer2003" and diel[1].source == "gabriel1996_appendix_c"
    assert {r.quantity for r in lib.sources_of("liver", "perfusion_per_s")} == {
        "perfusion_ml_min_kg",
        "density_kg_m3",
    }
    assert lib.quantities_with_status("unconfirmed")  # the report can list what is still open


# --- Cole–Cole ----------------------------------------------------------------------------------

# thermal-gaps.md §1.3: 4-Cole–Cole values computed from the Gabriel 1996 Appendix C parameters
# (independently restated in two public copies); liver 915 MHz / 2.45 GHz also match the
# commonly quoted Gabriel/IT'IS values of thermal.md §2.2 (46.8, 0.86 S/m; 43.0, 1.69 S/m).
# Tolerance: half a unit in the last printed digit, plus 1e-3 relative for the ε₀ convention.
GABRIEL_COMPUTED = {
    #          ε_r 480k, σ 480k,  ε_r 915M, σ 915M, ε_r 2.45G, σ 2.45G
    "liver": (2861, 0.1459, 46.76, 0.861, 43.03, 1.686),
    "fat": (35, 0.0248, 5.46, 0.051, 5.28, 0.105),
    "muscle": (3772, 0.4425, 55.00, 0.948, 52.73, 1.739),
    "blood": (4240, 0.7452, 61.31, 1.545, 58.26, 2.545),
    "bone_cortical": (176, 0.0221, 12.44, 0.145, 11.38, 0.394),
    "lung_inflated": (1045, 0.1224, 21.97, 0.459, 20.48, 0.804),
    "skin": (1065, 0.0039, 41.33, 0.872, 38.01, 1.464),
    "kidney": (3521, 0.2260, 58.56, 1.401, 52.74, 2.430),
    "gallbladder_bile": (120, 1.4000, 70.16, 1.844, 68.36, 2.801),
    "bowel_wall": (2408, 0.2762, 57.87, 1.087, 53.88, 2.038),  # colon row
    "stomach": (2083, 0.5529, 65.02, 1.193, 62.16, 2.211),
}


def _tol(printed: float) -> float:
    text = f"{printed}"
    decimals = len(text.split(".")[1]) if "." in text else 0
    return 0.5 * 10.0**-decimals + 1e-3 * abs(printed)


@pytest.mark.parametrize("name", sorted(GABRIEL_COMPUTED))
def test_cole_cole_matches_gabriel_computed_values(lib, name):
    values = GABRIEL_COMPUTED[name]
    tissue = lib.tissue(name)
    for k, f in enumerate((480e3, 915e6, 2.45e9)):
        eps, sigma = values[2 * k], values[2 * k + 1]
        assert float(tissue.relative_permittivity(f)) == pytest.approx(eps, abs=_tol(eps)), (
            name,
            f,
        )
        assert float(tissue.conductivity_s_m(f)) == pytest.approx(sigma, abs=_tol(sigma)), (name, f)


def test_liver_microwave_values_at_stated_tolerance():
    # thermal-gaps.md §1.3 test fixture: ε_r(liver, 2.45 GHz) = 43.03, σ = 1.686 S/m, 1e-3 relative
    assert float(relative_permittivity("liver", 2.45e9)) == pytest.approx(43.03, rel=1e-3)
    assert float(conductivity_s_m("liver", 2.45e9)) == pytest.approx(1.686, rel=1e-3)
    assert float(relative_permittivity("liver", 915e6)) == pytest.approx(46.76, rel=1e-3)
    assert float(conductivity_s_m("liver", 915e6)) == pytest.approx(0.861, rel=1e-3)


def test_muscle_100khz_matches_independent_code():
    # bis-utils (thermal-gaps.md [G5]) quotes muscle ε_r = 8089.2 and fat ε_r = 92.885 at 100 kHz
    assert float(relative_permittivity("muscle", 100e3)) == pytest.approx(8089.2, rel=1e-4)
    assert float(relative_permittivity("fat", 100e3)) == pytest.approx(92.885, rel=1e-4)


def test_cole_cole_conductivity_increases_with_frequency(lib):
    f = np.logspace(1, 11, 400)  # 10 Hz – 100 GHz, the Gabriel model's range
    for tissue in lib:
        sigma = tissue.conductivity_s_m(f)
        eps = tissue.relative_permittivity(f)
        if tissue.name == "air":  # lossless: σ ≡ 0, ε_r ≡ 1
            assert np.all(sigma == 0) and np.allclose(eps, 1.0)
            continue
        assert np.all(np.diff(sigma) > 0), tissue.name
        assert np.all(np.diff(eps) <= 0), tissue.name  # dispersion: ε_r falls with frequency


def test_tumour_dielectric_is_scaled_liver(lib):
    liver, hcc = lib.tissue("liver"), lib.tissue("hcc")
    assert float(hcc.relative_permittivity(2.45e9)) == pytest.approx(1.12 * float(liver.relative_permittivity(2.45e9)))
    assert float(hcc.conductivity_s_m(915e6)) == pytest.approx(1.24 * float(liver.conductivity_s_m(915e6)))


def test_dielectric_temperature_coefficients_are_clipped(lib):
    liver = lib.tissue("liver")  # Chin & Sherar 2001: σ +1.82 %/°C reversible at 915 MHz
    s37, s47 = float(liver.conductivity_s_m(915e6)), float(liver.conductivity_s_m(915e6, 47.0))
    assert s47 / s37 == pytest.approx(1 + 0.0182 * 10)
    assert float(liver.conductivity_s_m(915e6, 90.0)) == pytest.approx(float(liver.conductivity_s_m(915e6, 60.0)))
    tables = lib.permittivity_table(915e6), lib.conductivity_table(915e6)
    assert tables[0][lib.index_of("liver")] == pytest.approx(46.76, abs=0.01)
    assert tables[1].shape == (len(lib),)


def test_cole_cole_rejects_bad_input():
    with pytest.raises(TissueError, match="frequency"):
        relative_permittivity("liver", 0.0)
    with pytest.raises(TissueError, match="seconds"):
        ColeCole(4.0, 0.0, (10.0, 0, 0, 0), (-1e-12, 0, 0, 0), (0.1, 0, 0, 0))


# --- perfusion ------------------------------------------------------------------------------------


@given(
    htr=st.floats(0.0, 20000.0, allow_nan=False),
    rho=st.floats(1.0, 3000.0, allow_nan=False),
)
def test_perfusion_conversion_round_trip(htr, rho):
    omega = perfusion_ml_min_kg_to_per_s(htr, rho)
    assert float(perfusion_per_s_to_ml_min_kg(omega, rho)) == pytest.approx(htr, rel=1e-12, abs=1e-9)


def test_perfusion_conversion_units():
    # 1 mL/min per 100 mL of tissue = 1e-6 m³ / 60 s / 1e-4 m³ = 1/6000 1/s
    rho = 1000.0
    assert float(perfusion_ml_min_kg_to_per_s(10.0, rho)) == pytest.approx(1 / 6000)


def test_perfusion_table_matches_tissue_values(lib):
    table = lib.property_table("perfusion_per_s")
    assert table[lib.index_of("liver")] == pytest.approx(lib.perfusion_per_s("liver"))
    assert table[lib.index_of("air")] == 0.0


# --- volumes ----------------------------------------------------------------------------------


def test_index_volume_from_labels(lib):
    labels = np.array([[[0, 12, 40], [12, 7, 0]]], dtype=np.int16)
    idx = lib.index_volume(labels, {12: "liver", 40: "hcc", 7: "fat"})
    assert idx.dtype == np.uint8 and idx.shape == labels.shape
    assert idx[0, 0].tolist() == [0, lib.index_of("liver"), lib.index_of("hcc")]
    names = np.array([["liver", "air"], ["hcc", "liver"]])
    assert lib.index_volume(names).tolist() == [[1, 0], [2, 1]]
    big = np.array([5_000_000, -3])  # outside the direct look-up range
    assert lib.index_volume(big, {5_000_000: "blood"}, default="water").tolist() == [
        lib.index_of("blood"),
        lib.index_of("water"),
    ]
    with pytest.raises(TissueError, match=r"labels \[7\]"):
        lib.index_volume(labels, {12: "liver", 40: "hcc", 0: "air"}, default=None)
    with pytest.raises(TissueError, match="unknown tissue type 'livr'"):
        lib.index_volume(labels, {12: "livr"})


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
    prop=st.sampled_from(
        [
            "density_kg_m3",
            "thermal_conductivity_w_m_k",
            "specific_heat_j_kg_k",
            "electrical_conductivity_s_m",
            "ct_hu",
        ]
    ),
)
def test_property_volume_equals_per_voxel_lookup(lib, data, shape, prop):
    idx = data.draw(hnp.arrays(np.uint8, shape, elements=st.integers(0, len(lib) - 1)))
    temp = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-50.0, 120.0, width=32)))
    volume = lib.property_volume(idx, prop, temperature_c=temp)
    assert volume.dtype == np.float32 and volume.shape == shape
    expected = [lib.tissue(lib.names[i]).value(prop, float(t)) for i, t in zip(idx.ravel(), temp.ravel(), strict=True)]
    np.testing.assert_allclose(volume.ravel(), expected, rtol=2e-6, atol=1e-6)
    at37 = lib.property_volume(idx, prop)
    np.testing.assert_array_equal(at37, lib.property_table(prop).astype(np.float32)[idx])
    out = np.empty(shape, np.float32)
    assert lib.property_volume(idx, prop, 60.0, out=out) is out
    np.testing.assert_array_equal(out, lib.property_table(prop, 60.0).astype(np.float32)[idx])


def test_property_volume_rejects_bad_input(lib):
    idx = np.array([[0, 1], [2, 18]], dtype=np.uint8)
    with pytest.raises(TissueError, match="dtype float32"):
        lib.property_volume(idx.astype(np.float32), "ct_hu")
    with pytest.raises(TissueError, match="holds 19"):
        lib.property_volume(np.array([19], dtype=np.uint8), "ct_hu")
    with pytest.raises(TissueError, match="did you mean 'ct_hu'"):
        lib.property_volume(idx, "ct_hv")
    with pytest.raises(TissueError, match="not known for tissue 'air', 'water'"):
        lib.property_volume(idx, "cryo_lethal_temperature_c")  # no lethal isotherm for air or water (NaN)
    liver_only = np.ones((2, 2), dtype=np.uint8)
    assert np.all(np.isfinite(lib.property_volume(liver_only, "cryo_lethal_temperature_c")))
    with pytest.raises(TissueError, match="shape"):
        lib.property_volume(idx, "density_kg_m3", temperature_c=np.zeros((3, 3), np.float32))


# --- temperature coefficients ---------------------------------------------------------------


@given(t1=st.floats(37.0, 90.0), t2=st.floats(37.0, 90.0))
def test_temperature_dependence_is_linear_inside_its_range(lib, t1, t2):
    liver = lib.tissue("liver")
    k = lambda t: liver.value("thermal_conductivity_w_m_k", t)  # noqa: E731
    assert k((t1 + t2) / 2) == pytest.approx((k(t1) + k(t2)) / 2, rel=1e-12)
    # units: the coefficient is a fraction per °C about the 37 °C value
    a = liver.quantity("thermal_conductivity_per_c").value
    assert k(t1) == pytest.approx(liver.thermal_conductivity_w_m_k * (1 + a * (t1 - 37.0)), rel=1e-12)


@given(t=st.floats(-200.0, 400.0))
def test_temperature_dependence_is_clipped_and_positive(lib, t):
    for prop in (
        "thermal_conductivity_w_m_k",
        "specific_heat_j_kg_k",
        "electrical_conductivity_s_m",
    ):
        table = lib.property_table(prop, t)
        assert np.all(np.isfinite(table)) and np.all(table >= 0)
        lo, hi = lib.tissue("liver").quantity(TEMPERATURE_COEFFICIENTS[prop]).range_c
        clipped = min(max(t, lo), hi)
        assert table[1] == pytest.approx(lib.tissue("liver").value(prop, clipped))


def test_liver_conductivity_temperature_coefficient(lib):
    # Stauffer 2003: +2 %/°C → 10 °C above 37 gives +20 %
    liver = lib.tissue("liver")
    assert liver.value("electrical_conductivity_s_m", 47.0) == pytest.approx(0.35 * 1.2)
    assert liver.value("ct_hu", 80.0) == liver.ct_hu  # not temperature dependent


# --- errors ---------------------------------------------------------------------------------


def test_unknown_tissue_message(lib):
    with pytest.raises(TissueError) as info:
        lib.index_of("livr")
    message = str(info.value)
    assert message.startswith("unknown tissue type 'livr'; did you mean 'liver'? known: air, liver")
    assert "\n" not in message


def test_malformed_yaml_missing_property(tmp_path, raw):
    del raw["tissues"]["liver"]["thermal_conductivity_w_m_k"]
    with pytest.raises(TissueError, match="tissue 'liver' has no 'thermal_conductivity_w_m_k'"):
        load_library(_write(tmp_path, raw))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "abc"])
def test_malformed_yaml_non_finite_value(tmp_path, raw, bad):
    raw["tissues"]["muscle"]["density_kg_m3"]["value"] = bad
    with pytest.raises(TissueError, match="'muscle' property 'density_kg_m3'"):
        load_library(_write(tmp_path, raw))


def test_malformed_yaml_undefined_source(tmp_path, raw):
    raw["tissues"]["fat"]["speed_of_sound_m_s"]["source"] = "nobody2099"
    with pytest.raises(TissueError, match="cites source 'nobody2099', which is not in the sources"):
        load_library(_write(tmp_path, raw))


def test_malformed_yaml_other_cases(tmp_path, raw):
    cases = []
    d = yaml.safe_load(yaml.safe_dump(raw))
    d["tissues"]["liver"]["thermal_conductivity_w_m_k"]["value"] = 520.0  # mW/(m·K) slip
    cases.append((d, "outside the plausible range"))
    d = yaml.safe_load(yaml.safe_dump(raw))
    d["tissues"]["liver"]["ct_hu"]["status"] = "guessed"
    cases.append((d, "status 'guessed'"))
    d = yaml.safe_load(yaml.safe_dump(raw))
    d["tissues"]["liver"]["densty_kg_m3"] = d["tissues"]["liver"]["density_kg_m3"]
    cases.append((d, "did you mean 'density_kg_m3'"))
    d = yaml.safe_load(yaml.safe_dump(raw))
    d["tissues"]["liver"]["dielectric"]["params"]["tau_s"] = [8.842, 530.516, 22.736, -15.915]
    cases.append((d, "seconds"))
    d = yaml.safe_load(yaml.safe_dump(raw))
    d["tissues"] = {
        "liver": d["tissues"]["liver"],
        **{k: v for k, v in d["tissues"].items() if k != "liver"},
    }
    cases.append((d, "not 'air'"))
    d = yaml.safe_load(yaml.safe_dump(raw))
    d["tissues"]["hcc"]["dielectric"]["base"] = "tumour"
    cases.append((d, "base 'tumour'"))
    d = yaml.safe_load(yaml.safe_dump(raw))
    d["tissues"]["liver"]["ct_hu"]["value"] = None
    cases.append((d, "null but required"))
    d = yaml.safe_load(yaml.safe_dump(raw))
    d["tissues"]["liver"]["specific_heat_per_c"].pop("range_c")
    cases.append((d, "no range_c"))
    for data, match in cases:
        with pytest.raises(TissueError, match=match):
            load_library(_write(tmp_path, data))


def test_duplicate_and_unreadable_files(tmp_path):
    text = DEFAULT_PATH.read_text(encoding="utf-8")
    dup = text.replace("  liver:\n", "  liver:\n    label: x\n    label: y\n", 1)
    path = tmp_path / "dup.yaml"
    path.write_text(dup, encoding="utf-8")
    with pytest.raises(TissueError, match="duplicate key 'label'"):
        load_library(path)
    with pytest.raises(TissueError, match="does not exist"):
        load_library(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("tissues: [\n", encoding="utf-8")
    with pytest.raises(TissueError, match="not valid YAML"):
        load_library(broken)


def test_default_library_is_cached_and_custom_is_not(tmp_path, raw):
    assert load_library() is load_library()
    path = _write(tmp_path, raw)
    custom = load_library(path)
    assert custom is not load_library() and custom.names == EXPECTED_NAMES
