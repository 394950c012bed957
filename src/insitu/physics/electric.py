"""Quasi-static RF electric field for radiofrequency ablation: −∇·(σ∇V) = 0 and Joule heating.

At the ~480 kHz of RF generators the displacement current is negligible next to the conduction
current, so the potential solves the steady current-continuity equation (thermal.md §1.2).
Conducting electrode metal is held at its terminal's potential, insulated metal and σ = 0 voxels
carry no current, and the return (a far ground or a dispersive skin pad) is held at 0 V.

The electrode surface is placed with sub-voxel accuracy: the conductance of a face between a tissue
voxel and a held metal voxel is σ_tissue·area / (θ·h), θ·h being the exact distance from the tissue
voxel's centre to the metal surface along the face normal (Shortley–Weller; θ from
:mod:`insitu.physics.electrode_raster`). The solver works on 1 V drive patterns (the problem is
linear), so a generator controller scales the Joule source by the squared drive amplitude:
Q = joule_w_m3_per_v2 · V², P = conductance_s · V².

Joule heating is evaluated face by face, with the conductances of the discrete operator: a face between
two free voxels dissipates T·ΔV², split half to each side; a face between a free and a held voxel puts
all of it into the free voxel. Then Σ Q·vol = Σ_terminals I·V holds to solver tolerance (discrete
Green identity), so the deposited power is exactly the power the generator delivers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

from insitu.errors import PhysicsError
from insitu.physics.electrode_raster import MetalRaster, face_candidates
from insitu.physics.multigrid import EllipticOperator, MultigridSolver, SolveInfo

__all__ = [
    "DESICCATION_DROP_FACTOR",
    "DESICCATION_FULL_C",
    "DESICCATION_ONSET_C",
    "RFField",
    "UnitSolution",
    "conductivity_at_temperature",
    "outer_layer_mask",
    "update_desiccation",
]

_PAR = {"parallel": True, "cache": True, "fastmath": False, "error_model": "numpy"}

# σ(T): σ37·(1 + α(T − 37)) up to 99 °C, then cut by 10⁴ (linearly over 99–100 °C) to mimic desiccation and
# roll-off. Source: Trujillo & Berjano 2013, Int J Hyperthermia review, as quoted in thermal.md §1.2 ("cut by
# 10²–10⁴"; we take the strong end, which reproduces roll-off).
SIGMA_T_SOURCE = "Trujillo & Berjano 2013 (IJH review), as quoted in thermal.md §1.2"
REFERENCE_TEMPERATURE_C = 37.0
DESICCATION_ONSET_C = 99.0  # the drop starts here [Trujillo & Berjano 2013]
DESICCATION_FULL_C = 100.0  # and is complete here; tissue that reached it stays desiccated
DESICCATION_DROP_FACTOR = 1.0e4  # σ is divided by this once desiccated
MIN_TEMPERATURE_FACTOR = 0.05  # 1 + α(T − 37) is clamped here for very cold tissue (no negative σ)

COLD_RETRY_FACTOR = 5  # iteration budget of the cold retry after a stalled warm start, × max_iterations
_HELD_SIGMA = 1.0  # S/m placed on held metal voxels; the face factors remove it from every metal face exactly


# --------------------------------------------------------------------------------------------
# σ(T) and desiccation
# --------------------------------------------------------------------------------------------


@numba.njit(**_PAR)
def _sigma_of_t(s37, alpha, temp, dry, out):  # pragma: no cover - jit
    """out = σ37·max(1 + α(T − 37), floor)·m(T, dry) (T above 100 °C counts as 100 °C); returns the number of
    non-finite inputs or negative σ37 (those voxels get NaN)."""
    nk, nj, ni = out.shape
    drop = 1.0 / DESICCATION_DROP_FACTOR
    width = DESICCATION_FULL_C - DESICCATION_ONSET_C
    bad = 0
    for k in prange(nk):
        for j in range(nj):
            for i in range(ni):
                s = np.float64(s37[k, j, i])
                a = np.float64(alpha[k, j, i])
                t = np.float64(temp[k, j, i])
                d = min(max(np.float64(dry[k, j, i]), 0.0), 1.0)
                if not (math.isfinite(s) and s >= 0.0 and math.isfinite(a) and math.isfinite(t)):
                    bad += 1
                    out[k, j, i] = np.nan
                    continue
                f = max(1.0 + a * (min(t, DESICCATION_FULL_C) - REFERENCE_TEMPERATURE_C), MIN_TEMPERATURE_FACTOR)
                if t <= DESICCATION_ONSET_C:
                    m = 1.0
                elif t >= DESICCATION_FULL_C:
                    m = drop
                else:
                    m = 1.0 + (t - DESICCATION_ONSET_C) / width * (drop - 1.0)
                m += d * (drop - m)  # desiccated tissue stays at the low conductivity
                out[k, j, i] = s * f * m
    return bad


@numba.njit(**_PAR)
def _mark_dry(dry, temp):  # pragma: no cover - jit
    """dry = True (1) where T ≥ 100 °C; returns how many voxels were newly marked."""
    nk, nj, ni = dry.shape
    new = 0
    for k in prange(nk):
        for j in range(nj):
            for i in range(ni):
                if temp[k, j, i] >= DESICCATION_FULL_C and not dry[k, j, i] >= 1:
                    dry[k, j, i] = 1
                    new += 1
    return new


def _as3d(value: np.ndarray) -> np.ndarray:
    """A view with unit axes prepended up to three dimensions (no copy)."""
    if value.ndim > 3:
        raise PhysicsError(f"a {value.ndim}-D temperature field", "give a volume indexed [k, j, i] (≤ 3-D)")
    return value.reshape((1,) * (3 - value.ndim) + value.shape)


def _broadcast(value: np.ndarray | float, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``value`` broadcast (without copying) to the temperature field's shape, as a 3-D view."""
    arr = np.asarray(value)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise PhysicsError(f"{name} has dtype {arr.dtype}", f"give {name} as real numbers")
    try:
        return _as3d(np.broadcast_to(arr, shape))
    except ValueError:
        raise PhysicsError(
            f"{name} has shape {arr.shape}, the temperature is {shape}", f"give {name} on the grid"
        ) from None


