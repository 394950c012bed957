"""The tissue library: per-tissue physical properties with sources, as numpy tables and volumes.

Data live in ``tissues.yaml`` (packaged); every value carries a source key and a status
(confirmed / derived / recalled / unconfirmed). ``load_library()`` validates the file once and
returns a :class:`TissueLibrary`.

Index convention: ``TissueLibrary.names`` is the file's order and a uint8 tissue-index volume
stores positions in it. Index 0 is always ``air``, so a zero-filled volume means "outside the
body". At most 256 tissue types fit a uint8 volume.

Temperature dependence: properties listed in :data:`TEMPERATURE_COEFFICIENTS` follow
``v(T) = v(37 °C) · (1 + a · (T' − 37))`` with ``a`` the ``*_per_c`` coefficient (fraction per °C)
and ``T'`` the temperature clipped to the range where ``a`` was measured, so tables never go
negative far outside it (cryo, vaporisation: those regimes have their own properties).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import yaml

from insitu.errors import TissueError
from insitu.tissue.dielectric import REFERENCE_TEMPERATURE_C, ColeCole

__all__ = [
    "OPTIONAL_PROPERTIES",
    "REQUIRED_PROPERTIES",
    "STATUSES",
    "TEMPERATURE_COEFFICIENTS",
    "Provenance",
    "Quantity",
    "Tissue",
    "TissueLibrary",
    "conductivity_s_m",
    "load_library",
    "perfusion_ml_min_kg_to_per_s",
    "perfusion_per_s_to_ml_min_kg",
    "relative_permittivity",
]

DEFAULT_PATH = Path(__file__).with_name("tissues.yaml")
STATUSES = ("confirmed", "derived", "recalled", "unconfirmed")
MAX_TISSUES = 256  # a uint8 index volume holds positions 0..255


class _Spec(NamedTuple):
    unit: str
    low: float
    high: float


# Plausible ranges catch unit slips (g/cm³ for kg/m³, percent for fraction, ps for s).
REQUIRED_PROPERTIES: Mapping[str, _Spec] = MappingProxyType(
    {
        "density_kg_m3": _Spec("kg/m³", 0.5, 5000.0),
        "specific_heat_j_kg_k": _Spec("J/(kg·K)", 100.0, 10000.0),
        "thermal_conductivity_w_m_k": _Spec("W/(m·K)", 0.005, 5.0),
        "density_per_c": _Spec("1/°C", -0.05, 0.05),
        "specific_heat_per_c": _Spec("1/°C", -0.05, 0.05),
        "thermal_conductivity_per_c": _Spec("1/°C", -0.05, 0.05),
        "perfusion_ml_min_kg": _Spec("mL/(min·kg)", 0.0, 20000.0),
        "perfusion_arterial_fraction": _Spec("fraction", 0.0, 1.0),
        "electrical_conductivity_s_m": _Spec("S/m", 0.0, 10.0),
        "electrical_conductivity_per_c": _Spec("1/°C", -0.05, 0.05),
        "speed_of_sound_m_s": _Spec("m/s", 100.0, 6000.0),
        "attenuation_db_cm_mhz": _Spec("dB/(cm·MHz^y)", 0.0, 100.0),
        "attenuation_exponent": _Spec("1", 0.0, 3.0),
        "ct_hu": _Spec("HU", -1024.0, 3071.0),
        "ct_hu_arterial": _Spec("HU", -1024.0, 3071.0),
    }
)

OPTIONAL_PROPERTIES: Mapping[str, _Spec] = MappingProxyType(
    {
        "nonlinearity_b_over_a": _Spec("1", 0.0, 20.0),
        "latent_heat_j_m3": _Spec("J/m³", 1.0e6, 1.0e9),
        "latent_heat_dsc_j_kg": _Spec("J/kg", 1.0e3, 1.0e6),
        "freezing_onset_c": _Spec("°C", -60.0, 5.0),
        "freezing_end_c": _Spec("°C", -60.0, 5.0),
        "frozen_thermal_conductivity_w_m_k": _Spec("W/(m·K)", 0.05, 10.0),
        "frozen_specific_heat_j_kg_k": _Spec("J/(kg·K)", 100.0, 10000.0),
        "frozen_density_kg_m3": _Spec("kg/m³", 100.0, 3000.0),
        "cryo_lethal_temperature_c": _Spec("°C", -200.0, 0.0),
    }
)

_SPECS: Mapping[str, _Spec] = MappingProxyType({**REQUIRED_PROPERTIES, **OPTIONAL_PROPERTIES})

# property -> its linear temperature coefficient (fraction per °C about 37 °C)
TEMPERATURE_COEFFICIENTS: Mapping[str, str] = MappingProxyType(
    {
        "density_kg_m3": "density_per_c",
        "specific_heat_j_kg_k": "specific_heat_per_c",
        "thermal_conductivity_w_m_k": "thermal_conductivity_per_c",
        "electrical_conductivity_s_m": "electrical_conductivity_per_c",
    }
)

# Computed from stored properties (37 °C values), available to property_table/property_volume.
DERIVED_PROPERTIES = ("perfusion_per_s",)

_DIELECTRIC_NAMES = ("dielectric", "relative_permittivity", "conductivity", "cole_cole")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_QUANTITY_KEYS = {"value", "source", "status", "note", "range_c", "cole_cole_at_hz"}


def perfusion_ml_min_kg_to_per_s(
    perfusion_ml_min_kg: float | np.ndarray, density_kg_m3: float | np.ndarray
) -> np.ndarray:
    """Pennes volumetric rate ω (1/s, m³ blood per m³ tissue per s) from IT'IS HTR (mL/min/kg).

    ω = HTR · ρ · 1e-6 / 60: mL→m³ is 1e-6, per kg→per m³ multiplies by ρ, per min→per s is /60.
    """
    return np.asarray(perfusion_ml_min_kg, dtype=np.float64) * np.asarray(density_kg_m3) * 1e-6 / 60.0


def perfusion_per_s_to_ml_min_kg(perfusion_per_s: float | np.ndarray, density_kg_m3: float | np.ndarray) -> np.ndarray:
    """IT'IS heat-transfer rate (mL/min/kg) from the Pennes ω (1/s): the inverse conversion."""
    return np.asarray(perfusion_per_s, dtype=np.float64) * 60.0 / (np.asarray(density_kg_m3) * 1e-6)


