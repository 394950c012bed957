"""3-D Pennes bioheat on the voxel grid: explicit (forward Euler) finite volumes.

    ρc ∂T/∂t = ∇·(k∇T) + ρ_b c_b ω (T_a − T) + Q                (thermal.md §1.1)

Discretisation. Cell-centred finite volumes on the ``[k, j, i]`` grid with a 7-point stencil. Every
face carries a conductance per unit cell volume ``G`` (W m⁻³ K⁻¹): the harmonic mean of the two
cells' k over the squared spacing, so a flux leaving one cell enters its neighbour exactly (the
scheme conserves energy to rounding) and jumps in k (tissue/fat/vessel wall) are handled as series
resistances. The update of a free voxel is

    T' = T + Δt/(ρc) · [ Σ_faces G (T_nb − T) + w (T_a − T) + Q ],   w = ρ_b c_b ω · f_perf.

Layout (DESIGN.md, Performance model). The kernel streams precomputed face conductances
``gi, gj, gk`` and per-voxel ``1/(ρc)`` and ``w`` arrays, never a tissue index: that layout is
memory-bound and runs at the triad roofline. Boundary conditions cost nothing per voxel:

- *held voxels* (Dirichlet regions, large-vessel blood, an ambient medium such as air or a cooling
  pad) keep their value because their ``1/(ρc)`` is zero; their neighbours see them through the face
  conductances;
- *convective faces* between a held convective voxel (vessel blood, ambient medium) and a free tissue
  voxel get the series conductance of half a cell of tissue and the film coefficient,
  ``G = 1 / (Δ (Δ/(2k) + 1/h))``; for vessels ``h = Nu·k_b/D`` (thermal.md §4.1, laminar Nu
  3.66–4.36);
- *box faces* are zero-flux unless a Robin condition names them; a Robin box face is the same series
  conductance to an ambient temperature held on a virtual layer outside the box (h = ∞ is a
  Dirichlet face).

Temperature-dependent k and c follow ``x(T) = x37 · (1 + a_x (T − 37 °C))`` with T clipped to
``ThermalMedium.property_range_c``. They are not re-evaluated every step (a refresh re-reads k, c
and rebuilds the face conductances, about one step's memory traffic): the solver refreshes them locally —
on the box of (k, i) lanes whose running sum of per-step maximum |ΔT| (an upper bound on how far any voxel
of the lane moved) has reached ``refresh_delta_k`` — so only the heated region pays for the temperature
dependence and no voxel is ever more than ``refresh_delta_k`` stale. The perfusion factor (a damage
accumulator's surviving fraction) is re-read every ``refresh_every_steps`` steps.

The stable step is ``min over free voxels of ρc / (Σ G + w)`` (the forward-Euler positivity bound,
which includes perfusion, Robin and vessel faces) times a safety factor; with temperature-dependent
properties it is evaluated at the worst case inside the property range (largest k, smallest c) and
with the perfusion factor at 1, so no refresh can make a running step unstable. A forced step above
the bound raises :class:`PhysicsError`.

Freezing (cryoablation, :class:`Freezing`) runs a separate kernel, so the default path above pays nothing for it.
Latent heat is released evenly over the freezing band and the enthalpy (ρc above, mean ρc + L/width in the band,
frozen ρc below) is piecewise linear and inverted exactly; k steps from k_u to κ·k_u with the ice fraction, and the
conductive flux is taken on the Kirchhoff variable φ = ∫κ dT (one κ for all voxels), which is exact for such a
k(T) and keeps the precomputed face conductances. Only the part of a row whose stencil touches ice takes that update;
the rest takes the default row update, and voxels that enter the band from above are redone through the enthalpy.
The stable step is the worst over the three enthalpy segments (frozen tissue: ρc_f/(κ ΣG)).

Numbers: fields float32, reductions (energy, source power) float64. SI units, temperatures in °C.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numba
import numpy as np

from insitu.errors import PhysicsError
from insitu.progress import Progress, ensure_progress

REFERENCE_TEMPERATURE_C = 37.0
"""Temperature at which ``conductivity_w_mk`` and ``specific_heat_j_kgk`` are given."""
BLOOD_DENSITY_KG_M3 = 1050.0  # thermal.md §2.1 [C]
BLOOD_SPECIFIC_HEAT_J_KGK = 3617.0  # thermal.md §2.1 [R] IT'IS
BLOOD_CONDUCTIVITY_W_MK = 0.52  # thermal.md §2.1 [R] IT'IS
ARTERIAL_TEMPERATURE_C = 37.0  # thermal.md §1.1
LAMINAR_NUSSELT = 4.36  # fully developed laminar pipe flow, constant wall flux (thermal.md §4.1; 3.66 at constant T)
DEFAULT_SAFETY = 0.9
# a local refresh (k, c, faces where T moved) also takes the lanes that have moved this fraction of the trigger:
# hot regions move together, so they refresh together instead of one lane per step
LOCAL_REFRESH_FRACTION = 0.25
# on the perfusion cadence, lanes that moved this fraction of the trigger are refreshed too: slow drifts (a field
# settling to steady state) then end with properties at most δ/16 stale instead of δ
CADENCE_REFRESH_FRACTION = 1.0 / 16.0
BOX_FACES = ("k-", "k+", "j-", "j+", "i-", "i+")

_FREE, _HELD, _CONVECTIVE = 0, 1, 2

FloatOrVolume = float | np.ndarray
Source = np.ndarray | Callable[[float, np.ndarray], np.ndarray] | None


# ----------------------------------------------------------------------------------------- kernels
# fast-math without "reassoc": vectorisation needs none (no float reductions in the step), and the
# compensated update's ``y − (tn − t)`` must not be simplified away.
_FAST = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}


@numba.njit(cache=True, fastmath=_FAST)
def _voxel(t, tkm, tkp, tjm, tjp, til, tir, gkm, gkp, gjm, gjp, gil, gir, r, w, q, dt, ta):  # pragma: no cover
    """Forward-Euler update of one voxel (the scalar path used on the i edges)."""
    f = (
        gkm * (tkm - t)
        + gkp * (tkp - t)
        + gjm * (tjm - t)
        + gjp * (tjp - t)
        + gil * (til - t)
        + gir * (tir - t)
        + w * (ta - t)
        + q
    )
    return dt * r * f


@numba.njit(cache=True)
def _through_band(t, d, r, latent, start, width):  # pragma: no cover
    """New temperature when a voxel at ``t`` receives the sensible increment ``d`` (= energy × r, r = 1/(ρc)) and
    absorbs ``latent`` J/m³ spread evenly over [start, start + width] °C (apparent heat capacity, exact in
    energy: the enthalpy H(T) is piecewise linear and inverted piecewise, in float64)."""
    if latent <= 0.0 or r <= 0.0 or (t < start and t + d < start):
        return t + d
    rb = 1.0 / (1.0 / r + latent / width)  # 1/(ρc) inside the band
    top = width / rb  # enthalpy at the band's end, relative to its start
    x = float(t) - start
    h = x / r if x < 0.0 else (x / rb if x < width else top + (x - width) / r)
    h += float(d) / r
    if h < 0.0:
        return start + h * r
    if h < top:
        return start + h * rb
    return start + width + (h - top) * r


@numba.njit(cache=True, fastmath=_FAST, inline="always")
def _row(  # pragma: no cover
    t0, tkm, tkp, tjm, tjp, gkm, gkp, gjm, gjp, gir, rr, ww, qr, o, dt, ta, til0, tirn, cr, hr, floor, lr, ps, pw
):
    """Step one i row into ``o``; ``qr`` (source row), ``cr`` (carry row), ``hr`` (ΔT² lanes) may be None.

    ``lr`` (optional): latent heat (J/m³) of each voxel, absorbed over [``ps``, ``ps`` + ``pw``] °C.

    Returns how many new values exceed ``floor`` (an integer sum keeps the loop vectorised). The
    interior loop is written out so LLVM vectorises it; the two i edges take the box faces' ambient
    values ``til0`` and ``tirn``.
    """
    ni = t0.shape[0]
    rising = 0
    banded = 0
    for i in range(1, ni - 1):
        t = t0[i]
        f = (
            gkm[i] * (tkm[i] - t)
            + gkp[i] * (tkp[i] - t)
            + gjm[i] * (tjm[i] - t)
            + gjp[i] * (tjp[i] - t)
            + gir[i] * (t0[i - 1] - t)
            + gir[i + 1] * (t0[i + 1] - t)
            + ww[i] * (ta - t)
        )
        if qr is not None:
            f += qr[i]
        d = dt * rr[i] * f
        in_band = False
        if lr is not None:
            in_band = (t >= ps) | (t + d >= ps)
            banded += in_band  # fixed up after the loop, which stays vectorised
        if cr is not None:
            y = d + cr[i]
            tn = t + y
            cr[i] = y - (tn - t)
        else:
            tn = t + d
        o[i] = tn
        rising += tn > floor
        if hr is not None:
            d2 = np.float32(0.0) if in_band else d * d  # banded voxels record their true change in the fix-up
            c = hr[i]
            hr[i] = c if c >= d2 else d2
    for e in range(2 if ni > 1 else 1):  # the i edges (one voxel when ni == 1)
        i = 0 if e == 0 else ni - 1
        til = t0[i - 1] if i > 0 else til0
        tir = t0[i + 1] if i < ni - 1 else tirn
        qq = np.float32(0.0) if qr is None else qr[i]
        t = t0[i]
        d = _voxel(
            t, tkm[i], tkp[i], tjm[i], tjp[i], til, tir,
            gkm[i], gkp[i], gjm[i], gjp[i], gir[i], gir[i + 1], rr[i], ww[i], qq, dt, ta,
        )  # fmt: skip
        if lr is not None:
            d = np.float32(_through_band(t, d, rr[i], lr[i], ps, pw) - t)
        if cr is not None:
            y = d + cr[i]
            tn = t + y
            cr[i] = y - (tn - t)
        else:
            tn = t + d
        o[i] = tn
        rising += tn > floor
        if hr is not None:
            d2 = d * d
            c = hr[i]
            hr[i] = c if c >= d2 else d2
    if lr is not None and banded > 0:  # voxels at or entering the latent band: redo them through the enthalpy
        for i in range(1, ni - 1):
            t = t0[i]
            tn = o[i]
            if t >= ps or tn >= ps:
                tb = np.float32(_through_band(t, tn - t, rr[i], lr[i], ps, pw))
                o[i] = tb
                rising += (tb > floor) - (tn > floor)
                if hr is not None:
                    d2 = (tb - t) * (tb - t)
                    hr[i] = hr[i] if hr[i] >= d2 else d2
    return rising


@numba.njit(parallel=True, cache=True, fastmath=_FAST)
def _step_kernel(
    T, out, gi, gj, gk, irc, w, q, q_rows, dt, ta, amb_k, amb_j, amb_i, peak, peak_floor, chg, carry, lat, ps, pw
):  # pragma: no cover
    """One explicit step ``T → out``. ``q``, ``peak``, ``chg`` and ``carry`` may be None (compiled away).

    ``q_rows[k, j]`` is nonzero where row (k, j) of the source has a nonzero value: the other rows
    skip reading ``q`` (sources are local, so most rows of a patient grid have none).

    ``carry`` (optional) holds each voxel's float32 rounding residual (compensated, Kahan, update):
    the increment actually added is ``d + carry`` and what rounding dropped is kept for the next step.

    ``peak`` (optional) takes the running maximum of ``out``; ``peak_floor[k, j]`` must hold the
    minimum of ``peak[k, j, :]`` (or less). A row with no new value above that floor cannot raise any
    peak, so its peak row is neither read nor written (exact, and most rows of a run are such rows:
    tissue away from the source is not warming); other rows are updated from L1 and their floor
    refreshed. ``chg[k, i]`` (optional) takes the running maximum of ΔT² along each (k, i) lane, so
    the caller can bound max |ΔT| without a float max reduction over the volume.
    """
    nk, nj, ni = T.shape
    for k in numba.prange(nk):
        hr = None if chg is None else chg[k]
        for j in range(nj):
            tkm = T[k - 1, j] if k > 0 else amb_k[0, j]
            tkp = T[k + 1, j] if k < nk - 1 else amb_k[1, j]
            tjm = T[k, j - 1] if j > 0 else amb_j[0, k]
            tjp = T[k, j + 1] if j < nj - 1 else amb_j[1, k]
            cr = None if carry is None else carry[k, j]
            lr = None if lat is None else lat[k, j]
            floor = np.float32(np.inf) if peak is None else peak_floor[k, j]
            o = out[k, j]
            if q is not None and q_rows[k, j]:
                rising = _row(
                    T[k, j], tkm, tkp, tjm, tjp, gk[k, j], gk[k + 1, j], gj[k, j], gj[k, j + 1], gi[k, j], irc[k, j],
                    w[k, j], q[k, j], o, dt, ta, amb_i[0, k, j], amb_i[1, k, j], cr, hr, floor, lr, ps, pw,
                )  # fmt: skip
            else:
                rising = _row(
                    T[k, j], tkm, tkp, tjm, tjp, gk[k, j], gk[k + 1, j], gj[k, j], gj[k, j + 1], gi[k, j], irc[k, j],
                    w[k, j], None, o, dt, ta, amb_i[0, k, j], amb_i[1, k, j], cr, hr, floor, lr, ps, pw,
                )  # fmt: skip
            if peak is not None and rising > 0:
                pr = peak[k, j]
                for i in range(ni):
                    if o[i] > pr[i]:  # a masked store: cache lines with no new peak are not dirtied
                        pr[i] = o[i]
                peak_floor[k, j] = _lowest(pr)


@numba.njit(cache=True, fastmath=True)
def _lowest(row):  # pragma: no cover
    """Minimum of a float32 row (fast-math lets LLVM vectorise the reduction)."""
    m = row[0]
    for i in range(1, row.shape[0]):
        m = min(m, row[i])
    return m


@numba.njit(parallel=True, cache=True)
def _row_minimum(a, out):  # pragma: no cover
    """``out[k, j] = min(a[k, j, :])`` (the peak floors the step kernel keeps)."""
    nk, nj, ni = a.shape
    for k in numba.prange(nk):
        for j in range(nj):
            m = a[k, j, 0]
            for i in range(1, ni):
                v = a[k, j, i]
                m = v if v < m else m
            out[k, j] = m


@numba.njit(cache=True)
def _accumulate_lanes(chg, lanes):  # pragma: no cover
    """``lanes += sqrt(chg)`` (per-lane bound on |ΔT| since the lane's last refresh), ``chg`` reset; returns the
    largest lane bound."""
    nk, ni = chg.shape
    top = np.float32(0.0)
    for k in range(nk):
        for i in range(ni):
            v = lanes[k, i] + np.float32(math.sqrt(chg[k, i]))
            lanes[k, i] = v
            chg[k, i] = 0.0
            top = v if v > top else top
    return float(top)


@numba.njit(cache=True)
def _interface(ka, kb, kinda, kindb, ha, hb, s):  # pragma: no cover
    """Conductance per unit volume (W m⁻³ K⁻¹) of the face between cells a and b, spacing s."""
    if kinda != 0 and kindb != 0:
        return 0.0
    if kinda == 2:
        return 1.0 / (s * (0.5 * s / kb + 1.0 / ha))
    if kindb == 2:
        return 1.0 / (s * (0.5 * s / ka + 1.0 / hb))
    return 2.0 * ka * kb / ((ka + kb) * s * s)


@numba.njit(cache=True)
def _box(kp, kind, h, s):  # pragma: no cover
    """Conductance of a box face of cell p to the ambient layer: zero-flux (h = 0), Robin or h = ∞."""
    if kind != 0 or h <= 0.0:
        return 0.0
    return 1.0 / (s * (0.5 * s / kp + 1.0 / h))


@numba.njit(parallel=True, cache=True)
def _fill_faces(kvol, kind, hconv, box_h, sk, sj, si, gi, gj, gk, k0, k1, i0, i1):  # pragma: no cover
    """Face conductances from the cell conductivities, held-voxel kinds and film coefficients.

    Cells with k in [k0, k1) and i in [i0, i1) (every j) write their −k, −j and −i faces (and the box
    faces they touch): the whole grid with (0, nk, 0, ni).
    """
    nk, nj, ni = kvol.shape
    for kk in numba.prange(k1 - k0):
        k = k0 + kk
        for j in range(nj):
            for i in range(i0, i1):
                kp = float(kvol[k, j, i])
                kd = kind[k, j, i]
                hp = float(hconv[k, j, i])
                # -k face
                if k == 0:
                    gk[0, j, i] = _box(kp, kd, box_h[0], sk)
                else:
                    gk[k, j, i] = _interface(
                        float(kvol[k - 1, j, i]), kp, kind[k - 1, j, i], kd, float(hconv[k - 1, j, i]), hp, sk
                    )
                if k == nk - 1:
                    gk[nk, j, i] = _box(kp, kd, box_h[1], sk)
                if j == 0:
                    gj[k, 0, i] = _box(kp, kd, box_h[2], sj)
                else:
                    gj[k, j, i] = _interface(
                        float(kvol[k, j - 1, i]), kp, kind[k, j - 1, i], kd, float(hconv[k, j - 1, i]), hp, sj
                    )
                if j == nj - 1:
                    gj[k, nj, i] = _box(kp, kd, box_h[3], sj)
                if i == 0:
                    gi[k, j, 0] = _box(kp, kd, box_h[4], si)
                else:
                    gi[k, j, i] = _interface(
                        float(kvol[k, j, i - 1]), kp, kind[k, j, i - 1], kd, float(hconv[k, j, i - 1]), hp, si
                    )
                if i == ni - 1:
                    gi[k, j, ni] = _box(kp, kd, box_h[5], si)


@numba.njit(parallel=True, cache=True)
def _fill_properties(
    T, k37, ak, rho, c37, ac, kind, tlo, thi, kmode, cmode, kout, irc, k0, k1, i0, i1
):  # pragma: no cover
    """Effective k and 1/(ρc) at temperature T (clipped to [tlo, thi]) for k in [k0, k1), i in [i0, i1).

    ``kmode``/``cmode``: 0 → the 37 °C value, 1 → at T, 2 → the worst case for stability inside the
    range (largest k, smallest c). ``T`` is read only where a mode is 1. Held voxels get 1/(ρc) = 0.
    """
    nj = k37.shape[1]
    for kk in numba.prange(k1 - k0):
        k = k0 + kk
        for j in range(nj):
            for i in range(i0, i1):
                if kmode == 0:
                    kout[k, j, i] = k37[k, j, i]
                else:
                    a = float(ak[k, j, i])
                    if kmode == 1:
                        tt = min(max(float(T[k, j, i]), tlo), thi)
                        m = 1.0 + a * (tt - 37.0)
                    else:
                        m = max(1.0 + a * (tlo - 37.0), 1.0 + a * (thi - 37.0))
                    kout[k, j, i] = k37[k, j, i] * m
                if kind[k, j, i] != 0:
                    irc[k, j, i] = 0.0
                    continue
                if cmode == 0:
                    m = 1.0
                else:
                    a = float(ac[k, j, i])
                    if cmode == 1:
                        tt = min(max(float(T[k, j, i]), tlo), thi)
                        m = 1.0 + a * (tt - 37.0)
                    else:
                        m = min(1.0 + a * (tlo - 37.0), 1.0 + a * (thi - 37.0))
                irc[k, j, i] = 1.0 / (float(rho[k, j, i]) * float(c37[k, j, i]) * m)


@numba.njit(parallel=True, cache=True)
def _fill_perfusion(omega, factor, rho_c_blood, kind, w):  # pragma: no cover
    """w = ρ_b c_b ω · clip(factor, 0, 1) (zero in held voxels); returns the count of non-finite values."""
    nk, nj, ni = omega.shape
    bad = 0
    for k in numba.prange(nk):
        for j in range(nj):
            for i in range(ni):
                om = float(omega[k, j, i])
                f = 1.0
                if factor is not None:
                    f = float(factor[k, j, i])
                if not (math.isfinite(om) and math.isfinite(f)):
                    bad += 1
                    w[k, j, i] = 0.0
                    continue
                f = min(max(f, 0.0), 1.0)
                w[k, j, i] = 0.0 if kind[k, j, i] != 0 else rho_c_blood * om * f
    return bad


@numba.njit(parallel=True, cache=True)
def _stable_dt(gi, gj, gk, irc, w):  # pragma: no cover
    """min over free voxels of ρc / (Σ face G + w); inf when nothing is free."""
    nk, nj, ni = irc.shape
    best = np.inf
    for k in numba.prange(nk):
        for j in range(nj):
            for i in range(ni):
                r = float(irc[k, j, i])
                if r <= 0.0:
                    continue
                s = (
                    float(gk[k, j, i])
                    + float(gk[k + 1, j, i])
                    + float(gj[k, j, i])
                    + float(gj[k, j + 1, i])
                    + float(gi[k, j, i])
                    + float(gi[k, j, i + 1])
                    + float(w[k, j, i])
                )
                if s > 0.0:
                    best = min(best, 1.0 / (r * s))
    return best


@numba.njit(parallel=True, cache=True)
def _sum_and_count_nonfinite(a):  # pragma: no cover
    """(Σ a in float64, number of non-finite entries) in one pass."""
    flat = a.reshape(-1)
    total = 0.0
    bad = 0
    for n in numba.prange(flat.size):
        v = float(flat[n])
        if math.isfinite(v):
            total += v
        else:
            bad += 1
    return total, bad


@numba.njit(parallel=True, cache=True)
def _scan_source_box(q, rows, k0, k1, j0, j1, i0, i1):  # pragma: no cover
    """(Σ q in float64, number of non-finite entries) over a box of ``q`` in one pass; ``rows[k, j]`` = 1 where
    row (k, j) is not all 0 inside the box (rows outside it are left alone: the source is zero there)."""
    total = 0.0
    bad = 0
    for kk in numba.prange(k1 - k0):
        k = k0 + kk
        for j in range(j0, j1):
            nonzero = 0
            for i in range(i0, i1):
                v = float(q[k, j, i])
                if math.isfinite(v):
                    total += v
                else:
                    bad += 1
                nonzero |= v != 0.0
            rows[k, j] = nonzero
    return total, bad


@numba.njit(cache=True)
def _apply_held(T, idx, val):  # pragma: no cover
    flat = T.reshape(-1)
    for n in range(idx.size):
        flat[idx[n]] = val[n]


@numba.njit(parallel=True, cache=True)
def _copy(src, dst):  # pragma: no cover
    s = src.reshape(-1)
    d = dst.reshape(-1)
    for n in numba.prange(s.size):
        d[n] = s[n]


# --------------------------------------------------------------------------- the freezing path (cryoablation)
# A separate kernel, used only when the solver is built with :class:`Freezing`; the default path above is untouched.
@numba.njit(cache=True, fastmath=_FAST, inline="always")
def _kirchhoff(t, tl, wd, km1, inv2w):  # pragma: no cover
    """φ(T) = ∫ from T_l to T of k(T')/k_u dT' (K): k/k_u is 1 above the liquidus T_l, rises linearly with the ice
    fraction to κ at T_l − wd and stays κ below (``km1`` = κ − 1, ``inv2w`` = 1/(2 wd)); branch-free."""
    x = tl - t
    xc = min(max(x, np.float32(0.0)), wd)
    return -(x + km1 * (xc * xc * inv2w + max(x - wd, np.float32(0.0))))


@numba.njit(cache=True)
def _enthalpy_step(t, e, ru, rb, rf, tl, wd):  # pragma: no cover
    """Temperature of a voxel at ``t`` after it gains ``e`` J/m³: the enthalpy is piecewise linear (C_u = 1/ru above
    the liquidus T_l, C_b = 1/rb over the band [T_l − wd, T_l], C_f = 1/rf below) and inverted piecewise in float64,
    so crossing the band is exact in energy."""
    cu, cb, cf = 1.0 / ru, 1.0 / rb, 1.0 / rf
    x = tl - float(t)
    if x <= 0.0:
        h = -cu * x
    elif x < wd:
        h = -cb * x
    else:
        h = -cb * wd - cf * (x - wd)
    h += e
    if h >= 0.0:
        return tl + h / cu
    if h > -cb * wd:
        return tl + h / cb
    return tl - wd + (h + cb * wd) / cf


@numba.njit(cache=True, fastmath=_FAST, inline="always")
def _segment(t, tl, wd):  # pragma: no cover
    """0 above the liquidus, 1 in the band, 2 below it."""
    x = tl - t
    return np.int32(x > 0) + np.int32(x >= wd)


@numba.njit(cache=True, fastmath=_FAST, inline="always")
def _finish_row(t0, o, rr, rb, rf, tl, wd, tr):  # pragma: no cover
    """Redo the voxels whose step left their enthalpy segment (through :func:`_enthalpy_step`), take the row's new
    values into the running minimum ``tr`` and return the first and last i below the liquidus (ni, −1: none)."""
    ni = t0.shape[0]
    crossed = 0
    for i in range(ni):  # a vectorised count first: crossings are rare
        crossed += _segment(t0[i], tl, wd) != _segment(o[i], tl, wd)
    for i in range(ni if crossed > 0 else 0):
        t = t0[i]
        s0 = _segment(t, tl, wd)
        if rr[i] > 0.0 and s0 != _segment(o[i], tl, wd):
            r = rr[i] if s0 == 0 else (rb[i] if s0 == 1 else rf[i])
            e = (float(o[i]) - float(t)) / float(r)
            o[i] = np.float32(_enthalpy_step(t, e, float(rr[i]), float(rb[i]), float(rf[i]), tl, wd))
    lo, hi = ni, -1
    for i in range(ni):
        v = o[i]
        if v < tl:
            lo = min(lo, i)
            hi = i
        m = tr[i]
        tr[i] = m if m <= v else v
    return lo, hi


# fmt: off
@numba.njit(cache=True, fastmath=_FAST, inline="always")
def _row_freezing(  # pragma: no cover
    t0, tkm, tkp, tjm, tjp, gkm, gkp, gjm, gjp, gir, rr, rb, rf, ww, qr, o, dt, ta, til0, tirn, tl, wd, km1, inv2w,
    invw, stop, ph,
):
    # fmt: on
    """Step one i row holding (or next to) ice: conduction on the Kirchhoff variable φ (exact for k(T) = k_u·κ(T)),
    perfusion times the unfrozen fraction when ``stop``, the sensible update on the voxel's enthalpy segment; voxels
    that change segment are counted (fixed up by :func:`_finish_row`). ``ph`` is scratch of length ni + 2."""
    ni = t0.shape[0]
    ph[0] = _kirchhoff(til0, tl, wd, km1, inv2w)
    ph[ni + 1] = _kirchhoff(tirn, tl, wd, km1, inv2w)
    for i in range(ni):
        ph[i + 1] = _kirchhoff(t0[i], tl, wd, km1, inv2w)
    crossed = 0
    for i in range(ni):
        t = t0[i]
        p = ph[i + 1]
        f = (
            gkm[i] * (_kirchhoff(tkm[i], tl, wd, km1, inv2w) - p)
            + gkp[i] * (_kirchhoff(tkp[i], tl, wd, km1, inv2w) - p)
            + gjm[i] * (_kirchhoff(tjm[i], tl, wd, km1, inv2w) - p)
            + gjp[i] * (_kirchhoff(tjp[i], tl, wd, km1, inv2w) - p)
            + gir[i] * (ph[i] - p)
            + gir[i + 1] * (ph[i + 2] - p)
        )
        x = tl - t
        ice = min(max(x, np.float32(0.0)), wd) * invw
        f += ww[i] * (np.float32(1.0) - stop * ice) * (ta - t)
        if qr is not None:
            f += qr[i]
        # the segment's 1/C without branches (unconditional loads keep the loop vectorised)
        in_band = np.float32(x > 0)
        frozen = np.float32(x >= wd)
        r = rr[i] + in_band * (rb[i] - rr[i]) + frozen * (rf[i] - rb[i])
        tn = t + dt * f * r
        s0 = np.int32(x > 0) + np.int32(x >= wd)
        o[i] = tn
        crossed += s0 != _segment(tn, tl, wd)
    return crossed


# fmt: off
@numba.njit(parallel=True, cache=True, fastmath=_FAST)
def _freeze_kernel(  # pragma: no cover
    T, out, gi, gj, gk, irc, w, q, q_rows, dt, ta, amb_k, amb_j, amb_i, rb, rf, tl, wd, km1, inv2w, invw, stop,
    cold, cold_next, trough, scratch,
):
    # fmt: on
    """One explicit step ``T → out`` with tissue freezing. Every row takes the default update (exact where the stencil
    is above the liquidus: there φ = T − T_l); the i range whose stencil touches ice — the extents ``cold[0]``…
    ``cold[1]`` of the row and its four neighbours from the last step, widened by one — is then redone by
    :func:`_row_freezing`, and voxels that changed enthalpy segment (entering the band from above, too) through the
    enthalpy. ``cold_next`` takes each row's new extent; ``trough`` the running minimum of the rows holding ice."""
    nk, nj, ni = T.shape
    inf = np.float32(np.inf)
    for k in numba.prange(nk):
        ph = scratch[k]
        for j in range(nj):
            tkm = T[k - 1, j] if k > 0 else amb_k[0, j]
            tkp = T[k + 1, j] if k < nk - 1 else amb_k[1, j]
            tjm = T[k, j - 1] if j > 0 else amb_j[0, k]
            tjp = T[k, j + 1] if j < nj - 1 else amb_j[1, k]
            # the i range whose stencil touches ice: the cold extents of this row and its four neighbours, ±1
            lo, hi = cold[0, k, j], cold[1, k, j]
            if k > 0:
                lo, hi = min(lo, cold[0, k - 1, j]), max(hi, cold[1, k - 1, j])
            if k < nk - 1:
                lo, hi = min(lo, cold[0, k + 1, j]), max(hi, cold[1, k + 1, j])
            if j > 0:
                lo, hi = min(lo, cold[0, k, j - 1]), max(hi, cold[1, k, j - 1])
            if j < nj - 1:
                lo, hi = min(lo, cold[0, k, j + 1]), max(hi, cold[1, k, j + 1])
            o = out[k, j]
            t0 = T[k, j]
            with_q = q is not None and q_rows[k, j] != 0
            if with_q:  # the default update first (all of the row), then the range holding ice again
                _row(
                    t0, tkm, tkp, tjm, tjp, gk[k, j], gk[k + 1, j], gj[k, j], gj[k, j + 1], gi[k, j], irc[k, j],
                    w[k, j], q[k, j], o, dt, ta, amb_i[0, k, j], amb_i[1, k, j], None, None, inf, None, tl, wd,
                )  # fmt: skip
            else:
                _row(
                    t0, tkm, tkp, tjm, tjp, gk[k, j], gk[k + 1, j], gj[k, j], gj[k, j + 1], gi[k, j], irc[k, j],
                    w[k, j], None, o, dt, ta, amb_i[0, k, j], amb_i[1, k, j], None, None, inf, None, tl, wd,
                )  # fmt: skip
            if hi >= lo:
                i0, i1 = max(lo - 1, 0), min(hi + 2, ni)
                left = t0[i0 - 1] if i0 > 0 else amb_i[0, k, j]
                right = t0[i1] if i1 < ni else amb_i[1, k, j]
                if with_q:
                    _row_freezing(
                        t0[i0:i1], tkm[i0:i1], tkp[i0:i1], tjm[i0:i1], tjp[i0:i1], gk[k, j, i0:i1],
                        gk[k + 1, j, i0:i1], gj[k, j, i0:i1], gj[k, j + 1, i0:i1], gi[k, j, i0:i1 + 1],
                        irc[k, j, i0:i1], rb[k, j, i0:i1], rf[k, j, i0:i1], w[k, j, i0:i1], q[k, j, i0:i1],
                        o[i0:i1], dt, ta, left, right, tl, wd, km1, inv2w, invw, stop, ph,
                    )  # fmt: skip
                else:
                    _row_freezing(
                        t0[i0:i1], tkm[i0:i1], tkp[i0:i1], tjm[i0:i1], tjp[i0:i1], gk[k, j, i0:i1],
                        gk[k + 1, j, i0:i1], gj[k, j, i0:i1], gj[k, j + 1, i0:i1], gi[k, j, i0:i1 + 1],
                        irc[k, j, i0:i1], rb[k, j, i0:i1], rf[k, j, i0:i1], w[k, j, i0:i1], None,
                        o[i0:i1], dt, ta, left, right, tl, wd, km1, inv2w, invw, stop, ph,
                    )  # fmt: skip
                lo2, hi2 = _finish_row(t0, o, irc[k, j], rb[k, j], rf[k, j], tl, wd, trough[k, j])
            else:
                below = 0
                for i in range(ni):
                    below += o[i] < tl
                lo2, hi2 = ni, -1
                if below > 0:  # entering the band from above: the whole increment was sensible; redo it
                    lo2, hi2 = _finish_row(t0, o, irc[k, j], rb[k, j], rf[k, j], tl, wd, trough[k, j])
            cold_next[0, k, j] = lo2
            cold_next[1, k, j] = hi2


@numba.njit(parallel=True, cache=True)
def _rows_below(T, tl, cold):  # pragma: no cover
    """``cold[0, k, j]``, ``cold[1, k, j]``: the first and last i where row (k, j) of ``T`` is below ``tl`` (ni, −1:
    nowhere)."""
    nk, nj, ni = T.shape
    for k in numba.prange(nk):
        for j in range(nj):
            lo, hi = ni, -1
            for i in range(ni):
                if T[k, j, i] < tl:
                    lo = min(lo, i)
                    hi = i
            cold[0, k, j] = lo
            cold[1, k, j] = hi


@numba.njit(parallel=True, cache=True)
def _stable_dt_freezing(gi, gj, gk, irc, rb, rf, w, kmax, stop):  # pragma: no cover
    """min over free voxels of the forward-Euler bound in each enthalpy segment: C_u/(ΣG + w) above the liquidus,
    C_b/(κ ΣG + w) in the band and C_f/(κ ΣG + (1 − stop)·w) below (κ: the largest k/k_u)."""
    nk, nj, ni = irc.shape
    best = np.inf
    for k in numba.prange(nk):
        for j in range(nj):
            for i in range(ni):
                r = float(irc[k, j, i])
                if r <= 0.0:
                    continue
                s = (
                    float(gk[k, j, i]) + float(gk[k + 1, j, i]) + float(gj[k, j, i]) + float(gj[k, j + 1, i])
                    + float(gi[k, j, i]) + float(gi[k, j, i + 1])
                )  # fmt: skip
                ww = float(w[k, j, i])
                b = 1.0 / (r * (s + ww)) if s + ww > 0.0 else np.inf
                if kmax * s + ww > 0.0:
                    b = min(b, 1.0 / (float(rb[k, j, i]) * (kmax * s + ww)))
                if kmax * s + (1.0 - stop) * ww > 0.0:
                    b = min(b, 1.0 / (float(rf[k, j, i]) * (kmax * s + (1.0 - stop) * ww)))
                best = min(best, b)
    return best


# --------------------------------------------------------------------------------------- the model
def _volume(name: str, value: Any, shape: tuple[int, ...] | None) -> np.ndarray:
    """A float32 C-contiguous volume (no copy when it already is one); scalars need ``shape``."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        if shape is None:
            raise PhysicsError(f"{name} is a scalar but no grid shape is known", "pass a 3-D volume")
        arr = np.full(shape, float(arr), dtype=np.float32)
    if arr.ndim != 3:
        raise PhysicsError(f"{name} has {arr.ndim} dimensions, expected a [k, j, i] volume", "pass a 3-D array")
    if shape is not None and arr.shape != tuple(shape):
        raise PhysicsError(
            f"{name} has shape {arr.shape} but the grid is {tuple(shape)}", "resample it onto the thermal grid"
        )
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise PhysicsError(f"{name} has dtype {arr.dtype}", "pass a real-valued volume")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_finite(name: str, arr: np.ndarray, *, positive: bool = False, nonnegative: bool = False) -> None:
    _, bad = _sum_and_count_nonfinite(arr)
    if bad:
        raise PhysicsError(f"{name} has {bad} non-finite voxels", "fill NaN/inf voxels with tissue values")
    if positive and float(arr.min()) <= 0.0:
        raise PhysicsError(f"{name} has non-positive voxels (min {float(arr.min()):g})", "use positive SI values")
    if nonnegative and float(arr.min()) < 0.0:
        raise PhysicsError(f"{name} has negative voxels (min {float(arr.min()):g})", "use values ≥ 0")


@dataclass
class ThermalMedium:
    """Thermal properties on the grid, SI: per-voxel volumes ``[k, j, i]`` (float32) and blood constants.

    ``perfusion_1_s`` is the volumetric blood perfusion ω (1/s); earlier steps (embolisation) may
    change it in place between or during runs: the solver re-reads it at every coefficient refresh.
    ``conductivity_coeff_1_k`` / ``specific_heat_coeff_1_k`` are the linear fractional temperature
    coefficients a_k, a_c (1/K, scalar or volume) of ``x(T) = x37 (1 + a (T − 37 °C))``, evaluated
    with T clipped to ``property_range_c``.
    """

    conductivity_w_mk: np.ndarray
    density_kg_m3: np.ndarray
    specific_heat_j_kgk: np.ndarray
    perfusion_1_s: np.ndarray
    spacing_m: tuple[float, float, float]
    conductivity_coeff_1_k: FloatOrVolume = 0.0
    specific_heat_coeff_1_k: FloatOrVolume = 0.0
    property_range_c: tuple[float, float] = (0.0, 100.0)
    blood_density_kg_m3: float = BLOOD_DENSITY_KG_M3
    blood_specific_heat_j_kgk: float = BLOOD_SPECIFIC_HEAT_J_KGK
    blood_conductivity_w_mk: float = BLOOD_CONDUCTIVITY_W_MK
    arterial_temperature_c: float = ARTERIAL_TEMPERATURE_C

    def __post_init__(self) -> None:
        self.conductivity_w_mk = _volume("conductivity_w_mk", self.conductivity_w_mk, None)
        shape = self.conductivity_w_mk.shape
        self.density_kg_m3 = _volume("density_kg_m3", self.density_kg_m3, shape)
        self.specific_heat_j_kgk = _volume("specific_heat_j_kgk", self.specific_heat_j_kgk, shape)
        self.perfusion_1_s = _volume("perfusion_1_s", self.perfusion_1_s, shape)
        spacing = tuple(float(s) for s in np.ravel(self.spacing_m))
        if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise PhysicsError(f"spacing_m {self.spacing_m} is not three positive lengths", "give (dk, dj, di) in m")
        if max(spacing) > 0.1:
            raise PhysicsError(f"spacing_m {spacing} looks like millimetres", "convert the spacing to metres")
        self.spacing_m = spacing  # type: ignore[assignment]
        _check_finite("conductivity_w_mk", self.conductivity_w_mk, positive=True)
        _check_finite("density_kg_m3", self.density_kg_m3, positive=True)
        _check_finite("specific_heat_j_kgk", self.specific_heat_j_kgk, positive=True)
        _check_finite("perfusion_1_s", self.perfusion_1_s, nonnegative=True)
        lo, hi = (float(x) for x in self.property_range_c)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise PhysicsError(f"property_range_c {self.property_range_c} is not an interval", "give (low, high) in °C")
        self.property_range_c = (lo, hi)
        for name in ("conductivity_coeff_1_k", "specific_heat_coeff_1_k"):
            value = getattr(self, name)
            if np.ndim(value) == 0:
                value = float(value)
                if not math.isfinite(value):
                    raise PhysicsError(f"{name} = {value} is not finite", "give a finite coefficient in 1/K")
                worst = min(1 + value * (lo - 37.0), 1 + value * (hi - 37.0))
            else:
                value = _volume(name, value, shape)
                _check_finite(name, value)
                worst = min(
                    1 + float(value.max()) * (hi - 37.0) if value.max() > 0 else 1.0,
                    1 + float(value.min()) * (lo - 37.0) if value.min() > 0 else 1.0,
                    1 + float(value.min()) * (hi - 37.0) if value.min() < 0 else 1.0,
                    1 + float(value.max()) * (lo - 37.0) if value.max() < 0 else 1.0,
                )
            if worst <= 0.0:
                raise PhysicsError(
                    f"{name} makes the property non-positive inside property_range_c {self.property_range_c}",
                    "narrow property_range_c or lower the coefficient",
                )
            setattr(self, name, value)
        for name in (
            "blood_density_kg_m3",
            "blood_specific_heat_j_kgk",
            "blood_conductivity_w_mk",
        ):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise PhysicsError(f"{name} = {v} is not positive", "use the SI blood constant (thermal.md §2.1)")
        if not math.isfinite(float(self.arterial_temperature_c)):
            raise PhysicsError("arterial_temperature_c is not finite", "give it in °C (37)")

    @classmethod
    def uniform(
        cls,
        shape: tuple[int, int, int],
        spacing_m: tuple[float, float, float] | float,
        conductivity_w_mk: float,
        density_kg_m3: float,
        specific_heat_j_kgk: float,
        perfusion_1_s: float = 0.0,
        **kwargs: Any,
    ) -> ThermalMedium:
        """A homogeneous medium (tests, verification): every volume filled with one value."""
        spacing = (float(spacing_m),) * 3 if np.ndim(spacing_m) == 0 else tuple(spacing_m)  # type: ignore[arg-type]
        full = lambda v: np.full(shape, v, dtype=np.float32)  # noqa: E731
        return cls(
            full(conductivity_w_mk),
            full(density_kg_m3),
            full(specific_heat_j_kgk),
            full(perfusion_1_s),
            spacing,  # type: ignore[arg-type]
            **kwargs,
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.conductivity_w_mk.shape  # type: ignore[return-value]

    @property
    def voxel_volume_m3(self) -> float:
        return float(np.prod(self.spacing_m))

    @property
    def blood_heat_capacity_j_m3k(self) -> float:
        """ρ_b c_b: w = ρ_b c_b ω is the perfusion exchange coefficient (W m⁻³ K⁻¹)."""
        return float(self.blood_density_kg_m3) * float(self.blood_specific_heat_j_kgk)

    @property
    def temperature_dependent(self) -> bool:
        return bool(np.any(self.conductivity_coeff_1_k) or np.any(self.specific_heat_coeff_1_k))

    def heat_capacity_j_m3k(self) -> np.ndarray:
        """ρc at 37 °C, float64 (for energy balances)."""
        return self.density_kg_m3.astype(np.float64) * self.specific_heat_j_kgk


@dataclass(frozen=True)
class RobinBoundary:
    """Convective exchange with an ambient medium at ``ambient_c`` through a film coefficient h (W m⁻² K⁻¹).

    ``box_faces`` names outer faces of the grid (``"k-"``, ``"k+"``, ``"j-"``, ``"j+"``, ``"i-"``,
    ``"i+"``; ``"all"`` for all six). ``mask`` marks voxels *of the ambient medium* (air above the
    skin, a water cooling pad): they are held at ``ambient_c`` and every face between them and a free
    tissue voxel becomes a convective face (so the skin voxels are the tissue voxels touching the
    mask). ``h_w_m2k = inf`` makes the contact perfect (a Dirichlet face). Held ambient voxels do not
    limit the time step.
    """

    h_w_m2k: float
    ambient_c: float
    box_faces: tuple[str, ...] = ()
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class VesselBoundary:
    """Large vessels: blood held at ``temperature_c`` (arterial by default) exchanging through the wall.

    The wall coefficient is ``h = Nu · k_b / D`` (thermal.md §4.1) with ``diameter_m`` a scalar or a
    per-voxel volume (read on the vessel voxels). Every face between a vessel voxel and a free tissue
    voxel is convective: ``G = 1/(Δ (Δ/(2k) + 1/h))``.
    """

    mask: np.ndarray
    diameter_m: FloatOrVolume
    nusselt: float = LAMINAR_NUSSELT
    temperature_c: float | None = None


class DamageAccumulator(Protocol):
    """What the solver calls each step on a damage model (physics/damage.py)."""

    def update(self, temperature_c: np.ndarray, dt_s: float) -> None: ...  # may also take start_c=


@dataclass
class ThermalRun:
    """What :meth:`BioheatSolver.advance` returns.

    ``temperature_c`` is the caller's array (updated in place); ``peak_temperature_c`` the per-voxel
    maximum over the run (initial value included); ``snapshots`` maps each requested time (s) to a
    copy of the field; ``source_energy_j`` is ∫∫ Q dV dt (float64).
    """

    temperature_c: np.ndarray
    peak_temperature_c: np.ndarray
    time_s: float
    steps: int
    dt_s: float
    snapshots: dict[float, np.ndarray] = field(default_factory=dict)
    source_energy_j: float = 0.0
    property_refreshes: int = 0
    wall_s: float = 0.0


@dataclass(frozen=True)
class PhaseChange:
    """Latent heat absorbed (released on the way back) evenly over [start_c, start_c + width_k]: tissue water
    vaporising near 100 °C in RF ablation, or freezing in cryoablation (a negative band below 0 °C).

    ``latent_heat_j_m3``: per voxel volume or scalar, J per m³ of tissue (water mass fraction × water
    density × latent heat). The explicit update stays exact in energy (piecewise-linear enthalpy).
    """

    latent_heat_j_m3: float | np.ndarray
    start_c: float
    width_k: float


@dataclass(frozen=True)
class Freezing:
    """Tissue freezing (cryoablation): latent heat over the band [``solidus_c``, ``liquidus_c``] and frozen properties
    that switch in with the ice fraction (physics/phase_change.py builds it from sourced tissue data).

    The ice fraction rises linearly across the band (latent heat released evenly, as :class:`PhaseChange`). Conductivity
    is k = k_u·κ(T), κ rising linearly with the ice fraction from 1 to ``conductivity_ratio`` (k_frozen/k_unfrozen,
    one ratio for every voxel: the flux is then exact on the Kirchhoff variable φ = ∫κ dT). Heat capacity per volume
    is the medium's ρc above the band, ``frozen_heat_capacity_j_m3k`` (scalar or volume) below, their mean plus
    latent/width in the band; the enthalpy is piecewise linear and the update exact in energy. With
    ``perfusion_stops`` the Pennes perfusion term is multiplied by the unfrozen fraction.
    """

    latent_heat_j_m3: float | np.ndarray
    liquidus_c: float
    solidus_c: float
    frozen_heat_capacity_j_m3k: float | np.ndarray
    conductivity_ratio: float
    perfusion_stops: bool = True


# -------------------------------------------------------------------------------------- the solver
class BioheatSolver:
    """Explicit finite-volume Pennes solver on one grid; see the module docstring for the scheme.

    Parameters
    ----------
    medium:
        properties and spacing.
    dirichlet_mask, dirichlet_temperature_c:
        voxels held at a temperature (cooled applicator shaft, cryoprobe wall): scalar or volume
        (read on the mask). Precedence where masks overlap: Dirichlet > vessel > ambient (Robin).
    robin:
        one :class:`RobinBoundary` or several (box faces and/or ambient-medium masks).
    vessels:
        one :class:`VesselBoundary` or several.
    safety:
        fraction of the stability bound used by the automatic step.
    refresh_every_steps, refresh_delta_k:
        cadence of coefficient refreshes (temperature-dependent k/c, perfusion factor).
    phase_change:
        optional :class:`PhaseChange` (latent heat over a temperature band).
    freezing:
        optional :class:`Freezing` (cryoablation: latent heat of freezing, frozen k and ρc, perfusion stopping in
        ice). It runs a separate kernel (the default path is unchanged) that needs a medium without linear k(T),
        c(T) coefficients; it excludes ``phase_change`` and ``compensated``. The solver then keeps the running
        minimum temperature (:attr:`minimum_temperature_c`) and does not track the peak (the field only cools).
    face_factors:
        optional multipliers of the k, j and i face conductances (1/θ on faces to a held surface θ·h
        away: sub-voxel placement of a cooled wall). The stable step accounts for them.
    compensated:
        keep each voxel's float32 rounding residual (Kahan). Near 37 °C a float32 temperature has a
        resolution of 3.8e-6 K; increments below half of it are dropped, which in slowly warming
        far-field voxels is a systematic loss of ~1e-5 of the injected energy over a few hundred
        steps. The compensated update conserves energy to ~1e-7 for 8 more bytes per voxel-update
        (about 20 % slower). Off by default: 1e-5 of the energy is far below every other error.
    """

    def __init__(
        self,
        medium: ThermalMedium,
        dirichlet_mask: np.ndarray | None = None,
        dirichlet_temperature_c: FloatOrVolume | None = None,
        robin: RobinBoundary | Sequence[RobinBoundary] | None = None,
        vessels: VesselBoundary | Sequence[VesselBoundary] | None = None,
        *,
        safety: float = DEFAULT_SAFETY,
        refresh_every_steps: int = 10,
        refresh_delta_k: float = 1.0,
        compensated: bool = False,
        face_factors: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        phase_change: PhaseChange | None = None,
        freezing: Freezing | None = None,
    ) -> None:
        if not isinstance(medium, ThermalMedium):
            raise PhysicsError("medium is not a ThermalMedium", "build one with ThermalMedium(...)")
        if not (0.0 < safety <= 1.0):
            raise PhysicsError(f"safety factor {safety} is outside (0, 1]", "use e.g. 0.9")
        if int(refresh_every_steps) < 1 or not (refresh_delta_k > 0):
            raise PhysicsError("refresh cadence must be ≥ 1 step and > 0 K", "use the defaults (10 steps, 1 K)")
        self.medium = medium
        self._face_factors = self._check_face_factors(face_factors, medium.shape)
        self._latent, self._band_start_c, self._band_width_k = self._check_phase_change(phase_change, medium.shape)
        if phase_change is not None and compensated:
            raise PhysicsError("the compensated update does not support phase change", "use one or the other")
        if freezing is not None and (phase_change is not None or compensated or medium.temperature_dependent):
            raise PhysicsError(
                "freezing cannot be combined with phase_change, the compensated update or linear k(T), c(T)",
                "give a medium without temperature coefficients and no other phase change",
            )
        self.safety = float(safety)
        self.refresh_every_steps = int(refresh_every_steps)
        self.refresh_delta_k = float(refresh_delta_k)
        shape = medium.shape
        nk, nj, ni = shape
        kind = np.zeros(shape, dtype=np.uint8)
        hconv = np.zeros(shape, dtype=np.float32)
        held_t = np.zeros(shape, dtype=np.float32)
        box_h = np.zeros(6, dtype=np.float64)
        box_t = np.full(6, medium.arterial_temperature_c, dtype=np.float64)

        robins = [] if robin is None else [robin] if isinstance(robin, RobinBoundary) else list(robin)
        for rb in robins:
            h = float(rb.h_w_m2k)
            if not (h > 0) or math.isnan(h):
                raise PhysicsError(
                    f"Robin h_w_m2k = {rb.h_w_m2k} is not positive", "give h in W/m²/K (> 0, inf allowed)"
                )
            if not math.isfinite(float(rb.ambient_c)):
                raise PhysicsError("Robin ambient_c is not finite", "give the ambient temperature in °C")
            faces = BOX_FACES if tuple(rb.box_faces) == ("all",) or rb.box_faces == "all" else tuple(rb.box_faces)
            for face in faces:
                if face not in BOX_FACES:
                    raise PhysicsError(f"unknown box face {face!r}", f"use one of {', '.join(BOX_FACES)} or 'all'")
                box_h[BOX_FACES.index(face)] = h
                box_t[BOX_FACES.index(face)] = float(rb.ambient_c)
            if rb.mask is not None:
                m = self._mask("Robin ambient mask", rb.mask, shape)
                kind[m] = _CONVECTIVE
                hconv[m] = h
                held_t[m] = rb.ambient_c
            if not faces and rb.mask is None:
                raise PhysicsError("a RobinBoundary names no box face and no mask", "give box_faces or mask")

        vessel_list = [] if vessels is None else [vessels] if isinstance(vessels, VesselBoundary) else list(vessels)
        for vb in vessel_list:
            m = self._mask("vessel mask", vb.mask, shape)
            if np.ndim(vb.diameter_m) == 0:
                dia = np.float64(vb.diameter_m)
                bad = not (math.isfinite(dia) and dia > 0)
            else:
                dia = _volume("vessel diameter_m", vb.diameter_m, shape)[m].astype(np.float64)
                bad = dia.size > 0 and not (np.all(np.isfinite(dia)) and dia.min() > 0)
            if bad:
                raise PhysicsError("vessel diameter_m is not positive and finite on the mask", "give D in metres")
            if np.any(np.asarray(dia) > 0.1):
                raise PhysicsError("vessel diameter_m looks like millimetres", "convert the diameter to metres")
            nu = float(vb.nusselt)
            if not (math.isfinite(nu) and nu > 0):
                raise PhysicsError(f"vessel nusselt = {vb.nusselt} is not positive", "use 3.66–4.36 (laminar)")
            t_blood = medium.arterial_temperature_c if vb.temperature_c is None else float(vb.temperature_c)
            if not math.isfinite(t_blood):
                raise PhysicsError("vessel temperature_c is not finite", "give the blood temperature in °C")
            kind[m] = _CONVECTIVE
            hconv[m] = nu * medium.blood_conductivity_w_mk / dia
            held_t[m] = t_blood

        if dirichlet_mask is not None:
            m = self._mask("Dirichlet mask", dirichlet_mask, shape)
            if not m.any():
                raise PhysicsError("the Dirichlet mask is empty", "mark at least one voxel or pass dirichlet_mask=None")
            if dirichlet_temperature_c is None:
                raise PhysicsError("a Dirichlet mask needs dirichlet_temperature_c", "give a scalar or a volume in °C")
            values = self._dirichlet_values(dirichlet_temperature_c, m, shape)
            kind[m] = _HELD
            hconv[m] = 0.0
            held_t[m] = values
            self._dirichlet_mask = m
        else:
            if dirichlet_temperature_c is not None:
                raise PhysicsError("dirichlet_temperature_c given without a mask", "pass dirichlet_mask too")
            self._dirichlet_mask = None

        if not np.any(kind == _FREE):
            raise PhysicsError("every voxel is held (Dirichlet, vessel or ambient)", "leave some tissue free")
        self._kind = kind
        self._hconv = hconv
        self._held_idx = np.flatnonzero(kind.reshape(-1) != _FREE).astype(np.int64)
        self._held_val = held_t.reshape(-1)[self._held_idx].copy()
        self._box_h = box_h
        self._amb_k = np.empty((2, nj, ni), np.float32)
        self._amb_j = np.empty((2, nk, ni), np.float32)
        self._amb_i = np.empty((2, nk, nj), np.float32)
        for side in (0, 1):
            self._amb_k[side] = box_t[0 + side]
            self._amb_j[side] = box_t[2 + side]
            self._amb_i[side] = box_t[4 + side]

        self._gi = np.zeros((nk, nj, ni + 1), np.float32)
        self._gj = np.zeros((nk, nj + 1, ni), np.float32)
        self._gk = np.zeros((nk + 1, nj, ni), np.float32)
        self._irc = np.zeros(shape, np.float32)
        self._w = np.zeros(shape, np.float32)
        self._keff = np.empty(shape, np.float32)
        self._scratch = np.empty(shape, np.float32)
        self._ak = self._coefficient(medium.conductivity_coeff_1_k)
        self._ac = self._coefficient(medium.specific_heat_coeff_1_k)
        self._tdep = self._ak is not None or self._ac is not None
        self._chg = np.zeros((nk, ni), np.float32) if self._tdep else None
        self._lanes = np.zeros((nk, ni), np.float32) if self._tdep else None  # |ΔT| bound per lane since refresh
        self._peak_floor = np.empty((nk, nj), np.float32)  # row minima of the tracked peak field
        self._q_rows = np.zeros((nk, nj), np.uint8)  # rows where the current source is nonzero
        self._carry = np.zeros(shape, np.float32) if compensated else None
        self._factor: np.ndarray | None = None
        self._bound_s = math.nan
        self._since_refresh = 0
        self._change_k = 0.0
        self.refreshes = 0
        self.local_refreshes = 0
        self._freeze = self._setup_freezing(freezing)
        self.update_coefficients()

    # ------------------------------------------------------------------ set-up helpers
    def _setup_freezing(self, freezing: Freezing | None) -> tuple | None:
        """Per-voxel 1/C_band and 1/C_frozen (0 in held voxels), row flags, scratch; the kernel's scalars."""
        self._dir_idx = None if self._dirichlet_mask is None else np.flatnonzero(self._dirichlet_mask)
        self._trough: np.ndarray | None = None
        if freezing is None:
            return None
        shape = self.shape
        med = self.medium
        tl, ts, kappa = float(freezing.liquidus_c), float(freezing.solidus_c), float(freezing.conductivity_ratio)
        if not (math.isfinite(tl) and math.isfinite(ts) and ts < tl):
            raise PhysicsError(f"freezing band {ts} to {tl} °C is not a band", "give solidus_c < liquidus_c")
        if not (math.isfinite(kappa) and kappa > 0):
            raise PhysicsError(f"conductivity_ratio {kappa} is not positive", "give k_frozen / k_unfrozen > 0")
        latent = np.broadcast_to(np.asarray(freezing.latent_heat_j_m3, dtype=np.float64), shape)
        cf = np.broadcast_to(np.asarray(freezing.frozen_heat_capacity_j_m3k, dtype=np.float64), shape)
        if not (np.all(np.isfinite(latent)) and float(latent.min()) >= 0.0):
            raise PhysicsError("freezing latent heat must be finite and ≥ 0", "give J/m³ per voxel (0 where none)")
        if not (np.all(np.isfinite(cf)) and float(cf.min()) > 0.0):
            raise PhysicsError("frozen heat capacity must be finite and > 0", "give ρc of the frozen tissue in J/m³/K")
        width = tl - ts
        cu = med.density_kg_m3.astype(np.float64) * med.specific_heat_j_kgk
        free = self._kind == _FREE
        self._rb = np.where(free, 1.0 / (0.5 * (cu + cf) + latent / width), 0.0).astype(np.float32)
        self._rf = np.where(free, 1.0 / cf, 0.0).astype(np.float32)
        nk, nj, ni = shape
        self._cold = np.zeros((2, nk, nj), np.int32)  # first and last i below the liquidus per row
        self._cold_next = np.zeros((2, nk, nj), np.int32)
        self._fscratch = np.zeros((nk, ni + 2), np.float32)
        self._dir_rows = None
        if self._dirichlet_mask is not None:
            rows = np.any(self._dirichlet_mask, axis=2)
            self._dir_rows = np.nonzero(rows)
        f32 = np.float32
        stop = f32(1.0 if freezing.perfusion_stops else 0.0)
        return (f32(tl), f32(width), f32(kappa - 1.0), f32(0.5 / width), f32(1.0 / width), stop, max(1.0, kappa))

    def _start_freezing(self, T: np.ndarray) -> None:
        """Row flags from ``T`` (held values written) and the running minimum (started at the first run)."""
        if self._trough is None:
            self._trough = T.copy()
        _rows_below(T, self._freeze[0], self._cold)

    @property
    def minimum_temperature_c(self) -> np.ndarray | None:
        """With :class:`Freezing`: the running minimum of the temperature over every run so far (read-only view).
        Exact below the liquidus (the rows holding ice update it every step); above it, taken at the end of each
        :meth:`advance`. None before the first run, and without freezing."""
        if self._trough is None:
            return None
        view = self._trough.view()
        view.flags.writeable = False
        return view

    def _write_wall(self, T: np.ndarray, values: Any) -> None:
        """Held Dirichlet values (scalar, or one per Dirichlet voxel in the mask's C order) written into ``T``."""
        if np.ndim(values) == 0:  # the common case: no array built per step
            v = float(values)
            ok, low = math.isfinite(v), v
        else:
            v = np.asarray(values, dtype=np.float32)
            ok = v.shape == self._dir_idx.shape and bool(np.all(np.isfinite(v)))
            low = float(v.min()) if ok else 0.0
        if not ok:
            raise PhysicsError(
                "the wall temperature is not finite or not one value per Dirichlet voxel",
                f"return a scalar or {self._dir_idx.size} finite values in °C",
            )
        T.reshape(-1)[self._dir_idx] = v
        if self._freeze is not None and low < float(self._freeze[0]):
            self._cold[0][self._dir_rows] = 0  # the whole row may hold ice from now on
            self._cold[1][self._dir_rows] = self.shape[2] - 1

    @staticmethod
    def _check_phase_change(change: PhaseChange | None, shape) -> tuple[np.ndarray | None, float, float]:
        """(per-voxel latent heat or None, band start, band width) for the kernel."""
        if change is None:
            return None, 0.0, 1.0
        latent = np.ascontiguousarray(np.broadcast_to(change.latent_heat_j_m3, shape), dtype=np.float32)
        if not np.all(np.isfinite(latent)) or float(latent.min()) < 0.0:
            raise PhysicsError("latent heat must be finite and ≥ 0", "give J/m³ per voxel (0 where none)")
        if not (math.isfinite(change.start_c) and change.width_k > 0 and math.isfinite(change.width_k)):
            raise PhysicsError(
                f"phase-change band {change.start_c} °C + {change.width_k} K is not a band", "give width_k > 0"
            )
        return latent, float(change.start_c), float(change.width_k)

    @staticmethod
    def _check_face_factors(factors: Any, shape: tuple[int, int, int]) -> tuple[tuple[np.ndarray, ...], ...] | None:
        """Per-face multipliers (k, j, i faces; layout (nk+1, nj, ni), (nk, nj+1, ni), (nk, nj, ni+1)), e.g. 1/θ
        on faces to a held surface θ·h away (Shortley–Weller), so a cooled wall sits where the metal is. Kept as
        (k, j, i, factor) of the faces that differ from 1."""
        if factors is None:
            return None
        nk, nj, ni = shape
        wanted = ((nk + 1, nj, ni), (nk, nj + 1, ni), (nk, nj, ni + 1))
        out = []
        for f, want in zip(factors, wanted, strict=True):
            arr = np.ascontiguousarray(f, dtype=np.float32)
            if arr.shape != want:
                raise PhysicsError(f"face factors have shape {arr.shape}, expected {want}", "use the face layout")
            if not np.all(np.isfinite(arr)) or float(arr.min()) <= 0.0:
                raise PhysicsError("face factors must be finite and positive", "give 1/θ with θ in (0, 1]")
            k, j, i = np.nonzero(arr != 1.0)  # few faces (a wall's surface): kept sparse
            out.append((k, j, i, arr[k, j, i]))
        return tuple(out)

    @staticmethod
    def _mask(name: str, mask: Any, shape: tuple[int, ...]) -> np.ndarray:
        m = np.asarray(mask)
        if m.shape != tuple(shape):
            raise PhysicsError(
                f"{name} has shape {m.shape} but the grid is {tuple(shape)}", "resample it onto the grid"
            )
        if m.dtype != np.bool_:
            raise PhysicsError(f"{name} has dtype {m.dtype}", "pass a boolean mask")
        return m

    @staticmethod
    def _dirichlet_values(value: FloatOrVolume, m: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if np.ndim(value) == 0:
            values = np.full(int(m.sum()), float(value), dtype=np.float32)  # type: ignore[arg-type]
        else:
            values = _volume("dirichlet_temperature_c", value, shape)[m]
        if not np.all(np.isfinite(values)):
            raise PhysicsError("dirichlet_temperature_c is not finite on the mask", "give temperatures in °C")
        return values

    def _coefficient(self, value: FloatOrVolume) -> np.ndarray | None:
        if np.ndim(value) == 0:
            return None if float(value) == 0.0 else np.full(self.medium.shape, float(value), np.float32)  # type: ignore[arg-type]
        return value  # type: ignore[return-value]

    # ------------------------------------------------------------------ coefficients
    def _fill(self, T: np.ndarray | None, worst_case: bool, box: tuple[int, int, int, int] | None = None) -> None:
        """k, 1/(ρc) and face conductances: at T, at 37 °C (T None) or at the stability worst case; on the cells
        k ∈ [k0, k1), i ∈ [i0, i1) of ``box`` (every j) and the faces they touch, or everywhere."""
        med = self.medium
        lo, hi = med.property_range_c
        nk, _, ni = med.shape
        k0, k1, i0, i1 = (0, nk, 0, ni) if box is None else box

        def mode(coefficient: np.ndarray | None) -> int:
            if coefficient is None:
                return 0
            return 2 if worst_case else (0 if T is None else 1)

        ak = self._ak if self._ak is not None else med.conductivity_w_mk
        ac = self._ac if self._ac is not None else med.specific_heat_j_kgk
        _fill_properties(
            med.conductivity_w_mk if T is None else T,  # unused unless a mode is 1
            med.conductivity_w_mk, ak, med.density_kg_m3, med.specific_heat_j_kgk, ac,
            self._kind, lo, hi, mode(self._ak), mode(self._ac), self._keff, self._irc, k0, k1, i0, i1,
        )  # fmt: skip
        sk, sj, si = med.spacing_m
        # the cells one past the box rewrite their − faces: the box cells' + faces
        fk1, fi1 = min(k1 + 1, nk), min(i1 + 1, ni)
        _fill_faces(
            self._keff, self._kind, self._hconv, self._box_h, sk, sj, si, self._gi, self._gj, self._gk, k0, fk1, i0, fi1
        )
        if self._face_factors is not None:  # on the faces just written: k ∈ [k0, fk1(+1)), i ∈ [i0, fi1(+1))
            k_top = (fk1 + (fk1 == nk), fk1, fk1)
            i_top = (fi1, fi1, fi1 + (fi1 == ni))
            faces = (self._gk, self._gj, self._gi)
            for g, (k, j, i, f), kt, it in zip(faces, self._face_factors, k_top, i_top, strict=True):
                inside = (k >= k0) & (k < kt) & (i >= i0) & (i < it)
                g[k[inside], j[inside], i[inside]] *= f[inside]

    def _fill_perfusion(self, factor: np.ndarray | None, worst_case: bool) -> None:
        med = self.medium
        omega = med.perfusion_1_s
        if omega.shape != med.shape or omega.dtype != np.float32 or not omega.flags.c_contiguous:
            raise PhysicsError("medium.perfusion_1_s was replaced by a non-float32 volume", "assign a float32 volume")
        bad = _fill_perfusion(omega, None if worst_case else factor, med.blood_heat_capacity_j_m3k, self._kind, self._w)
        if bad:
            raise PhysicsError(f"perfusion or its factor has {bad} non-finite voxels", "fill them with finite values")
        if float(self._w.min()) < 0.0:
            raise PhysicsError("medium.perfusion_1_s has negative voxels", "perfusion must be ≥ 0")

    def update_coefficients(self, temperature_c: np.ndarray | None = None, perfusion_factor: Any = None) -> float:
        """Recompute the stability bound (worst case) and the coefficients at ``temperature_c``.

        Call after changing ``medium`` in place (perfusion after embolisation, properties); the
        solver calls it at the start of every :meth:`advance`. Returns the bound in seconds.
        """
        self._set_factor(perfusion_factor)
        self._fill(None, worst_case=True)
        self._fill_perfusion(None, worst_case=True)
        bound = _stable_dt(self._gi, self._gj, self._gk, self._irc, self._w)
        if self._freeze is not None:
            f = self._freeze
            bound = min(bound, _stable_dt_freezing(self._gi, self._gj, self._gk, self._irc, self._rb, self._rf, self._w,
                                                   f[6], float(f[5])))  # fmt: skip
        if not (bound > 0):
            raise PhysicsError("the stability bound is not positive", "check the medium for extreme values")
        self._bound_s = float(bound)
        self._refresh(temperature_c)
        return self._bound_s

    def _set_factor(self, perfusion_factor: Any) -> None:
        if perfusion_factor is None:
            self._factor = None
            return
        f = perfusion_factor() if callable(perfusion_factor) else perfusion_factor
        f = np.asarray(f)
        if f.shape != self.medium.shape:
            raise PhysicsError(
                f"perfusion factor has shape {f.shape} but the grid is {self.medium.shape}",
                "supply the factor on the thermal grid",
            )
        self._factor = np.ascontiguousarray(f, dtype=np.float32)

    def _refresh(self, T: np.ndarray | None) -> None:
        """Coefficients at the current state (temperature, perfusion factor)."""
        self._fill(T if self._tdep else None, worst_case=False)
        self._fill_perfusion(self._factor, worst_case=False)
        self._since_refresh = 0
        self._change_k = 0.0
        if self._chg is not None:
            self._chg.fill(0.0)
            self._lanes.fill(0.0)
        self.refreshes += 1

    def _refresh_local(self, T: np.ndarray, fraction: float = LOCAL_REFRESH_FRACTION) -> None:
        """k, c and faces at T where the temperature moved: the (k, i) box of the lanes whose |ΔT| bound has reached
        a quarter of ``refresh_delta_k``, one cell wider. Lanes outside keep their bound (below the trigger), so
        no voxel's properties are ever more than ``refresh_delta_k`` stale; perfusion waits for the cadence."""
        nk, _, ni = self.shape
        kk, ii = np.nonzero(self._lanes >= np.float32(fraction * self.refresh_delta_k))
        if kk.size == 0:
            return
        k0, k1 = max(int(kk.min()) - 1, 0), min(int(kk.max()) + 2, nk)
        i0, i1 = max(int(ii.min()) - 1, 0), min(int(ii.max()) + 2, ni)
        self._fill(T, worst_case=False, box=(k0, k1, i0, i1))
        self._lanes[k0:k1, i0:i1] = 0.0
        self._change_k = float(self._lanes.max())
        self.local_refreshes += 1

    # ------------------------------------------------------------------ public queries
    @property
    def shape(self) -> tuple[int, int, int]:
        return self.medium.shape

    @property
    def stability_bound_s(self) -> float:
        """The largest stable forward-Euler step (no safety factor), worst case over the property range."""
        return self._bound_s

    def stable_time_step_s(self, safety: float | None = None) -> float:
        """The automatic step: ``safety`` (default the solver's, 0.9) × the stability bound."""
        s = self.safety if safety is None else float(safety)
        if not (0.0 < s <= 1.0):
            raise PhysicsError(f"safety factor {s} is outside (0, 1]", "use e.g. 0.9")
        return s * self._bound_s

    @property
    def held_mask(self) -> np.ndarray:
        """Voxels whose temperature the solver holds (Dirichlet, vessel blood, ambient medium)."""
        return self._kind != _FREE

    def face_conductances(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(gi, gj, gk) per unit volume, W m⁻³ K⁻¹; shapes (nk,nj,ni+1), (nk,nj+1,ni), (nk+1,nj,ni). Read-only views."""
        views = (self._gi.view(), self._gj.view(), self._gk.view())
        for v in views:
            v.flags.writeable = False
        return views

    def set_dirichlet_temperature(self, dirichlet_temperature_c: FloatOrVolume) -> None:
        """Change the held temperature of the Dirichlet region (e.g. a cryoprobe's thaw phase) between runs."""
        if self._dirichlet_mask is None:
            raise PhysicsError("this solver has no Dirichlet region", "build it with dirichlet_mask")
        values = self._dirichlet_values(dirichlet_temperature_c, self._dirichlet_mask, self.shape)
        full = np.zeros(self.shape, np.float32)
        full[self._dirichlet_mask] = values
        sel = self._dirichlet_mask.reshape(-1)[self._held_idx]
        self._held_val[sel] = full.reshape(-1)[self._held_idx[sel]]

    def apply_held(self, temperature_c: np.ndarray) -> None:
        """Write the held temperatures (Dirichlet, vessel blood, ambient) into ``temperature_c`` in place."""
        self._check_temperature(temperature_c)
        _apply_held(temperature_c, self._held_idx, self._held_val)

    # ------------------------------------------------------------------ stepping
    def _check_temperature(self, T: Any) -> None:
        if not isinstance(T, np.ndarray) or T.dtype != np.float32 or not T.flags.c_contiguous:
            raise PhysicsError("the temperature field is not a C-contiguous float32 array", "use np.float32 volumes")
        if T.shape != self.shape:
            raise PhysicsError(f"temperature has shape {T.shape} but the grid is {self.shape}", "use the solver's grid")
        if not T.flags.writeable:
            raise PhysicsError("the temperature field is read-only", "pass a writeable array")

    def _check_source(self, q: Any) -> np.ndarray | None:
        if q is None:
            return None
        arr = np.asarray(q)
        if arr.shape != self.shape:
            raise PhysicsError(
                f"source has shape {arr.shape} but the thermal grid is {self.shape}",
                "resample the source onto the thermal grid",
            )
        if arr.dtype != np.float32 or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=np.float32)
        return arr

    def _check_dt(self, dt_s: float) -> float:
        dt = float(dt_s)
        if not (math.isfinite(dt) and dt > 0):
            raise PhysicsError(f"time step {dt_s} s is not positive", "give dt_s > 0 or leave it None")
        if dt > self._bound_s * (1.0 + 1e-6):
            raise PhysicsError(
                f"time step {dt:.4g} s exceeds the explicit stability limit {self._bound_s:.4g} s",
                f"use dt_s ≤ {self.stable_time_step_s():.4g} s or leave dt_s=None",
            )
        return dt

    def _check_region(self, region: tuple[slice, slice, slice] | None) -> tuple[slice, slice, slice] | None:
        """``region`` as three bounded slices of the grid (step 1), or None."""
        if region is None:
            return None
        if len(region) != 3 or any(not isinstance(r, slice) or r.step not in (None, 1) for r in region):
            raise PhysicsError("source_region is not three slices", "pass (slice_k, slice_j, slice_i) or None")
        return tuple(slice(*r.indices(n)[:2]) for r, n in zip(region, self.shape, strict=True))  # type: ignore[return-value]

    def _prepare_source(self, q: np.ndarray, region: tuple[slice, slice, slice] | None = None) -> tuple[float, int]:
        """(Σ q, non-finite count) and the rows where ``q`` is nonzero; needed before steps that use ``q``.
        With ``region`` only that box is read (the caller guarantees zeros outside it)."""
        if region is None:
            region = (slice(0, q.shape[0]), slice(0, q.shape[1]), slice(0, q.shape[2]))
        (k0, k1), (j0, j1), (i0, i1) = ((r.start, r.stop) for r in region)
        return _scan_source_box(q, self._q_rows, k0, k1, j0, j1, i0, i1)

    def _track_peak(self, peak: np.ndarray) -> None:
        """Compute the row floors of ``peak``; needed before steps that track it (a stale floor may only be lower)."""
        _row_minimum(peak, self._peak_floor)

    def _kernel(self, cur: np.ndarray, nxt: np.ndarray, dt: float, q: np.ndarray | None, peak: np.ndarray | None):
        """One step ``cur → nxt``; with ``peak``, :meth:`_track_peak` must have seen it since it last fell."""
        if self._freeze is not None:  # the freezing path (no peak: the field only cools)
            tl, wd, km1, inv2w, invw, stop, _ = self._freeze
            _freeze_kernel(
                cur, nxt, self._gi, self._gj, self._gk, self._irc, self._w, q, self._q_rows, np.float32(dt),
                np.float32(self.medium.arterial_temperature_c), self._amb_k, self._amb_j, self._amb_i, self._rb,
                self._rf, tl, wd, km1, inv2w, invw, stop, self._cold, self._cold_next, self._trough, self._fscratch,
            )  # fmt: skip
            self._cold, self._cold_next = self._cold_next, self._cold
            self._since_refresh += 1
            return
        _step_kernel(
            cur, nxt, self._gi, self._gj, self._gk, self._irc, self._w, q, self._q_rows, np.float32(dt),
            np.float32(self.medium.arterial_temperature_c), self._amb_k, self._amb_j, self._amb_i, peak,
            self._peak_floor, self._chg, self._carry, self._latent, self._band_start_c, self._band_width_k,
        )  # fmt: skip
        self._since_refresh += 1
        if self._chg is not None:
            self._change_k = _accumulate_lanes(self._chg, self._lanes)

    def _maybe_refresh(self, T: np.ndarray, factor_source: Any) -> bool:
        """The perfusion factor on the step cadence; k, c and faces locally, where the temperature has moved by
        ``refresh_delta_k`` (every lane stays within that bound, so no full refresh is needed between runs)."""
        refreshed = False
        if self._since_refresh >= self.refresh_every_steps:
            self._since_refresh = 0
            if callable(factor_source):
                self._set_factor(factor_source)
                self._fill_perfusion(self._factor, worst_case=False)
                self.refreshes += 1
                refreshed = True
            if self._tdep and self._change_k >= CADENCE_REFRESH_FRACTION * self.refresh_delta_k:
                self._refresh_local(T, CADENCE_REFRESH_FRACTION)
                refreshed = True
        if self._tdep and self._change_k >= self.refresh_delta_k:
            self._refresh_local(T)
            refreshed = True
        return refreshed

    def step(
        self,
        temperature_c: np.ndarray,
        dt_s: float,
        source_w_m3: np.ndarray | None = None,
        peak_temperature_c: np.ndarray | None = None,
    ) -> None:
        """One explicit step of ``temperature_c`` in place (computed into an internal buffer, copied back).

        Checks shapes and the step against the stability limit before touching anything;
        ``peak_temperature_c`` (optional) takes the running maximum. :meth:`advance` is faster
        (it swaps buffers instead of copying back).
        """
        self._check_temperature(temperature_c)
        dt = self._check_dt(dt_s)
        q = self._check_source(source_w_m3)
        if q is not None:
            self._prepare_source(q)  # which rows carry source (the kernel skips the others)
        if peak_temperature_c is not None and (
            peak_temperature_c.shape != self.shape or peak_temperature_c.dtype != np.float32
        ):
            raise PhysicsError("peak_temperature_c is not a float32 volume on the grid", "allocate it like T")
        self._maybe_refresh(temperature_c, None)
        if peak_temperature_c is not None:
            self._track_peak(peak_temperature_c)
        if self._freeze is not None:
            self._start_freezing(temperature_c)
        self._kernel(temperature_c, self._scratch, dt, q, peak_temperature_c)
        _copy(self._scratch, temperature_c)
        if self._freeze is not None:
            np.minimum(self._trough, temperature_c, out=self._trough)

    def advance(
        self,
        temperature_c: np.ndarray,
        duration_s: float,
        *,
        source_w_m3: Source = None,
        source_interval_s: float | None = None,
        dt_s: float | None = None,
        perfusion_factor: np.ndarray | Callable[[], np.ndarray] | None = None,
        damage: DamageAccumulator | None = None,
        step_callback: Callable[[float, np.ndarray], None] | None = None,
        snapshot_times_s: Sequence[float] = (),
        peak_temperature_c: np.ndarray | None = None,
        progress: Progress | None = None,
        start_time_s: float = 0.0,
        source_region: tuple[slice, slice, slice] | None = None,
        wall_temperature_c: Callable[[float, np.ndarray], FloatOrVolume] | None = None,
    ) -> ThermalRun:
        """Advance ``temperature_c`` (float32, in place) by ``duration_s``.

        ``source_w_m3``: None, a volume (W/m³), or ``source(t_s, T) -> volume`` re-evaluated every
        ``source_interval_s`` (default: every step) — return float32 to avoid a copy.
        ``dt_s``: None for the automatic stable step; a forced step above the limit raises.
        ``perfusion_factor``: a volume or a callable returning one (0…1, clipped), re-read every
        ``refresh_every_steps``; when None and ``damage`` has ``perfusion_factor()``, that is used.
        ``damage.update(T, dt)`` and ``step_callback(t_s, T)`` run after every step with the new
        field (a buffer owned by the solver: read it, don't keep it). ``snapshot_times_s``: times
        (from the start of this call) at which a copy is kept; steps are shortened to land on them
        and on ``duration_s``. ``peak_temperature_c``: an existing peak field to continue
        (otherwise a new one starting from ``temperature_c``). Held voxels are written into
        ``temperature_c`` first. Progress is reported as stage ``"bioheat"``. ``source_region``: a box (slices)
        outside which every source the run sees is zero — a local source (an electrode's field box) is then
        scanned there only; the first source is checked to hold it. ``wall_temperature_c(t_s, T)`` (optional, needs a
        Dirichlet region): the held temperature at the start of every step (a cryoprobe's wall curve), a scalar or
        one value per Dirichlet voxel in the mask's C order; it stays set after the run.
        """
        wall0 = time.perf_counter()
        report = ensure_progress(progress)
        self._check_temperature(temperature_c)
        duration = float(duration_s)
        if not (math.isfinite(duration) and duration >= 0):
            raise PhysicsError(f"duration {duration_s} s is not a time", "give duration_s ≥ 0")
        snaps = sorted({float(t) for t in snapshot_times_s})
        if snaps and (snaps[0] < 0 or snaps[-1] > duration * (1 + 1e-12)):
            raise PhysicsError(f"snapshot times {snaps} fall outside [0, {duration}] s", "give times inside the run")
        if source_interval_s is not None and not (float(source_interval_s) > 0):
            raise PhysicsError("source_interval_s is not positive", "give seconds > 0 or None for every step")
        if peak_temperature_c is not None and (
            peak_temperature_c.shape != self.shape or peak_temperature_c.dtype != np.float32
        ):
            raise PhysicsError("peak_temperature_c is not a float32 volume on the grid", "allocate it like T")
        if perfusion_factor is None and damage is not None and hasattr(damage, "perfusion_factor"):
            perfusion_factor = damage.perfusion_factor  # type: ignore[attr-defined]
        _, bad = _sum_and_count_nonfinite(temperature_c)
        if bad:
            raise PhysicsError(f"the initial temperature has {bad} non-finite voxels", "start from a finite field")
        if wall_temperature_c is not None and self._dir_idx is None:
            raise PhysicsError("wall_temperature_c needs a Dirichlet region", "build the solver with dirichlet_mask")

        # coefficients and the bound at the current state (perfusion may have changed since the last run);
        # this touches only the solver's own buffers, so a failing check below leaves the caller's data alone
        self.update_coefficients(temperature_c if self._tdep else None, perfusion_factor)
        dt_nominal = self.stable_time_step_s() if dt_s is None else self._check_dt(dt_s)
        callable_source = callable(source_w_m3)
        q = None
        q_power_w = 0.0
        voxel_m3 = self.medium.voxel_volume_m3

        region = self._check_region(source_region)

        def evaluate_source(t_s: float, T: np.ndarray) -> tuple[np.ndarray | None, float]:
            raw = source_w_m3(t_s, T) if callable_source else source_w_m3  # type: ignore[operator]
            arr = self._check_source(raw)
            if arr is None:
                return None, 0.0
            total, nonfinite = self._prepare_source(arr, region)
            if nonfinite:
                raise PhysicsError(f"the source has {nonfinite} non-finite voxels", "return finite W/m³ values")
            return arr, total * voxel_m3

        q, q_power_w = evaluate_source(start_time_s, temperature_c)
        if region is not None and q is not None:
            outside = q.copy()
            outside[region] = 0.0
            if np.any(outside):
                raise PhysicsError("the source is nonzero outside source_region", "widen the region or pass None")
            self._q_rows.fill(0)
            self._prepare_source(q, region)

        # everything checked: now write
        _apply_held(temperature_c, self._held_idx, self._held_val)
        if peak_temperature_c is None:
            peak = temperature_c.copy()
        else:
            peak = peak_temperature_c
            np.maximum(peak, temperature_c, out=peak)
        self._track_peak(peak)
        if self._freeze is not None:
            self._start_freezing(temperature_c)
        snapshots: dict[float, np.ndarray] = {t: np.empty_like(temperature_c) for t in snaps}
        pending = list(snaps)
        while pending and pending[0] <= 0.0:
            snapshots[pending.pop(0)][...] = temperature_c

        cur, nxt = temperature_c, self._scratch
        refreshes0 = self.refreshes + self.local_refreshes
        damage_takes_start = damage is not None and "start_c" in inspect.signature(damage.update).parameters
        t = 0.0
        steps = 0
        energy = 0.0
        next_source = float(source_interval_s) if (callable_source and source_interval_s) else 0.0
        report_every = max(duration / 100.0, 1e-300)
        next_report = report_every
        eps = 1e-9 * max(dt_nominal, 1e-300)
        report("bioheat", 0.0, f"dt {dt_nominal:.3g} s")
        try:  # a failure inside the loop (a callable's bad output) leaves T at the last good step
            while duration - t > eps:
                if callable_source and steps > 0 and (source_interval_s is None or t >= next_source - eps):
                    q, q_power_w = evaluate_source(start_time_s + t, cur)
                    if source_interval_s:
                        while next_source <= t + eps:
                            next_source += float(source_interval_s)
                if steps > 0:
                    self._maybe_refresh(cur, perfusion_factor)
                if wall_temperature_c is not None:
                    self._write_wall(cur, wall_temperature_c(start_time_s + t, cur))
                dt = dt_nominal
                stop = pending[0] if pending else duration
                if t + dt > stop - eps:
                    dt = stop - t
                self._kernel(cur, nxt, dt, q, peak)
                cur, nxt = nxt, cur
                t = t + dt if stop - (t + dt) > eps else stop
                steps += 1
                energy += q_power_w * dt
                if damage is not None:
                    if damage_takes_start:
                        damage.update(cur, dt, start_c=nxt)  # type: ignore[call-arg]  # nxt: the step's start
                    else:
                        damage.update(cur, dt)
                if step_callback is not None:
                    step_callback(start_time_s + t, cur)
                while pending and pending[0] <= t + eps:
                    _copy(cur, snapshots[pending.pop(0)])
                if t >= next_report:
                    report("bioheat", min(t / duration, 1.0), f"{t:.1f} / {duration:.1f} s")
                    next_report += report_every
        finally:
            if cur is not temperature_c:
                _copy(cur, temperature_c)
            if wall_temperature_c is not None:  # later runs keep the last wall values
                self._held_val[np.isin(self._held_idx, self._dir_idx)] = temperature_c.reshape(-1)[self._dir_idx]
            if self._freeze is not None:
                np.minimum(self._trough, temperature_c, out=self._trough)
        report("bioheat", 1.0, f"{steps} steps")
        return ThermalRun(
            temperature_c=temperature_c,
            peak_temperature_c=peak,
            time_s=t,
            steps=steps,
            dt_s=dt_nominal,
            snapshots=snapshots,
            source_energy_j=energy,
            property_refreshes=self.refreshes + self.local_refreshes - refreshes0,
            wall_s=time.perf_counter() - wall0,
        )

    # ------------------------------------------------------------------ steady state
    def steady_state(
        self,
        source_w_m3: np.ndarray | None = None,
        *,
        rtol: float = 1e-10,
        dtype: type = np.float32,
    ) -> np.ndarray:
        """The fixed point of the explicit scheme (same faces, perfusion and boundaries), by sparse CG.

        Solves Σ G (T_nb − T) + w (T_a − T) + Q = 0 on the free voxels with the coefficients of the
        last refresh (constant properties); held voxels keep their values. For verification and for
        a steady initial field. Needs a sink (perfusion, a held voxel or a Robin face).
        """
        import scipy.sparse as sp
        import scipy.sparse.linalg as spla

        q = self._check_source(source_w_m3)
        shape = self.shape
        n = int(np.prod(shape))
        free = (self._kind == _FREE).reshape(-1)
        num = -np.ones(n, np.int64)
        num[free] = np.arange(int(free.sum()))
        held_full = np.zeros(n, np.float64)
        held_full[self._held_idx] = self._held_val
        diag = self._w.astype(np.float64).reshape(-1).copy()
        rhs = diag * self.medium.arterial_temperature_c
        if q is not None:
            rhs += q.astype(np.float64).reshape(-1)
        rows, cols, vals = [], [], []
        index = np.arange(n).reshape(shape)
        box_t = (
            (self._amb_k[0, 0, 0], self._amb_k[1, 0, 0]),
            (self._amb_j[0, 0, 0], self._amb_j[1, 0, 0]),
            (self._amb_i[0, 0, 0], self._amb_i[1, 0, 0]),
        )
        for axis, g in enumerate((self._gk, self._gj, self._gi)):
            g64 = g.astype(np.float64)
            m = g.shape[axis]
            inner = np.take(g64, np.arange(1, m - 1), axis=axis)
            a = np.take(index, np.arange(0, m - 2), axis=axis).reshape(-1)
            b = np.take(index, np.arange(1, m - 1), axis=axis).reshape(-1)
            gv = inner.reshape(-1)
            np.add.at(diag, a, gv)
            np.add.at(diag, b, gv)
            rows += [a, b]
            cols += [b, a]
            vals += [gv, gv]
            for side, plane in ((0, 0), (1, m - 1)):
                gb = np.take(g64, plane, axis=axis).reshape(-1)
                cells = np.take(index, 0 if side == 0 else m - 2, axis=axis).reshape(-1)
                np.add.at(diag, cells, gb)
                np.add.at(rhs, cells, gb * float(box_t[axis][side]))
        r = np.concatenate(rows)
        c = np.concatenate(cols)
        v = np.concatenate(vals)
        # held neighbours go to the right-hand side; free-free couplings stay in the matrix
        fr, fc = free[r], free[c]
        np.add.at(rhs, r[fr & ~fc], v[fr & ~fc] * held_full[c[fr & ~fc]])
        keep = fr & fc
        A = sp.csr_matrix(
            (np.concatenate([-v[keep], diag[free]]), (np.concatenate([num[r[keep]], np.arange(free.sum())]),
             np.concatenate([num[c[keep]], np.arange(free.sum())]))),
            shape=(int(free.sum()),) * 2,
        )  # fmt: skip
        if float(diag[free].min()) <= 0.0:
            raise PhysicsError("a free voxel has no conductance at all", "check the medium and masks")
        b = rhs[free]
        precond = spla.LinearOperator(A.shape, matvec=lambda x: x / diag[free])
        x0 = np.full(b.size, self.medium.arterial_temperature_c)
        x, info = spla.cg(A, b, x0=x0, rtol=rtol, atol=0.0, M=precond, maxiter=20000)
        if info != 0:
            raise PhysicsError(
                "the steady-state solve did not converge (no heat sink?)",
                "add perfusion, a held region or a Robin face",
            )
        out = held_full.copy()
        out[free] = x
        return out.reshape(shape).astype(dtype)