def conductivity_at_temperature(
    sigma37_s_m: np.ndarray | float,
    coeff_per_c: np.ndarray | float,
    temperature_c: np.ndarray | float,
    out: np.ndarray | None = None,
    desiccated: np.ndarray | None = None,
) -> np.ndarray:
    """σ(T) = σ37·(1 + α(T − 37)) below 99 °C, cut by 10⁴ linearly over 99–100 °C (thermal.md §1.2).

    ``coeff_per_c`` is α (fraction per °C, e.g. 0.02 for liver); 1 + α(T − 37) is clamped at ≥ 0.05. Where
    ``desiccated`` is set (bool, or a float fraction in [0, 1]) the full drop applies at any temperature: drying is
    irreversible. Returns float32 on the temperature's shape, written into ``out`` when given (no allocation).
    """
    temp = np.asarray(temperature_c)
    shape = temp.shape
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise PhysicsError(f"out is {out.dtype} {out.shape}, the temperature is {shape}", "give a float32 volume")
    dry = np.zeros((), np.bool_) if desiccated is None else desiccated
    bad = _sigma_of_t(
        _broadcast(sigma37_s_m, shape, "sigma37_s_m"),
        _broadcast(coeff_per_c, shape, "coeff_per_c"),
        _as3d(temp),
        _broadcast(dry, shape, "desiccated"),
        _as3d(out),
    )
    if bad:
        raise PhysicsError(
            f"{bad} voxels have a non-finite temperature, σ37 or coefficient, or a negative σ37",
            "give finite temperatures and coefficients and σ37 ≥ 0",
        )
    return out


def update_desiccation(desiccated: np.ndarray, temperature_c: np.ndarray) -> int:
    """Mark voxels at ≥ 100 °C as desiccated, in place (they stay marked after cooling); returns the newly marked."""
    temp = np.asarray(temperature_c)
    if desiccated.shape != temp.shape:
        raise PhysicsError(f"desiccated has shape {desiccated.shape}, the temperature {temp.shape}", "use one grid")
    return int(_mark_dry(_as3d(desiccated), _as3d(temp)))


# --------------------------------------------------------------------------------------------
# the field solver
# --------------------------------------------------------------------------------------------


@numba.njit(**_PAR)
def _fill_coefficient(sigma, inside, terminal, a):  # pragma: no cover - jit
    """a = σ in tissue, 0 in insulated metal, _HELD_SIGMA in conducting metal; returns (bad σ, changed voxels)."""
    nk, nj, ni = a.shape
    bad = 0
    changed = 0
    for k in prange(nk):
        for j in range(nj):
            for i in range(ni):
                s = np.float32(sigma[k, j, i])
                if not (math.isfinite(s) and s >= 0.0):
                    bad += 1
                if terminal[k, j, i] >= 0:
                    s = np.float32(_HELD_SIGMA)
                elif inside[k, j, i]:
                    s = np.float32(0.0)
                if s != a[k, j, i]:
                    changed += 1
                    a[k, j, i] = s
    return bad, changed