@dataclass(frozen=True)
class Quantity:
    """One stored value with its provenance. ``value`` None means absent (optional properties)."""

    value: float | None
    source: str | None
    status: str
    note: str = ""
    range_c: tuple[float, float] | None = None  # validity range of a temperature coefficient


@dataclass(frozen=True)
class Provenance:
    """Where a number comes from, for reports: source key, full citation, status and note."""

    quantity: str
    source: str | None
    citation: str
    status: str
    note: str = ""


@dataclass(frozen=True, eq=False)
class Tissue:
    """One tissue type: stored quantities (with sources) and its dielectric model.

    Scalar properties are at 37 °C; :meth:`value` evaluates temperature-dependent ones. Absent
    optional properties read as NaN.
    """

    name: str
    index: int
    label: str
    quantities: Mapping[str, Quantity]
    dielectric: ColeCole
    dielectric_provenance: tuple[Quantity, ...] = field(default=())

    def quantity(self, prop: str) -> Quantity:
        """The stored :class:`Quantity` of ``prop`` (TissueError when the tissue lacks it)."""
        try:
            return self.quantities[prop]
        except KeyError:
            raise TissueError(
                f"tissue '{self.name}' has no property '{prop}'",
                f"known properties: {', '.join(sorted(self.quantities))}",
            ) from None

    def value(self, prop: str, temperature_c: float = REFERENCE_TEMPERATURE_C) -> float:
        """``prop`` at ``temperature_c`` (°C); NaN when absent. Derived ``perfusion_per_s`` too."""
        if prop == "perfusion_per_s":
            return self.perfusion_per_s
        if prop not in _SPECS:
            raise TissueError(f"unknown tissue property '{prop}'", _suggest(prop, _all_properties()))
        q = self.quantities.get(prop)
        if q is None or q.value is None:
            return math.nan
        coefficient_name = TEMPERATURE_COEFFICIENTS.get(prop)
        if coefficient_name is None or temperature_c == REFERENCE_TEMPERATURE_C:
            return q.value
        c = self.quantities[coefficient_name]
        if not c.value:
            return q.value
        lo, hi = c.range_c if c.range_c is not None else (REFERENCE_TEMPERATURE_C,) * 2
        t = min(max(float(temperature_c), lo), hi)
        return q.value * (1.0 + c.value * (t - REFERENCE_TEMPERATURE_C))

    def _v(self, prop: str) -> float:
        q = self.quantities[prop]
        return math.nan if q.value is None else q.value

    @property
    def density_kg_m3(self) -> float:
        return self._v("density_kg_m3")

    @property
    def specific_heat_j_kg_k(self) -> float:
        return self._v("specific_heat_j_kg_k")

    @property
    def thermal_conductivity_w_m_k(self) -> float:
        return self._v("thermal_conductivity_w_m_k")

    @property
    def perfusion_ml_min_kg(self) -> float:
        return self._v("perfusion_ml_min_kg")

    @property
    def perfusion_per_s(self) -> float:
        """Pennes ω in 1/s from the stored HTR and the 37 °C density."""
        return float(perfusion_ml_min_kg_to_per_s(self.perfusion_ml_min_kg, self.density_kg_m3))

    @property
    def electrical_conductivity_s_m(self) -> float:
        return self._v("electrical_conductivity_s_m")

    @property
    def speed_of_sound_m_s(self) -> float:
        return self._v("speed_of_sound_m_s")

    @property
    def attenuation_db_cm_mhz(self) -> float:
        return self._v("attenuation_db_cm_mhz")

    @property
    def ct_hu(self) -> float:
        return self._v("ct_hu")

    def relative_permittivity(
        self,
        frequency_hz: float | np.ndarray,
        temperature_c: float | np.ndarray = REFERENCE_TEMPERATURE_C,
    ) -> np.ndarray:
        """ε_r from the tissue's 4-Cole–Cole model (float64)."""
        return self.dielectric.relative_permittivity(frequency_hz, temperature_c)

    def conductivity_s_m(
        self,
        frequency_hz: float | np.ndarray,
        temperature_c: float | np.ndarray = REFERENCE_TEMPERATURE_C,
    ) -> np.ndarray:
        """Effective conductivity (S/m) from the tissue's 4-Cole–Cole model (float64)."""
        return self.dielectric.conductivity_s_m(frequency_hz, temperature_c)


def _all_properties() -> tuple[str, ...]:
    return (*_SPECS, *DERIVED_PROPERTIES)


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    known = ", ".join(choices)
    return f"did you mean '{close[0]}'? known: {known}" if close else f"known: {known}"


class TissueLibrary:
    """Validated tissue table. Build it with :func:`load_library`; it is immutable."""

    def __init__(self, tissues: tuple[Tissue, ...], sources: Mapping[str, str], path: Path) -> None:
        self._tissues = tissues
        self._index = {t.name: t.index for t in tissues}
        self.sources: Mapping[str, str] = MappingProxyType(dict(sources))
        self.path = path

    # --- names and lookup -------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Tissue names in index order (index 0 is ``air``)."""
        return tuple(t.name for t in self._tissues)

    @property
    def properties(self) -> tuple[str, ...]:
        """Every property name a table can be built for (stored and derived)."""
        return _all_properties()

    def __len__(self) -> int:
        return len(self._tissues)

    def __iter__(self) -> Iterator[Tissue]:
        return iter(self._tissues)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __repr__(self) -> str:
        return f"TissueLibrary({len(self)} tissues from {self.path.name})"

    def index_of(self, name: str) -> int:
        """Position of ``name`` in :attr:`names`; TissueError (with a suggestion) when unknown."""
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise TissueError(f"unknown tissue type {name!r}", _suggest(str(name), self.names)) from None

    def tissue(self, name: str) -> Tissue:
        """The :class:`Tissue` called ``name``."""
        return self._tissues[self.index_of(name)]

    def perfusion_per_s(self, name: str) -> float:
        """Pennes ω (1/s) of ``name``: HTR × ρ × 1e-6 / 60."""
        return self.tissue(name).perfusion_per_s

    # --- tables and volumes -----------------------------------------------------------------
    def property_table(self, prop: str, temperature_c: float = REFERENCE_TEMPERATURE_C) -> np.ndarray:
        """One float64 value per tissue index; temperature-dependent ones at ``temperature_c``.

        Absent optional properties are NaN. Use :meth:`property_volume` for a temperature field.
        """
        if prop not in _SPECS and prop not in DERIVED_PROPERTIES:
            raise TissueError(f"unknown tissue property '{prop}'", _suggest(prop, _all_properties()))
        t = np.asarray(temperature_c, dtype=np.float64)
        if t.ndim != 0 or not np.isfinite(t):
            raise TissueError(
                f"property_table needs one finite temperature, got {temperature_c!r}",
                "pass a scalar in °C, or use property_volume for a temperature field",
            )
        return np.array([tissue.value(prop, float(t)) for tissue in self._tissues], dtype=np.float64)

    def property_volume(
        self,
        index_volume: np.ndarray,
        prop: str,
        temperature_c: float | np.ndarray | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """float32 volume of ``prop`` by table look-up ``table[index_volume]``.

        ``temperature_c``: None (37 °C), a scalar, or a float volume of the same shape for
        temperature-dependent properties. ``out`` (float32, same shape) avoids an allocation in
        time loops. Raises TissueError if a tissue present in the volume lacks the property.
        """
        idx = self._check_index_volume(index_volume)
        if out is not None and (out.shape != idx.shape or out.dtype != np.float32):
            raise TissueError(
                f"out has shape {out.shape} and dtype {out.dtype}",
                f"pass a float32 array of shape {idx.shape}",
            )
        field_t = temperature_c is not None and np.ndim(temperature_c) > 0
        scalar_t = REFERENCE_TEMPERATURE_C if temperature_c is None or field_t else temperature_c
        table = self.property_table(prop, scalar_t)  # also validates prop and a scalar temperature
        self._check_defined(table, idx, prop)
        coefficient_name = TEMPERATURE_COEFFICIENTS.get(prop)
        if not field_t or coefficient_name is None:
            return np.take(table.astype(np.float32), idx, out=out, mode="clip")  # bounds checked

        temperature = np.asarray(temperature_c)
        if temperature.shape != idx.shape:
            raise TissueError(
                f"temperature field shape {temperature.shape} differs from the index volume {idx.shape}",
                "pass a temperature volume on the same grid, or a scalar",
            )
        coeff = np.zeros(len(self), dtype=np.float32)
        lo = np.full(len(self), REFERENCE_TEMPERATURE_C, dtype=np.float32)
        hi = np.full(len(self), REFERENCE_TEMPERATURE_C, dtype=np.float32)
        for tissue in self._tissues:
            c = tissue.quantities[coefficient_name]
            if c.value and c.range_c is not None:
                coeff[tissue.index] = c.value
                lo[tissue.index], hi[tissue.index] = c.range_c
        result = np.clip(temperature.astype(np.float32, copy=False), lo[idx], hi[idx], out=out)
        result -= np.float32(REFERENCE_TEMPERATURE_C)
        result *= coeff[idx]
        result += np.float32(1.0)
        result *= table.astype(np.float32)[idx]
        return result

    def volume_from_table(self, index_volume: np.ndarray, table: np.ndarray) -> np.ndarray:
        """float32 ``table[index_volume]`` for any per-tissue table (e.g. a permittivity table)."""
        idx = self._check_index_volume(index_volume)
        values = np.asarray(table, dtype=np.float32)
        if values.shape != (len(self),):
            raise TissueError(
                f"table has shape {values.shape}, expected ({len(self)},)",
                "build it with one value per tissue index",
            )
        self._check_defined(values, idx, "table")
        return np.take(values, idx, mode="clip")

    def index_volume(
        self,
        labels: np.ndarray,
        label_map: Mapping[int, str] | None = None,
        default: str | None = "air",
    ) -> np.ndarray:
        """uint8 tissue-index volume from a label image and ``label → tissue name`` map.

        ``labels`` may also be an array of tissue names (then ``label_map`` is not needed).
        Labels missing from the map get ``default``; with ``default=None`` they raise.
        """
        labels = np.asarray(labels)
        default_index = None if default is None else self.index_of(default)
        if labels.dtype.kind in "USO":
            uniques, inverse = np.unique(labels, return_inverse=True)
            lut = np.array([self.index_of(str(u)) for u in uniques], dtype=np.uint8)
            return lut[inverse].reshape(labels.shape)
        if labels.dtype.kind not in "iub":
            raise TissueError(
                f"label image has dtype {labels.dtype}",
                "pass an integer label image (or an array of tissue names)",
            )
        if label_map is None:
            raise TissueError("an integer label image needs a label_map", "pass {label: tissue name}")
        mapping = {int(k): self.index_of(v) for k, v in label_map.items()}
        if labels.size == 0:
            return np.zeros(labels.shape, dtype=np.uint8)
        lo, hi = int(labels.min()), int(labels.max())
        if lo >= 0 and hi < 1 << 20:  # small non-negative labels: direct look-up table
            present = np.flatnonzero(np.bincount(labels.ravel().astype(np.intp), minlength=hi + 1))
            uniques, inverse = present, None
        else:
            uniques, inverse = np.unique(labels, return_inverse=True)
        missing = [int(u) for u in uniques if int(u) not in mapping]
        if missing and default_index is None:
            raise TissueError(
                f"labels {missing[:10]} are not in the label map",
                "add them to the map or pass default='<tissue>'",
            )
        fill = 0 if default_index is None else default_index
        if inverse is None:
            lut = np.full(hi + 1, fill, dtype=np.uint8)
            for label, index in mapping.items():
                if 0 <= label <= hi:
                    lut[label] = index
            return lut[labels]
        lut = np.array([mapping.get(int(u), fill) for u in uniques], dtype=np.uint8)
        return lut[inverse].reshape(labels.shape)

    # --- dielectric -------------------------------------------------------------------------
    def relative_permittivity(
        self,
        name: str,
        frequency_hz: float | np.ndarray,
        temperature_c: float = REFERENCE_TEMPERATURE_C,
    ) -> np.ndarray:
        """ε_r of ``name`` at ``frequency_hz`` (4-Cole–Cole, computed)."""
        return self.tissue(name).relative_permittivity(frequency_hz, temperature_c)

    def conductivity_s_m(
        self,
        name: str,
        frequency_hz: float | np.ndarray,
        temperature_c: float = REFERENCE_TEMPERATURE_C,
    ) -> np.ndarray:
        """Effective conductivity (S/m) of ``name`` at ``frequency_hz`` (4-Cole–Cole, computed)."""
        return self.tissue(name).conductivity_s_m(frequency_hz, temperature_c)

    def permittivity_table(self, frequency_hz: float, temperature_c: float = REFERENCE_TEMPERATURE_C) -> np.ndarray:
        """ε_r per tissue index at one frequency (float64), for microwave solvers."""
        return np.array([float(t.relative_permittivity(frequency_hz, temperature_c)) for t in self])

    def conductivity_table(self, frequency_hz: float, temperature_c: float = REFERENCE_TEMPERATURE_C) -> np.ndarray:
        """Effective σ (S/m) per tissue index at one frequency (float64), for microwave solvers."""
        return np.array([float(t.conductivity_s_m(frequency_hz, temperature_c)) for t in self])

    # --- provenance -------------------------------------------------------------------------
    def sources_of(self, name: str, prop: str) -> tuple[Provenance, ...]:
        """Citations behind ``prop`` of ``name`` (with its temperature coefficient, if any).

        ``prop`` may be a stored property, ``perfusion_per_s``, or ``dielectric``.
        """
        tissue = self.tissue(name)
        if prop in _DIELECTRIC_NAMES:
            return tuple(self._provenance("dielectric", q) for q in tissue.dielectric_provenance)
        if prop == "perfusion_per_s":
            props = ["perfusion_ml_min_kg", "density_kg_m3"]
        elif prop in _SPECS:
            props = [prop]
            if prop in TEMPERATURE_COEFFICIENTS:
                props.append(TEMPERATURE_COEFFICIENTS[prop])
        else:
            raise TissueError(f"unknown tissue property '{prop}'", _suggest(prop, _all_properties()))
        return tuple(self._provenance(p, tissue.quantity(p)) for p in props if p in tissue.quantities)

    def quantities_with_status(self, *statuses: str) -> list[tuple[str, str, Quantity]]:
        """Every (tissue, property, Quantity) whose status is one of ``statuses`` (for reports)."""
        wanted = set(statuses)
        rows: list[tuple[str, str, Quantity]] = []
        for tissue in self._tissues:
            rows += [(tissue.name, p, q) for p, q in tissue.quantities.items() if q.status in wanted]
            rows += [(tissue.name, "dielectric", q) for q in tissue.dielectric_provenance[:1] if q.status in wanted]
        return rows

    def _provenance(self, prop: str, q: Quantity) -> Provenance:
        citation = self.sources.get(q.source, "") if q.source else ""
        return Provenance(quantity=prop, source=q.source, citation=citation, status=q.status, note=q.note)

    # --- checks -----------------------------------------------------------------------------
    def _check_index_volume(self, index_volume: np.ndarray) -> np.ndarray:
        idx = np.asarray(index_volume)
        if idx.dtype.kind not in "iu":
            raise TissueError(
                f"tissue index volume has dtype {idx.dtype}",
                "pass the uint8 volume from TissueLibrary.index_volume()",
            )
        if idx.size:
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= len(self):
                raise TissueError(
                    f"tissue index volume holds {hi if hi >= len(self) else lo} but the "
                    f"library has indices 0–{len(self) - 1}",
                    "build the volume with this library's index_volume() or index_of()",
                )
        return idx

    def _check_defined(self, table: np.ndarray, idx: np.ndarray, prop: str) -> None:
        missing = np.isnan(table)
        if not missing.any():
            return
        present = np.bincount(idx.ravel(), minlength=len(self)) > 0
        bad = [self._tissues[i].name for i in np.flatnonzero(present & missing)]
        if bad:
            raise TissueError(
                f"property '{prop}' is not known for tissue {', '.join(repr(b) for b in bad)} in the volume",
                "give it a value in tissues.yaml, or assign those voxels another tissue",
            )


# --- loading and validation -------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (a repeated tissue would silently win)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _number(raw: Any, what: str) -> float:
    """A finite float from YAML (numbers written as strings such as '5.0e4' are accepted)."""
    if isinstance(raw, bool):
        raise TissueError(f"{what} is {raw!r}, not a number", "give a finite number")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise TissueError(f"{what} is {raw!r}, not a number", "give a finite number") from None
    if not math.isfinite(value):
        raise TissueError(
            f"{what} is {raw!r}, not a finite number",
            "give a finite value (null only for optional properties)",
        )
    return value


class _Parser:
    """Turns the YAML document into Tissue objects, raising one-line TissueErrors."""

    def __init__(self, data: Any, where: str) -> None:
        self.where = where
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("tissues"), dict)
            or not isinstance(data.get("sources"), dict)
        ):
            raise TissueError(
                f"{where} must be a mapping with 'tissues' and 'sources' sections",
                "see the header of the packaged tissues.yaml for the layout",
            )
        self.sources: dict[str, str] = {}
        for key, citation in data["sources"].items():
            if not isinstance(citation, str) or not citation.strip():
                raise TissueError(f"{where}: source '{key}' has no citation", "give the full citation text")
            self.sources[str(key)] = " ".join(citation.split())
        self.raw_tissues: dict[str, Any] = data["tissues"]
        self.pending_sigma_hz: dict[str, float] = {}

    def parse(self) -> tuple[Tissue, ...]:
        names = [str(n) for n in self.raw_tissues]
        if not names or names[0] != "air":
            raise TissueError(
                f"{self.where}: the first tissue is {names[0] if names else 'missing'!r}, not 'air'",
                "put 'air' first: index 0 means outside the body",
            )
        if len(names) > MAX_TISSUES:
            raise TissueError(f"{self.where}: {len(names)} tissues do not fit a uint8 volume", "keep ≤ 256")
        for name in names:
            if not _NAME_RE.match(name):
                raise TissueError(
                    f"{self.where}: tissue name {name!r} is not snake_case",
                    "use e.g. 'bone_cortical'",
                )
        entries = {}
        for name in names:
            entry = self.raw_tissues[name]
            if not isinstance(entry, dict):
                raise TissueError(
                    f"{self.where}: tissue '{name}' is not a mapping",
                    "give its properties as key: value",
                )
            entries[name] = entry
        quantities = {name: self._quantities(name, entries[name]) for name in names}
        dielectrics = {name: self._dielectric(name, entries) for name in names}
        tissues = []
        for index, name in enumerate(names):
            q = quantities[name]
            model, provenance = dielectrics[name]
            self._resolve_cole_cole_conductivity(name, q, model)
            self._cross_checks(name, q)
            label = entries[name].get("label", name)
            tissues.append(
                Tissue(
                    name=name,
                    index=index,
                    label=str(label),
                    quantities=MappingProxyType(q),
                    dielectric=model,
                    dielectric_provenance=provenance,
                )
            )
        return tuple(tissues)

    # one tissue's scalar quantities
    def _quantities(self, name: str, entry: dict) -> dict[str, Quantity]:
        out: dict[str, Quantity] = {}
        for key, raw in entry.items():
            if key in ("label", "dielectric"):
                continue
            if key not in _SPECS:
                raise TissueError(
                    f"{self.where}: tissue '{name}' has unknown property '{key}'",
                    _suggest(str(key), list(_SPECS)),
                )
            out[key] = self._quantity(name, key, raw)
        for key in REQUIRED_PROPERTIES:
            if key not in out:
                raise TissueError(
                    f"{self.where}: tissue '{name}' has no '{key}'",
                    f"add {key}: {{value: …, source: …, status: …}} ({REQUIRED_PROPERTIES[key].unit})",
                )
        return out

    def _quantity(self, name: str, key: str, raw: Any) -> Quantity:
        what = f"{self.where}: tissue '{name}' property '{key}'"
        if not isinstance(raw, dict):
            raise TissueError(f"{what} is {raw!r}", "write it as {value: …, source: …, status: …}")
        unknown = set(raw) - _QUANTITY_KEYS
        if unknown:
            raise TissueError(
                f"{what} has unknown field(s) {sorted(unknown)}",
                f"use only {sorted(_QUANTITY_KEYS)}",
            )
        status = raw.get("status")
        if status not in STATUSES:
            raise TissueError(f"{what} has status {status!r}", f"use one of {', '.join(STATUSES)}")
        source = raw.get("source")
        if source is not None and str(source) not in self.sources:
            raise TissueError(
                f"{what} cites source '{source}', which is not in the sources section",
                f"add '{source}' under sources: with its full citation, or cite a defined key",
            )
        note = str(raw.get("note", "") or "")
        spec = _SPECS[key]
        if "cole_cole_at_hz" in raw:
            if key != "electrical_conductivity_s_m" or "value" in raw:
                raise TissueError(
                    f"{what}: cole_cole_at_hz is only for electrical_conductivity_s_m",
                    "give value or cole_cole_at_hz",
                )
            frequency = _number(raw["cole_cole_at_hz"], f"{what} cole_cole_at_hz")
            if source is None:
                raise TissueError(f"{what} has no source", "cite the Cole–Cole source key")
            # resolved to a number once the tissue's dielectric model is parsed
            self.pending_sigma_hz[name] = frequency
            return Quantity(value=math.nan, source=str(source), status=status, note=note)
        if "value" not in raw:
            raise TissueError(
                f"{what} has no value",
                "add value: … (or value: null for an absent optional property)",
            )
        if raw["value"] is None:
            if key in REQUIRED_PROPERTIES:
                raise TissueError(f"{what} is null but required", f"give a finite value in {spec.unit}")
            return Quantity(value=None, source=None if source is None else str(source), status=status, note=note)
        if source is None:
            raise TissueError(f"{what} has no source", "add source: <key of the sources section>")
        value = _number(raw["value"], what)
        if not spec.low <= value <= spec.high:
            raise TissueError(
                f"{what} = {value:g} is outside the plausible range {spec.low:g}–{spec.high:g} {spec.unit}",
                f"check the unit (the name says {spec.unit})",
            )
        range_c = None
        if "range_c" in raw:
            range_c = self._range(what, raw["range_c"])
        if key.endswith("_per_c") and value != 0.0 and range_c is None:
            raise TissueError(
                f"{what} is non-zero but has no range_c",
                "add range_c: [low, high] where it was measured (°C)",
            )
        return Quantity(value=value, source=str(source), status=status, note=note, range_c=range_c)

    def _range(self, what: str, raw: Any) -> tuple[float, float]:
        if not isinstance(raw, list | tuple) or len(raw) != 2:
            raise TissueError(f"{what} range_c {raw!r} is not [low, high]", "give two temperatures in °C")
        lo, hi = (_number(v, f"{what} range_c") for v in raw)
        if not lo <= REFERENCE_TEMPERATURE_C <= hi:
            raise TissueError(
                f"{what} range_c [{lo:g}, {hi:g}] must contain 37 °C",
                "the coefficient is about 37 °C",
            )
        return (lo, hi)

    # dielectric model (may reference another tissue's parameter set)
    def _dielectric(self, name: str, entries: dict[str, dict]) -> tuple[ColeCole, tuple[Quantity, ...]]:
        what = f"{self.where}: tissue '{name}' dielectric"
        block = entries[name].get("dielectric")
        if not isinstance(block, dict):
            raise TissueError(
                f"{what} is missing",
                "add dielectric: {params: {...}, source: …, status: …} or {base: liver, …}",
            )
        own = self._provenance_of(what, block)
        if "base" in block:
            base = str(block["base"])
            base_block = entries.get(base, {}).get("dielectric")
            if base == name or not isinstance(base_block, dict) or "params" not in base_block:
                raise TissueError(
                    f"{what} names base {base!r}, which has no Cole–Cole params of its own",
                    "point base to a tissue whose dielectric has params",
                )
            model = self._params(f"{self.where}: tissue '{base}' dielectric", base_block)
            model = self._temperature(what, base_block, model)
            model = model.scaled(
                _number(block.get("permittivity_factor", 1.0), f"{what} permittivity_factor"),
                _number(block.get("conductivity_factor", 1.0), f"{what} conductivity_factor"),
            )
            model = self._temperature(what, block, model)
            return model, (
                own,
                self._provenance_of(f"{self.where}: tissue '{base}' dielectric", base_block),
            )
        model = self._temperature(what, block, self._params(what, block))
        provenance = (own,)
        if "temperature" in block:
            provenance += (self._provenance_of(f"{what} temperature", block["temperature"]),)
        return model, provenance

    def _provenance_of(self, what: str, block: Any) -> Quantity:
        if not isinstance(block, dict):
            raise TissueError(f"{what} is not a mapping", "give source and status")
        status, source = block.get("status"), block.get("source")
        if status not in STATUSES:
            raise TissueError(f"{what} has status {status!r}", f"use one of {', '.join(STATUSES)}")
        if source is None or str(source) not in self.sources:
            raise TissueError(
                f"{what} cites source {source!r}, which is not in the sources section",
                "add it under sources: with its full citation, or cite a defined key",
            )
        return Quantity(value=None, source=str(source), status=status, note=str(block.get("note", "") or ""))

    def _params(self, what: str, block: dict) -> ColeCole:
        params = block.get("params")
        if not isinstance(params, dict):
            raise TissueError(f"{what} has no params", "give eps_inf, sigma_i_s_m, delta_eps, tau_s, alpha")
        try:
            vectors = {k: tuple(_number(v, f"{what} {k}") for v in params[k]) for k in ("delta_eps", "tau_s", "alpha")}
            return ColeCole(
                eps_inf=_number(params["eps_inf"], f"{what} eps_inf"),
                sigma_i_s_m=_number(params["sigma_i_s_m"], f"{what} sigma_i_s_m"),
                **vectors,  # type: ignore[arg-type]
            )
        except KeyError as exc:
            raise TissueError(
                f"{what} params lack {exc.args[0]}",
                "give eps_inf, sigma_i_s_m, delta_eps, tau_s, alpha",
            ) from None
        except TissueError as exc:
            raise TissueError(f"{what}: {exc.problem}", exc.fix) from None

    def _temperature(self, what: str, block: dict, model: ColeCole) -> ColeCole:
        raw = block.get("temperature")
        if raw is None:
            return model
        self._provenance_of(f"{what} temperature", raw)
        rng = self._range(f"{what} temperature", raw.get("range_c"))
        return replace(
            model,
            permittivity_per_c=_number(raw.get("permittivity_per_c", 0.0), f"{what} permittivity_per_c"),
            conductivity_per_c=_number(raw.get("conductivity_per_c", 0.0), f"{what} conductivity_per_c"),
            temperature_range_c=rng,
        )

    def _resolve_cole_cole_conductivity(self, name: str, q: dict[str, Quantity], model: ColeCole) -> None:
        frequency = self.pending_sigma_hz.get(name)
        if frequency is not None:
            sigma = q["electrical_conductivity_s_m"]
            value = float(model.conductivity_s_m(frequency))
            note = sigma.note or f"4-Cole–Cole evaluated at {frequency:g} Hz"
            q["electrical_conductivity_s_m"] = Quantity(
                value=value, source=sigma.source, status=sigma.status, note=note
            )

    def _cross_checks(self, name: str, q: dict[str, Quantity]) -> None:
        onset, end = q.get("freezing_onset_c"), q.get("freezing_end_c")
        if onset and end and onset.value is not None and end.value is not None and end.value > onset.value:
            raise TissueError(
                f"{self.where}: tissue '{name}' freezes from {onset.value:g} to {end.value:g} °C",
                "freezing_end_c must be ≤ freezing_onset_c",
            )