@numba.njit(**_PAR)
def _fill_held_values(terminal, lut, values):  # pragma: no cover - jit
    """values = drive potential of each conducting voxel's terminal (lut), 0 elsewhere (ground, tissue)."""
    nk, nj, ni = values.shape
    for k in prange(nk):
        for j in range(nj):
            for i in range(ni):
                t = terminal[k, j, i]
                values[k, j, i] = lut[t] if t >= 0 else 0.0


@numba.njit(cache=True)
def _face_t(a_upper, a_lower, s, f):  # pragma: no cover - jit
    """A face conductance exactly as the elliptic operator forms it (same float32 operations in the same order):
    harmonic mean of the voxel above and the one below × geometry × factor."""
    den = a_upper + a_lower
    return np.float64((s * a_upper * a_lower / den) * f) if den > 0.0 else 0.0


@numba.njit(cache=True)
def _face_power(v, fixed, vp, p_free, q, t, row, nt):  # pragma: no cover - jit
    """Add one face's share to the free voxel (returned) or its current to a held voxel's terminal row."""
    if t == 0.0:
        return 0.0
    dv = vp - np.float64(v[q])
    if p_free:
        return t * dv * dv * (0.5 if not fixed[q] else 1.0)
    if not fixed[q]:
        row[nt] += t * dv
    return 0.0


@numba.njit(**_PAR)
def _joule_currents(v, a, fz, fy, fx, fixed, terminal, spacing, ground_slot, q_out, cur):  # pragma: no cover - jit
    """Q per voxel (W/m³ per V²) from face dissipation, and the current leaving each held voxel summed per terminal
    (slot ``ground_slot`` for ground) into cur[k, slot] (one row per k-plane, summed by the caller)."""
    nk, nj, ni = v.shape
    hz, hy, hx = spacing[0], spacing[1], spacing[2]
    sz = np.float32(2.0 * hy * hx / hz)
    sy = np.float32(2.0 * hz * hx / hy)
    sx = np.float32(2.0 * hz * hy / hx)
    inv_vol = 1.0 / (hz * hy * hx)
    for k in prange(nk):
        row = cur[k]
        for j in range(nj):
            for i in range(ni):
                free = not fixed[k, j, i]
                slot = terminal[k, j, i] if terminal[k, j, i] >= 0 else ground_slot
                ap = a[k, j, i]
                vp = np.float64(v[k, j, i])
                e = 0.0
                if k > 0:
                    t = _face_t(ap, a[k - 1, j, i], sz, fz[k, j, i])
                    e += _face_power(v, fixed, vp, free, (k - 1, j, i), t, row, slot)
                if k < nk - 1:
                    t = _face_t(a[k + 1, j, i], ap, sz, fz[k + 1, j, i])
                    e += _face_power(v, fixed, vp, free, (k + 1, j, i), t, row, slot)
                if j > 0:
                    t = _face_t(ap, a[k, j - 1, i], sy, fy[k, j, i])
                    e += _face_power(v, fixed, vp, free, (k, j - 1, i), t, row, slot)
                if j < nj - 1:
                    t = _face_t(a[k, j + 1, i], ap, sy, fy[k, j + 1, i])
                    e += _face_power(v, fixed, vp, free, (k, j + 1, i), t, row, slot)
                if i > 0:
                    t = _face_t(ap, a[k, j, i - 1], sx, fx[k, j, i])
                    e += _face_power(v, fixed, vp, free, (k, j, i - 1), t, row, slot)
                if i < ni - 1:
                    t = _face_t(a[k, j, i + 1], ap, sx, fx[k, j, i + 1])
                    e += _face_power(v, fixed, vp, free, (k, j, i + 1), t, row, slot)
                q_out[k, j, i] = e * inv_vol


def outer_layer_mask(shape: Sequence[int]) -> np.ndarray:
    """The one-voxel outer layer of the box: the default return (far ground) of a monopolar electrode."""
    mask = np.zeros(tuple(shape), dtype=np.bool_)
    mask[[0, -1]] = True
    mask[:, [0, -1]] = True
    mask[:, :, [0, -1]] = True
    return mask


@dataclass
class UnitSolution:
    """The field of one drive pattern at 1 V: scale the Joule source and power by the squared drive amplitude.

    ``terminal_currents_a``: current leaving each terminal (A per V, all terminals, undriven ones included);
    ``ground_current_a``: current leaving through the ground (negative: it enters there); ``conductance_s``:
    Σ_t I_t·V_t of the pattern, so P = conductance_s·V² (for one driven terminal: the current it supplies per volt).
    """

    drive: dict[int, float]
    potential_v: np.ndarray
    joule_w_m3_per_v2: np.ndarray
    terminal_currents_a: dict[int, float]
    ground_current_a: float
    conductance_s: float
    info: SolveInfo

    @property
    def impedance_ohm(self) -> float:
        """Load impedance seen by the generator, 1 / conductance (inf when no current flows)."""
        return 1.0 / self.conductance_s if self.conductance_s > 0 else math.inf

    def power_w(self, voltage_v: float) -> float:
        """Power delivered at drive amplitude ``voltage_v``."""
        return self.conductance_s * voltage_v * voltage_v

    def voltage_for_power(self, power_w: float) -> float:
        """Drive amplitude that delivers ``power_w`` (constant-power control)."""
        if not (power_w >= 0 and self.conductance_s > 0):
            raise PhysicsError(f"power {power_w} W at conductance {self.conductance_s} S", "give P ≥ 0 and a load")
        return math.sqrt(power_w / self.conductance_s)