def _load(path: Path) -> TissueLibrary:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TissueError(
            f"tissue library file {path} does not exist",
            "pass the path of a tissues.yaml file, or None for the packaged library",
        ) from None
    except OSError as exc:
        raise TissueError(
            f"tissue library file {path} cannot be read ({exc.strerror})",
            "check the path and permissions",
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TissueError(
            f"tissue library {path.name} is not valid YAML{line}: {problem}", "fix the YAML syntax"
        ) from None
    parser = _Parser(data, path.name)
    return TissueLibrary(parser.parse(), parser.sources, path)


@cache
def _default_library() -> TissueLibrary:
    return _load(DEFAULT_PATH)


def load_library(path: str | Path | None = None) -> TissueLibrary:
    """Load and validate a tissue library; ``None`` gives the packaged one (cached)."""
    if path is None:
        return _default_library()
    return _load(Path(path))


def _tissue_of(tissue: str | Tissue) -> Tissue:
    return tissue if isinstance(tissue, Tissue) else load_library().tissue(tissue)


def relative_permittivity(
    tissue: str | Tissue,
    frequency_hz: float | np.ndarray,
    temperature_c: float = REFERENCE_TEMPERATURE_C,
) -> np.ndarray:
    """ε_r of a tissue (name in the packaged library, or a Tissue) at ``frequency_hz``."""
    return _tissue_of(tissue).relative_permittivity(frequency_hz, temperature_c)


def conductivity_s_m(
    tissue: str | Tissue,
    frequency_hz: float | np.ndarray,
    temperature_c: float = REFERENCE_TEMPERATURE_C,
) -> np.ndarray:
    """Effective conductivity (S/m) of a tissue at ``frequency_hz`` from its 4-Cole–Cole model."""
    return _tissue_of(tissue).conductivity_s_m(frequency_hz, temperature_c)