class RFField:
    """The quasi-static potential on one grid, solved for 1 V drive patterns and reused as σ changes.

    ``raster`` holds the applicator metal (conducting voxels are held at their terminal's potential, insulated
    ones are insulating). ``ground_mask`` is held at 0 V: default the outer voxel layer of the box (the far return);
    pass a skin-pad mask for a dispersive pad, or an all-False mask for no return (bipolar in an insulated box).
    ``ground_face_fraction`` (fz, fy, fx) optionally places the ground surface with sub-voxel accuracy too (θ on
    faces between a free and a ground voxel, as for metal). ``subvoxel=False`` treats the metal as its voxel
    staircase (θ = 1), for comparison.
    """

    def __init__(
        self,
        spacing_m: Sequence[float],
        raster: MetalRaster,
        ground_mask: np.ndarray | None = None,
        *,
        ground_face_fraction: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        subvoxel: bool = True,
        rtol: float = 1e-6,
        max_iterations: int = 200,
    ) -> None:
        self.raster = raster
        self.shape = raster.shape
        self.spacing_m = self._check_spacing(spacing_m, raster)
        self.ground = self._check_ground(ground_mask, raster)
        self.fixed = self.ground | raster.conducting
        self.terminals = raster.terminals()
        self.rtol = float(rtol)
        self.max_iterations = int(max_iterations)
        self._a = np.full(self.shape, np.nan, dtype=np.float32)  # the operator's coefficient (NaN: not yet set)
        self._held = np.zeros(self.shape, dtype=np.float32)
        nk, nj, ni = self.shape
        self._factors = (
            np.ones((nk + 1, nj, ni), np.float32),
            np.ones((nk, nj + 1, ni), np.float32),
            np.ones((nk, nj, ni + 1), np.float32),
        )
        self._held_faces = self._find_held_faces(ground_face_fraction, subvoxel)
        self._solver: MultigridSolver | None = None
        self._pattern: tuple | None = None
        self._previous: dict[tuple, np.ndarray] = {}

    # ---- set-up checks --------------------------------------------------------------------

    @staticmethod
    def _check_spacing(spacing_m: Sequence[float], raster: MetalRaster) -> tuple[float, float, float]:
        """The spacing as three floats, which must be the raster's."""
        h = tuple(float(s) for s in spacing_m)
        if len(h) != 3 or not all(math.isfinite(s) and s > 0 for s in h):
            raise PhysicsError(f"spacing_m {tuple(spacing_m)!r} is not three positive lengths", "give (dz, dy, dx) m")
        if not np.allclose(h, raster.spacing_m, rtol=1e-9, atol=0.0):
            raise PhysicsError(
                f"the metal raster was made on another grid (spacing {raster.spacing_m}, this grid {h})",
                "rasterise the applicator segments on this grid",
            )
        return h  # type: ignore[return-value]

    @staticmethod
    def _check_ground(ground_mask: np.ndarray | None, raster: MetalRaster) -> np.ndarray:
        """The ground mask (default: the outer layer), bool on the grid and clear of conducting metal."""
        ground = outer_layer_mask(raster.shape) if ground_mask is None else np.asarray(ground_mask)
        if ground.shape != raster.shape or ground.dtype != np.bool_:
            raise PhysicsError(
                f"ground_mask is {ground.dtype} {ground.shape}, the metal raster's grid is {raster.shape}",
                "give a boolean mask on the same grid",
            )
        overlap = int(np.count_nonzero(ground & raster.conducting))
        if overlap:
            raise PhysicsError(
                f"the ground (return) mask overlaps conducting electrode metal in {overlap} voxels",
                "move the electrode away from the return (or the box edge) or enlarge the grid",
            )
        return ground

    def _find_held_faces(self, ground_fraction, subvoxel: bool) -> list[tuple[np.ndarray, ...]]:
        """Per axis: flat indices of faces between a free voxel and conducting metal (or ground, when its fraction is
        given), of their free and held voxels, and θ — the faces whose factor depends on σ."""
        free = ~self.fixed
        kinds = [(self.raster.conducting, self.raster.face_fraction if subvoxel else None)]
        if ground_fraction is not None:
            kinds.append((self.ground, self._check_fraction(ground_fraction)))
        out = []
        for axis in range(3):
            parts = []
            for target, fraction in kinds:
                idx, sign = face_candidates(free, target, axis)
                held = idx.copy()
                held[:, axis] += sign
                face = idx.copy()
                face[:, axis] += (sign > 0).astype(np.int64)
                face_flat = np.ravel_multi_index(face.T, self._factors[axis].shape)
                theta = np.ones(len(idx)) if fraction is None else fraction[axis].ravel()[face_flat].astype(np.float64)
                free_flat = np.ravel_multi_index(idx.T, self.shape)
                parts.append((face_flat, free_flat, np.ravel_multi_index(held.T, self.shape), theta))
            out.append(tuple(np.concatenate(cols) for cols in zip(*parts, strict=True)))
        return out

    def _check_fraction(self, fraction) -> tuple[np.ndarray, ...]:
        """Ground face fractions: three arrays in the face layout with values in (0, 1]."""
        nk, nj, ni = self.shape
        shapes = ((nk + 1, nj, ni), (nk, nj + 1, ni), (nk, nj, ni + 1))
        arrs = tuple(np.asarray(f, dtype=np.float32) for f in fraction)
        if len(arrs) != 3 or any(f.shape != s for f, s in zip(arrs, shapes, strict=False)):
            raise PhysicsError("ground_face_fraction is not (fz, fy, fx) in the face layout", "give θ per face")
        if any(not (np.all(f > 0) and np.all(f <= 1)) for f in arrs):
            raise PhysicsError("ground_face_fraction has values outside (0, 1]", "give θ in (0, 1]")
        return arrs

    # ---- solving --------------------------------------------------------------------------

    def _drive_lut(self, drive: Mapping[int, float]) -> tuple[tuple, np.ndarray]:
        """Check a drive pattern; return its key and the potential per terminal index (undriven terminals: 0 V)."""
        if not drive:
            raise PhysicsError("the drive pattern is empty", "give terminal potentials, e.g. {0: 1.0} (monopolar)")
        pattern = {}
        for t, value in drive.items():
            if int(t) not in self.terminals:
                raise PhysicsError(
                    f"electrode {t} has no voxel in the grid (present: {list(self.terminals)})",
                    "use a finer grid so the electrode covers a voxel centre, or check the electrode placement",
                )
            if not math.isfinite(float(value)):
                raise PhysicsError(f"terminal {t} is driven at {value} V", "give finite potentials")
            pattern[int(t)] = float(value)
        if not any(pattern.values()):
            raise PhysicsError("every driven potential is 0 V, so no current flows", "drive a terminal at ≠ 0 V")
        lut = np.zeros(max(self.terminals) + 1, dtype=np.float32)
        for t, value in pattern.items():
            lut[t] = value
        return tuple(sorted(pattern.items())), lut

    def _update_factors(self) -> None:
        """Face factors (a_p + a_q)/(2·a_q·θ): the harmonic-mean conductance becomes σ_free·area/(θ·h) exactly."""
        a = self._a.ravel()
        for factors, (face, free, held, theta) in zip(self._factors, self._held_faces, strict=True):
            ap = a[free].astype(np.float64)
            aq = a[held].astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                f = np.where(aq > 0, (ap + aq) / (2.0 * aq * theta), 1.0)
            factors.reshape(-1)[face] = f

    def _prepare(self, sigma_s_m: np.ndarray | float, key: tuple, lut: np.ndarray) -> None:
        """Bring the operator and hierarchy up to date with σ and the drive pattern (only what changed)."""
        sigma = np.asarray(sigma_s_m)
        if sigma.ndim and sigma.shape != self.shape:
            raise PhysicsError(f"sigma_s_m has shape {sigma.shape}, the grid is {self.shape}", "give σ on the grid")
        if not (np.issubdtype(sigma.dtype, np.floating) or np.issubdtype(sigma.dtype, np.integer)):
            raise PhysicsError(f"sigma_s_m has dtype {sigma.dtype}", "give conductivities in S/m")
        raster = self.raster
        bad, changed = _fill_coefficient(np.broadcast_to(sigma, self.shape), raster.inside, raster.terminal, self._a)
        if bad:
            self._a[...] = np.nan  # force a full refresh on the next call
            raise PhysicsError(
                f"sigma_s_m has {bad} negative or non-finite voxels", "give finite electrical conductivities ≥ 0 S/m"
            )
        new_pattern = key != self._pattern
        if new_pattern:
            _fill_held_values(self.raster.terminal, lut, self._held)
        if changed:
            self._update_factors()
        if self._solver is None:
            op = EllipticOperator(self._a, 0.0, self.spacing_m, self.fixed, self._held, face_factors=self._factors)
            self._solver = MultigridSolver(op)
        elif changed or new_pattern:
            self._solver.update_coefficients(
                self._a, None, self._held if new_pattern else None, self._factors if changed else None
            )
        self._pattern = key

    def solve_unit(
        self, sigma_s_m: np.ndarray | float, drive: Mapping[int, float], rtol: float | None = None
    ) -> UnitSolution:
        """Potential, Joule source and terminal currents for a drive pattern at 1 V amplitude.

        ``drive`` maps terminal → potential: {0: 1.0} monopolar, {0: 0.5, 1: −0.5} bipolar. Terminals not named are
        held at 0 V like a return. Warm-starts from this pattern's previous solution; the multigrid hierarchy is
        rediscretised only when σ or the pattern changed.
        """
        key, lut = self._drive_lut(drive)
        self._prepare(sigma_s_m, key, lut)
        assert self._solver is not None
        tolerance = self.rtol if rtol is None else rtol
        x0 = self._previous.get(key)
        potential, info = self._solver.solve(0.0, x0=x0, rtol=tolerance, max_iterations=self.max_iterations)
        if not info.converged and x0 is not None:
            # a warm start from a field whose tissue has since boiled (σ down 10⁴ in a shell at the electrode) can
            # stall the float32-preconditioned CG far above the tolerance while a cold start converges, if slowly
            # (a 2200-voxel desiccated shell: 271 iterations, 0.7 s at 60³): start over with a larger budget
            stalled = info.iterations
            budget = COLD_RETRY_FACTOR * self.max_iterations
            potential, info = self._solver.solve(0.0, x0=None, rtol=tolerance, max_iterations=budget)
            info.iterations += stalled
        if not info.converged:
            raise PhysicsError(
                f"the RF potential solve stopped at relative residual {info.residual:.2e} after {info.iterations}"
                " iterations",
                "raise max_iterations or loosen rtol; σ contrasts of 10⁴ (desiccated tissue) converge more slowly",
            )
        self._previous[key] = potential
        return self._postprocess(potential, dict(key), info)

    def _postprocess(self, potential: np.ndarray, drive: dict[int, float], info: SolveInfo) -> UnitSolution:
        """Face-wise Joule source and terminal currents of a solved potential."""
        slots = max(self.terminals) + 2  # one per terminal index, then the ground
        cur = np.zeros((self.shape[0], slots))
        joule = np.empty(self.shape, dtype=np.float32)
        spacing = np.asarray(self.spacing_m)
        _joule_currents(
            potential, self._a, *self._factors, self.fixed, self.raster.terminal, spacing, slots - 1, joule, cur
        )
        total = cur.sum(axis=0)
        currents = {t: float(total[t]) for t in self.terminals}
        conductance = sum(currents[t] * drive.get(t, 0.0) for t in self.terminals)
        return UnitSolution(drive, potential, joule, currents, float(total[-1]), conductance, info)
