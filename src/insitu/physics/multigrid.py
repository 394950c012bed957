"""Matrix-free geometric multigrid for −∇·(a∇u) + c·u = f on the voxel grid.

The discretisation is cell-centred finite volumes with the 7-point stencil: the conductance of the
face between two voxels is the harmonic mean of their ``a`` times area / distance, so ``a = 0``
voxels are insulating. Voxels in a Dirichlet mask are held at given values (electrodes,
applicators, or the outer layer of the box); every other outer face is zero-flux (Neumann).

The linear system lives on the free voxels, in integrated (flux-balance) form:

    Σ_faces T·(u_p − u_q) + (c·V + leak_p)·u_p = f·V + Σ_held-faces T·g,   leak_p = Σ_held-faces T,

so a face to a held voxel is a leak to its value. The hierarchy is float32 and Galerkin-free: a
coarse face conductance is the sum of the fine ones it covers divided by the coarsening factor
along its normal (series-parallel combination), and c·V and the leaks are summed over the children,
so insulating walls and Dirichlet regions reach the coarse grids without special cases. Transfers
are cell-centred trilinear prolongation and its transpose; smoothing is red-black Gauss–Seidel in
symmetric order, so a cycle is a symmetric positive definite preconditioner for CG. The default
preconditioner is one W-cycle: rediscretised coarse operators are not Galerkin, and V-cycles lose
some strength per level on heterogeneous problems, which W-cycles do not (iteration counts stay flat
from 64³ to 128³) for about 20 % more work per cycle. The outer iteration keeps the solution and
residual in float64, so ``rtol`` is met on the true residual rather than on float32 rounding noise;
returned fields are float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numba
import numpy as np
import scipy.linalg
from numba import prange

from insitu.errors import PhysicsError

__all__ = ["EllipticOperator", "MultigridSolver", "SolveInfo", "solve_elliptic"]

_PAR = {"parallel": True, "cache": True, "fastmath": False, "error_model": "numpy"}
_SER = {"cache": True, "fastmath": False, "error_model": "numpy"}

_COARSEST_TARGET = 64  # coarsen until a level has at most this many voxels
_DENSE_MAX_CELLS = 512  # a coarsest level up to this size is solved with a dense (pseudo-)inverse
_COARSEST_SWEEPS = 20  # symmetric Gauss–Seidel sweeps when the coarsest level is too big for a dense solve
_BALANCE_TOLERANCE = 1e-6  # |Σ b| / Σ |b| allowed on a region with no Dirichlet voxel and no reaction

Method = Literal["pcg", "v", "w"]
FaceFactors = tuple[np.ndarray, np.ndarray, np.ndarray]


# --------------------------------------------------------------------------------------------
# numba kernels. Face arrays hold the face *below* each voxel along their axis plus one layer for
# the top outer face: tz (nk+1, nj, ni), ty (nk, nj+1, ni), tx (nk, nj, ni+1). Outer faces are
# zero, so clamped neighbour indices at the edges contribute nothing. Rows are processed whole so
# that LLVM vectorises the inner loops; reductions use eight partial sums (no fastmath needed).
# --------------------------------------------------------------------------------------------


@numba.njit(**_SER)
def _dot_row(x, y, n):  # pragma: no cover - jit
    """Σ x[i]·y[i] over a row in float64 with eight independent partial sums."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    m = n - n % 8
    for i in range(0, m, 8):
        s0 += np.float64(x[i]) * y[i]
        s1 += np.float64(x[i + 1]) * y[i + 1]
        s2 += np.float64(x[i + 2]) * y[i + 2]
        s3 += np.float64(x[i + 3]) * y[i + 3]
        s4 += np.float64(x[i + 4]) * y[i + 4]
        s5 += np.float64(x[i + 5]) * y[i + 5]
        s6 += np.float64(x[i + 6]) * y[i + 6]
        s7 += np.float64(x[i + 7]) * y[i + 7]
    for i in range(m, n):
        s0 += np.float64(x[i]) * y[i]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@numba.njit(**_SER)
def _offdiag_row(out, bb, uc, ukm, ukp, ujm, ujp, tzl, tzu, tyl, tyu, txr, n):  # pragma: no cover - jit
    """out[i] = b[i] + Σ_faces T·u_neighbour along one row (float32)."""
    for i in range(n):
        out[i] = bb[i] + tzl[i] * ukm[i] + tzu[i] * ukp[i] + tyl[i] * ujm[i] + tyu[i] * ujp[i]
    for i in range(1, n - 1):
        out[i] += txr[i] * uc[i - 1] + txr[i + 1] * uc[i + 1]
    if n > 1:
        out[0] += txr[1] * uc[1]
        out[n - 1] += txr[n - 1] * uc[n - 2]


@numba.njit(**_SER)
def _offdiag(out, u, b, tz, ty, tx, k, j):  # pragma: no cover - jit
    """:func:`_offdiag_row` for row (k, j) of the fields (neighbour indices clamped; outer faces are 0)."""
    nk, nj, ni = u.shape
    km, kp, jm, jp = max(k - 1, 0), min(k + 1, nk - 1), max(j - 1, 0), min(j + 1, nj - 1)
    _offdiag_row(out, b[k, j], u[k, j], u[km, j], u[kp, j], u[k, jm], u[k, jp],
                 tz[k, j], tz[k + 1, j], ty[k, j], ty[k, j + 1], tx[k, j], ni)  # fmt: skip


@numba.njit(**_SER)
def _apply_row(out, pc, pkm, pkp, pjm, pjp, tzl, tzu, tyl, tyu, txr, rc, n):  # pragma: no cover - jit
    """out[i] −= (A·p)[i] along one row, in float64 (diagonal as reaction + Σ faces: constants are exact null
    vectors of the pure-diffusion part)."""
    for i in range(n):
        c = np.float64(pc[i])
        out[i] -= (
            rc[i] * c + tzl[i] * (c - pkm[i]) + tzu[i] * (c - pkp[i]) + tyl[i] * (c - pjm[i]) + tyu[i] * (c - pjp[i])
        )
    for i in range(1, n - 1):
        c = np.float64(pc[i])
        out[i] -= txr[i] * (c - pc[i - 1]) + txr[i + 1] * (c - pc[i + 1])
    if n > 1:
        out[0] -= txr[1] * (np.float64(pc[0]) - pc[1])
        out[n - 1] -= txr[n - 1] * (np.float64(pc[n - 1]) - pc[n - 2])


@numba.njit(**_SER)
def _apply(out, p, tz, ty, tx, react, k, j):  # pragma: no cover - jit
    """:func:`_apply_row` for row (k, j) of the fields."""
    nk, nj, ni = p.shape
    km, kp, jm, jp = max(k - 1, 0), min(k + 1, nk - 1), max(j - 1, 0), min(j + 1, nj - 1)
    _apply_row(out, p[k, j], p[km, j], p[kp, j], p[k, jm], p[k, jp],
               tz[k, j], tz[k + 1, j], ty[k, j], ty[k, j + 1], tx[k, j], react[k, j], ni)  # fmt: skip


@numba.njit(**_PAR)
def _faces(a, hz, hy, hx, tz, ty, tx):  # pragma: no cover - jit
    """Face conductances: harmonic mean of the two voxels' a × area / distance (outer faces stay 0)."""
    nk, nj, ni = a.shape
    sz = np.float32(2.0 * hy * hx / hz)
    sy = np.float32(2.0 * hz * hx / hy)
    sx = np.float32(2.0 * hz * hy / hx)
    zero = np.float32(0.0)
    for k in prange(nk):
        for j in range(nj):
            ac = a[k, j]
            if k > 0:
                am = a[k - 1, j]
                out = tz[k, j]
                for i in range(ni):
                    s = ac[i] + am[i]
                    out[i] = sz * ac[i] * am[i] / s if s > zero else zero
            if j > 0:
                am = a[k, j - 1]
                out = ty[k, j]
                for i in range(ni):
                    s = ac[i] + am[i]
                    out[i] = sy * ac[i] * am[i] / s if s > zero else zero
            out = tx[k, j]
            for i in range(1, ni):
                s = ac[i] + ac[i - 1]
                out[i] = sx * ac[i] * ac[i - 1] / s if s > zero else zero


@numba.njit(**_PAR)
def _cells(a, c, fixed, g, vol, tz, ty, tx, react, leak, invd, lift):  # pragma: no cover - jit
    """Per voxel: leak to held neighbours and its lifted source, c·V + leak, and 1/diagonal (0 where a voxel
    is held or has no equation); returns the number of negative or non-finite inputs."""
    nk, nj, ni = a.shape
    bad = 0
    for k in prange(nk):
        km = max(k - 1, 0)
        kp = min(k + 1, nk - 1)
        for j in range(nj):
            jm = max(j - 1, 0)
            jp = min(j + 1, nj - 1)
            for i in range(ni):
                ap = a[k, j, i]
                cp = c[k, j, i]
                ok = ap >= 0.0 and cp >= 0.0 and math.isfinite(ap) and math.isfinite(cp)
                if fixed[k, j, i]:
                    ok = ok and math.isfinite(g[k, j, i])
                    react[k, j, i] = 0.0
                    leak[k, j, i] = 0.0
                    invd[k, j, i] = 0.0
                    lift[k, j, i] = 0.0
                else:
                    im = max(i - 1, 0)
                    ip = min(i + 1, ni - 1)
                    t0 = np.float64(tz[k, j, i])
                    t1 = np.float64(tz[k + 1, j, i])
                    t2 = np.float64(ty[k, j, i])
                    t3 = np.float64(ty[k, j + 1, i])
                    t4 = np.float64(tx[k, j, i])
                    t5 = np.float64(tx[k, j, i + 1])
                    lk = 0.0
                    lf = 0.0
                    if fixed[km, j, i]:
                        lk += t0
                        lf += t0 * g[km, j, i]
                    if fixed[kp, j, i]:
                        lk += t1
                        lf += t1 * g[kp, j, i]
                    if fixed[k, jm, i]:
                        lk += t2
                        lf += t2 * g[k, jm, i]
                    if fixed[k, jp, i]:
                        lk += t3
                        lf += t3 * g[k, jp, i]
                    if fixed[k, j, im]:
                        lk += t4
                        lf += t4 * g[k, j, im]
                    if fixed[k, j, ip]:
                        lk += t5
                        lf += t5 * g[k, j, ip]
                    cv = np.float64(cp) * vol
                    d = np.float32(cv + t0 + t1 + t2 + t3 + t4 + t5)
                    react[k, j, i] = cv + lk
                    leak[k, j, i] = lk
                    invd[k, j, i] = 1.0 / d if d > 0.0 else 0.0
                    lift[k, j, i] = lf
                if not ok:
                    bad += 1
    return bad


@numba.njit(**_PAR)
def _cut_held_faces(fixed, tz, ty, tx):  # pragma: no cover - jit
    """Zero the faces that touch a held voxel: their conductance now lives in the leak term."""
    nk, nj, ni = fixed.shape
    for k in prange(nk):
        for j in range(nj):
            for i in range(ni):
                if fixed[k, j, i]:
                    tz[k, j, i] = 0.0
                    tz[k + 1, j, i] = 0.0
                    ty[k, j, i] = 0.0
                    ty[k, j + 1, i] = 0.0
                    tx[k, j, i] = 0.0
                    tx[k, j, i + 1] = 0.0


@numba.njit(**_SER)
def _sum_pairs(dst, src, nif, fi):  # pragma: no cover - jit
    """dst[I] += Σ of the fine entries I·fi … I·fi + fi − 1 of a row (fi = 1 or 2; a last odd entry alone)."""
    if fi == 1:
        for i in range(nif):
            dst[i] += src[i]
    else:
        half = nif // 2
        for ic in range(half):
            dst[ic] += src[2 * ic] + src[2 * ic + 1]
        if nif % 2:
            dst[half] += src[nif - 1]


@numba.njit(**_PAR)
def _coarsen(tzf, tyf, txf, reactf, leakf, fk, fj, fi, tzc, tyc, txc, reactc, leakc):  # pragma: no cover - jit
    """Coarse faces = Σ covered fine faces / factor along the normal; coarse c·V and leak = Σ children."""
    nkf, njf, nif = reactf.shape
    nkc, njc, nic = reactc.shape
    for kc in prange(nkc):
        k0 = kc * fk
        k1 = min(k0 + fk, nkf)
        for jc in range(njc):
            j0 = jc * fj
            j1 = min(j0 + fj, njf)
            rz = tzc[kc, jc]
            ry = tyc[kc, jc]
            rx = txc[kc, jc]
            rr = reactc[kc, jc]
            rl = leakc[kc, jc]
            for ic in range(nic + 1):
                rx[ic] = 0.0
            for ic in range(nic):
                rz[ic] = 0.0
                ry[ic] = 0.0
                rr[ic] = 0.0
                rl[ic] = 0.0
            for j in range(j0, j1):
                _sum_pairs(rz, tzf[k0, j], nif, fi)
            for k in range(k0, k1):
                _sum_pairs(ry, tyf[k, j0], nif, fi)
                for j in range(j0, j1):
                    fx = txf[k, j]
                    for ic in range(nic):
                        rx[ic] += fx[ic * fi]
                    _sum_pairs(rr, reactf[k, j], nif, fi)
                    _sum_pairs(rl, leakf[k, j], nif, fi)
            for ic in range(nic):
                rz[ic] /= fk
                ry[ic] /= fj
                rx[ic] /= fi


@numba.njit(**_PAR)
def _finish_invd(tz, ty, tx, react, invd):  # pragma: no cover - jit
    """1 / (reaction + Σ face conductances); 0 where a voxel has no equation."""
    nk, nj, ni = react.shape
    for k in prange(nk):
        for j in range(nj):
            for i in range(ni):
                d = react[k, j, i] + tz[k, j, i] + tz[k + 1, j, i] + ty[k, j, i] + ty[k, j + 1, i]
                d += tx[k, j, i] + tx[k, j, i + 1]
                invd[k, j, i] = 1.0 / d if d > 0.0 else 0.0


@numba.njit(**_SER)
def _rb_plane(u, b, tz, ty, tx, invd, k, color, row):  # pragma: no cover - jit
    """Gauss–Seidel update of one colour ((k+j+i) mod 2) on plane k: each row is computed whole (vectorised)
    into ``row`` and only the colour's voxels are written back. Voxels without an equation get 0."""
    nj, ni = u.shape[1], u.shape[2]
    for j in range(nj):
        uc = u[k, j]
        _offdiag(row, u, b, tz, ty, tx, k, j)
        iv = invd[k, j]
        for i in range((color + k + j) & 1, ni, 2):
            uc[i] = row[i] * iv[i]


@numba.njit(**_SER)
def _jacobi_plane(u, b, invd, k):  # pragma: no cover - jit
    """u = b / diag on plane k: the first colour's update from a zero guess."""
    nj, ni = u.shape[1], u.shape[2]
    for j in range(nj):
        uc = u[k, j]
        bb = b[k, j]
        iv = invd[k, j]
        for i in range(ni):
            uc[i] = bb[i] * iv[i]


@numba.njit(**_PAR)
def _rb_pair(u, b, tz, ty, tx, invd, first, zero_start, nchunks, work):  # pragma: no cover - jit
    """One red-black Gauss–Seidel sweep (colour ``first``, then the other) in a single pass over memory.

    Each thread walks its slab of k-planes as a wavefront — first colour on plane k, then the second colour
    on plane k−1, whose first-colour neighbours are all done — so both colours are served from cache. The
    second colour on a slab's end planes needs the neighbouring slab and runs in a second parallel phase.
    The result equals the two-pass sweep for any thread count. ``zero_start``: the guess is zero, so the
    first colour is just b / diag."""
    nk = u.shape[0]
    second = 1 - first
    for ch in prange(nchunks):
        k0 = ch * nk // nchunks
        k1 = (ch + 1) * nk // nchunks
        row = work[k0]
        for k in range(k0, k1):
            if zero_start:
                _jacobi_plane(u, b, invd, k)
            else:
                _rb_plane(u, b, tz, ty, tx, invd, k, first, row)
            if k - 1 > k0:
                _rb_plane(u, b, tz, ty, tx, invd, k - 1, second, row)
    for ch in prange(nchunks):
        k0 = ch * nk // nchunks
        k1 = (ch + 1) * nk // nchunks
        if k1 > k0:
            row = work[k0]
            _rb_plane(u, b, tz, ty, tx, invd, k0, second, row)
            if k1 - 1 > k0:
                _rb_plane(u, b, tz, ty, tx, invd, k1 - 1, second, row)


@numba.njit(**_PAR)
def _residual_restrict_i(u, b, tz, ty, tx, react, ri, wi, ni_, work, si):  # pragma: no cover - jit
    """r = b − A·u row by row (float32), restricted along i at once: si[k, j, I] = Σ w·r[k, j, ·]."""
    nk, nj, ni = u.shape
    nic = si.shape[2]
    for k in prange(nk):
        row = work[k]
        for j in range(nj):
            uc = u[k, j]
            tzl = tz[k, j]
            tzu = tz[k + 1, j]
            tyl = ty[k, j]
            tyu = ty[k, j + 1]
            txr = tx[k, j]
            rc = react[k, j]
            _offdiag(row, u, b, tz, ty, tx, k, j)
            for i in range(ni):
                row[i] -= (rc[i] + tzl[i] + tzu[i] + tyl[i] + tyu[i] + txr[i] + txr[i + 1]) * uc[i]
            out = si[k, j]
            for ic in range(nic):
                s = np.float32(0.0)
                for p in range(ni_[ic]):
                    s += wi[ic, p] * row[ri[ic, p]]
                out[ic] = s


@numba.njit(**_PAR)
def _restrict_kj(si, rk, wk, nk_, rj, wj, nj_, bc):  # pragma: no cover - jit
    """bc[K, J, :] = Σ_a Σ_b wk·wj·si[rk, rj, :]: the k and j parts of the transposed trilinear prolongation."""
    nkc, njc, nic = bc.shape
    for kc in prange(nkc):
        for jc in range(njc):
            out = bc[kc, jc]
            for ic in range(nic):
                out[ic] = 0.0
            for a in range(nk_[kc]):
                for q in range(nj_[jc]):
                    w = wk[kc, a] * wj[jc, q]
                    src = si[rk[kc, a], rj[jc, q]]
                    for ic in range(nic):
                        out[ic] += w * src[ic]


@numba.njit(**_PAR)
def _prolong_add(uc, ck, wk, cj, wj, ci, wi, invdf, uf, work):  # pragma: no cover - jit
    """uf += P·uc (trilinear, cell-centred): coarse rows are blended in k and j, then spread along i; voxels
    without an equation are left alone."""
    nkf, njf, nif = uf.shape
    nic = uc.shape[2]
    for k in prange(nkf):
        k0 = ck[k, 0]
        k1 = ck[k, 1]
        a0 = wk[k, 0]
        a1 = wk[k, 1]
        row = work[k]
        for j in range(njf):
            j0 = cj[j, 0]
            j1 = cj[j, 1]
            b0 = wj[j, 0]
            b1 = wj[j, 1]
            r00 = uc[k0, j0]
            r01 = uc[k0, j1]
            r10 = uc[k1, j0]
            r11 = uc[k1, j1]
            for ic in range(nic):
                row[ic] = a0 * (b0 * r00[ic] + b1 * r01[ic]) + a1 * (b0 * r10[ic] + b1 * r11[ic])
            out = uf[k, j]
            iv = invdf[k, j]
            for i in range(nif):
                v = wi[i, 0] * row[ci[i, 0]] + wi[i, 1] * row[ci[i, 1]]
                out[i] += v if iv[i] != 0.0 else np.float32(0.0)


@numba.njit(**_SER)
def _dense_solve(b, u, idx, minv, tmp):  # pragma: no cover - jit
    """Coarsest level: u = A⁻¹·b (or the pseudo-inverse) on the voxels that have an equation."""
    bf = b.ravel()
    uf = u.ravel()
    m = idx.size
    uf[:] = 0.0
    for p in range(m):
        tmp[p] = bf[idx[p]]
    for p in range(m):
        s = 0.0
        for q in range(m):
            s += minv[p, q] * tmp[q]
        uf[idx[p]] = s


@numba.njit(**_SER)
def _spd_inverse(mat):  # pragma: no cover - jit
    """Inverse of a small symmetric positive definite matrix by Cholesky; returns (inverse, ok)."""
    m = mat.shape[0]
    low = np.zeros((m, m))
    for j in range(m):
        s = mat[j, j]
        for p in range(j):
            s -= low[j, p] * low[j, p]
        if not s > 1e-13 * abs(mat[j, j]) or not s > 0.0:
            return low, False
        low[j, j] = math.sqrt(s)
        for i in range(j + 1, m):
            t = mat[i, j]
            for p in range(j):
                t -= low[i, p] * low[j, p]
            low[i, j] = t / low[j, j]
    inv = np.zeros((m, m))
    col = np.zeros(m)
    for c in range(m):
        for i in range(m):  # forward: L y = e_c
            t = 1.0 if i == c else 0.0
            for p in range(i):
                t -= low[i, p] * col[p]
            col[i] = t / low[i, i]
        for i in range(m - 1, -1, -1):  # backward: Lᵀ x = y
            t = col[i]
            for p in range(i + 1, m):
                t -= low[p, i] * col[p]
            col[i] = t / low[i, i]
        for i in range(m):
            inv[i, c] = col[i]
    return inv, True


@numba.njit(**_PAR)
def _start_residual(f, vol, lift, fixed, invd, x, tz, ty, tx, react, r, r32):  # pragma: no cover - jit
    """b = f·V + Dirichlet lift on free voxels (0 on held ones or where there is no equation) and r = b − A·x
    (float64, and float32 for the preconditioner); returns (r·r, b·b, non-finite f, non-zero f without equation)."""
    nk, nj, ni = x.shape
    rr = 0.0
    bb = 0.0
    bad = 0
    stray = 0
    for k in prange(nk):
        for j in range(nj):
            out = r[k, j]
            fr = f[k, j]
            lr = lift[k, j]
            for i in range(ni):
                fv = np.float64(fr[i])
                v = 0.0
                if not math.isfinite(fv):
                    bad += 1
                elif not fixed[k, j, i]:
                    v = fv * vol + lr[i]
                    if invd[k, j, i] == 0.0 and v != 0.0:
                        stray += 1
                        v = 0.0
                out[i] = v
            bb += _dot_row(out, out, ni)
            _apply(out, x, tz, ty, tx, react, k, j)
            o32 = r32[k, j]
            for i in range(ni):
                o32[i] = out[i]
            rr += _dot_row(out, out, ni)
    return rr, bb, bad, stray


@numba.njit(**_PAR)
def _residual64(x, b, tz, ty, tx, react, r, r32):  # pragma: no cover - jit
    """r = b − A·x in float64 (and float32 for the preconditioner); returns r·r."""
    nk, nj, ni = x.shape
    rr = 0.0
    for k in prange(nk):
        for j in range(nj):
            out = r[k, j]
            br = b[k, j]
            for i in range(ni):
                out[i] = br[i]
            _apply(out, x, tz, ty, tx, react, k, j)
            o32 = r32[k, j]
            for i in range(ni):
                o32[i] = out[i]
            rr += _dot_row(out, out, ni)
    return rr


@numba.njit(**_PAR)
def _apply64(p, tz, ty, tx, react, q):  # pragma: no cover - jit
    """q = A·p in float64; returns p·q."""
    nk, nj, ni = p.shape
    pq = 0.0
    for k in prange(nk):
        for j in range(nj):
            out = q[k, j]
            for i in range(ni):
                out[i] = 0.0
            _apply(out, p, tz, ty, tx, react, k, j)
            for i in range(ni):
                out[i] = -out[i]
            pq += _dot_row(p[k, j], out, ni)
    return pq


@numba.njit(**_PAR)
def _cg_update(alpha, x, p, r, q, r32):  # pragma: no cover - jit
    """x += α·p; r −= α·q; r32 = r; returns r·r."""
    nk, nj, ni = x.shape
    rr = 0.0
    for k in prange(nk):
        for j in range(nj):
            xr = x[k, j]
            pr = p[k, j]
            rw = r[k, j]
            qr = q[k, j]
            r3 = r32[k, j]
            for i in range(ni):
                xr[i] += alpha * pr[i]
                v = rw[i] - alpha * qr[i]
                rw[i] = v
                r3[i] = v
            rr += _dot_row(rw, rw, ni)
    return rr


@numba.njit(**_PAR)
def _dot32(a, b):  # pragma: no cover - jit
    """a·b of two float32 fields, accumulated in float64."""
    nk, nj, ni = a.shape
    s = 0.0
    for k in prange(nk):
        for j in range(nj):
            s += _dot_row(a[k, j], b[k, j], ni)
    return s


@numba.njit(**_PAR)
def _xpby(z, beta, p):  # pragma: no cover - jit
    """p = z + β·p (float32 search direction)."""
    nk, nj, ni = p.shape
    for k in prange(nk):
        for j in range(nj):
            pr = p[k, j]
            zr = z[k, j]
            for i in range(ni):
                pr[i] = zr[i] + beta * pr[i]


# --------------------------------------------------------------------------------------------
# Python side
# --------------------------------------------------------------------------------------------


def _as_field(value: np.ndarray | float, shape: tuple[int, int, int], name: str) -> np.ndarray | float:
    """A scalar stays a float; an array must be 3-D and on the grid."""
    if np.ndim(value) == 0:
        v = float(value)
        if not math.isfinite(v):
            raise PhysicsError(f"{name} is {v}", f"give a finite {name}")
        return v
    arr = np.asarray(value)
    if arr.shape != shape:
        raise PhysicsError(f"{name} has shape {arr.shape}, the grid is {shape}", f"give {name} on the same grid")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise PhysicsError(f"{name} has dtype {arr.dtype}", f"give {name} as real numbers")
    return arr


def _float32_field(value: np.ndarray | float, shape: tuple[int, int, int]) -> np.ndarray:
    """A C-contiguous float32 view or copy of a field; a scalar is broadcast once."""
    if isinstance(value, float):
        return np.full(shape, value, dtype=np.float32)
    return np.ascontiguousarray(value, dtype=np.float32)


@dataclass
class SolveInfo:
    """What a solve did: iterations, relative residual ‖b − A·u‖/‖b‖ before and after each, rtol met or not."""

    iterations: int
    residuals: list[float] = field(default_factory=list)
    converged: bool = False
    method: str = "pcg"

    @property
    def residual(self) -> float:
        """The last relative residual."""
        return self.residuals[-1] if self.residuals else 0.0


class EllipticOperator:
    """The discretised problem −∇·(a∇u) + c·u = f on one voxel grid (SI units; arrays [k, j, i]).

    ``coefficient`` (a) and ``reaction`` (c) are volumes or scalars, ≥ 0 and finite; ``spacing_m`` is
    (dz, dy, dx) in metres. Voxels in ``dirichlet_mask`` are held at ``dirichlet_value`` (scalar or
    volume, read only on the mask); every other outer face is zero-flux. A voxel with a = 0 and c = 0
    and no coupled neighbour has no equation; solutions leave it at its initial value (0 by default).
    ``shape`` is needed only when every other argument is a scalar. ``face_factors`` (fz, fy, fx) optionally
    scale the face conductances (see :meth:`update`).
    """

    def __init__(
        self,
        coefficient: np.ndarray | float,
        reaction: np.ndarray | float,
        spacing_m: tuple[float, float, float],
        dirichlet_mask: np.ndarray | None = None,
        dirichlet_value: np.ndarray | float | None = None,
        shape: tuple[int, int, int] | None = None,
        face_factors: FaceFactors | None = None,
    ) -> None:
        try:
            spacing = np.asarray(spacing_m, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            spacing = np.zeros(0)
        if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
            raise PhysicsError(f"spacing_m {spacing_m!r} is not three positive lengths", "give (dz, dy, dx) in metres")
        self.spacing_m = (float(spacing[0]), float(spacing[1]), float(spacing[2]))
        self.shape = self._infer_shape(shape, coefficient, reaction, dirichlet_mask, dirichlet_value)
        n = self.shape
        self.fixed = np.zeros(n, dtype=np.bool_)
        self.has_dirichlet = dirichlet_mask is not None
        if dirichlet_mask is not None:
            mask = np.asarray(dirichlet_mask)
            if mask.dtype != np.bool_:
                raise PhysicsError(f"dirichlet_mask has dtype {mask.dtype}, not bool", "pass a boolean mask")
            if not mask.any():
                raise PhysicsError(
                    "dirichlet_mask is empty (no voxel is held)",
                    "mark the held voxels, or pass dirichlet_mask=None for a problem without Dirichlet voxels",
                )
            self.fixed[...] = mask
        elif dirichlet_value is not None:
            raise PhysicsError("dirichlet_value given without dirichlet_mask", "pass the mask of the held voxels too")
        self.dirichlet_value = np.zeros(n, dtype=np.float32)  # held values on the mask, 0 elsewhere
        self.tz = np.zeros((n[0] + 1, n[1], n[2]), dtype=np.float32)
        self.ty = np.zeros((n[0], n[1] + 1, n[2]), dtype=np.float32)
        self.tx = np.zeros((n[0], n[1], n[2] + 1), dtype=np.float32)
        self.react = np.empty(n, dtype=np.float32)  # c·V + leak
        self.leak = np.empty(n, dtype=np.float32)  # Σ conductances of faces to held voxels
        self.invd = np.empty(n, dtype=np.float32)  # 1 / diagonal, 0 on held voxels and voxels without an equation
        self.lift = np.empty(n, dtype=np.float32)  # Σ T·g over faces to held voxels (moves to the right-hand side)
        self.floating_labels: np.ndarray | None = None  # 1…m on regions with no Dirichlet voxel and no reaction
        self.n_floating = 0
        self._c: np.ndarray | float = 0.0
        self._pattern: tuple[np.ndarray, object] | None = None  # where a > 0, and c, when labels were last found
        self.face_factors: FaceFactors | None = None  # multipliers of tz, ty, tx (sub-voxel boundaries)
        self.update(coefficient, reaction, 0.0 if dirichlet_value is None else dirichlet_value, face_factors)

    @staticmethod
    def _infer_shape(shape, *fields) -> tuple[int, int, int]:
        """The grid shape from the first volume among the fields (or ``shape``); all volumes must agree."""
        found = None if shape is None else tuple(int(s) for s in shape)
        for value in fields:
            if value is not None and np.ndim(value) > 0:
                this = tuple(int(s) for s in np.shape(value))
                if found is not None and this != found:
                    raise PhysicsError(f"fields have shapes {found} and {this}", "give every volume on the same grid")
                found = this
        if found is None:
            raise PhysicsError("no volume gives the grid shape", "pass shape=(nk, nj, ni) or a volume")
        if len(found) != 3 or min(found) < 1:
            raise PhysicsError(f"grid shape {found} is not a 3-D grid", "give volumes indexed [k, j, i]")
        return found  # type: ignore[return-value]

    @property
    def voxel_volume_m3(self) -> float:
        """Volume of one voxel (m³)."""
        return self.spacing_m[0] * self.spacing_m[1] * self.spacing_m[2]

    def update(
        self,
        coefficient: np.ndarray | float,
        reaction: np.ndarray | float | None = None,
        dirichlet_value: np.ndarray | float | None = None,
        face_factors: FaceFactors | None = None,
    ) -> None:
        """Rediscretise in place for a new a (and optionally c, held values or face factors) on the same grid and
        mask. ``face_factors`` (fz, fy, fx), in the layout of tz, ty, tx, multiply the face conductances before the
        leaks and diagonals are formed: a face to a held voxel whose true surface lies θ·h from the free voxel's
        centre gets factor 1/θ (Shortley–Weller). None keeps the factors given before (none: all 1)."""
        n = self.shape
        if face_factors is not None:
            self.face_factors = self._check_face_factors(face_factors)
        a32 = _float32_field(_as_field(coefficient, n, "coefficient"), n)
        if reaction is not None:
            c = _as_field(reaction, n, "reaction")
            if isinstance(c, float) and not c >= 0:
                raise PhysicsError(f"reaction is {c}", "give a reaction c ≥ 0")
            self._c = np.array(c, dtype=np.float32, order="C") if isinstance(c, np.ndarray) else _float32_field(c, n)
        if dirichlet_value is not None:
            g = _as_field(dirichlet_value, n, "dirichlet_value")
            self.dirichlet_value[...] = 0.0
            np.copyto(self.dirichlet_value, g, where=self.fixed, casting="unsafe")
        _faces(a32, *self.spacing_m, self.tz, self.ty, self.tx)
        if self.face_factors is not None:
            for t, f in zip((self.tz, self.ty, self.tx), self.face_factors, strict=True):
                np.multiply(t, f, out=t)
        bad = _cells(
            a32,
            self._c,
            self.fixed,
            self.dirichlet_value,
            self.voxel_volume_m3,
            self.tz,
            self.ty,
            self.tx,
            self.react,
            self.leak,
            self.invd,
            self.lift,
        )
        if bad:
            raise PhysicsError(
                f"{bad} voxels have a negative or non-finite coefficient, reaction or held value",
                "give finite a ≥ 0 and c ≥ 0 everywhere and finite values on the Dirichlet mask",
            )
        if self.has_dirichlet:
            _cut_held_faces(self.fixed, self.tz, self.ty, self.tx)
        self._find_floating(a32)

    def _check_face_factors(self, face_factors: FaceFactors) -> FaceFactors:
        """Three float32 arrays in the face layout (nk+1, nj, ni), (nk, nj+1, ni), (nk, nj, ni+1), finite and ≥ 0."""
        nk, nj, ni = self.shape
        shapes = ((nk + 1, nj, ni), (nk, nj + 1, ni), (nk, nj, ni + 1))
        if len(face_factors) != 3:
            raise PhysicsError(f"face_factors has {len(face_factors)} arrays", "give (fz, fy, fx)")
        out = []
        for name, f, want in zip(("fz", "fy", "fx"), face_factors, shapes, strict=True):
            arr = np.ascontiguousarray(f, dtype=np.float32)
            if arr.shape != want:
                raise PhysicsError(f"face factor {name} has shape {arr.shape}, not {want}", "use the face layout")
            if not (math.isfinite(float(arr.sum(dtype=np.float64))) and arr.min() >= 0.0):
                raise PhysicsError(f"face factor {name} has negative or non-finite values", "give finite factors ≥ 0")
            out.append(arr)
        return (out[0], out[1], out[2])

    def _find_floating(self, a32: np.ndarray) -> None:
        """Label regions tied to no Dirichlet voxel and no reaction: there u is defined only up to a constant."""
        from scipy import ndimage

        labels = None
        if a32.min() > 0:
            # every free voxel is coupled to its free neighbours: a region cut off by held voxels touches them, so
            # only the whole grid can float, when nothing is held and c ≡ 0
            if not self.has_dirichlet and not np.any(self.react):
                labels = (self.invd > 0).astype(np.int32)
        else:
            pattern = np.packbits(a32 > 0)  # the labels depend only on where a > 0 (and on c and the mask)
            if self._pattern is not None and self._pattern[1] is self._c and np.array_equal(pattern, self._pattern[0]):
                return
            self._pattern = (pattern, self._c)
            active = self.invd > 0
            if not active.any():
                raise PhysicsError(
                    "no voxel has an equation (a = 0 and c = 0 everywhere off the Dirichlet mask)",
                    "give a conducting region (a > 0) or a reaction term",
                )
            grounded = self.react > 0
            if not np.all(grounded[active]):
                comp, m = ndimage.label((a32 > 0) & active)
                has_ground = np.zeros(m + 1, dtype=bool)
                has_ground[comp[grounded]] = True
                has_ground[0] = True
                floating_ids = np.flatnonzero(~has_ground)
                if floating_ids.size:
                    relabel = np.zeros(m + 1, dtype=np.int32)
                    relabel[floating_ids] = np.arange(1, floating_ids.size + 1, dtype=np.int32)
                    labels = relabel[comp]
        self.floating_labels = labels
        self.n_floating = 0 if labels is None else int(labels.max())

    def source(self, rhs: np.ndarray | float) -> np.ndarray:
        """f as a float32 volume on the grid (checked for shape)."""
        return _float32_field(_as_field(rhs, self.shape, "rhs"), self.shape)

    def rhs_vector(self, rhs: np.ndarray | float) -> tuple[np.ndarray, float]:
        """The integrated right-hand side b = f·V + Dirichlet lift (float64, balanced on floating regions), ‖b‖."""
        b = np.empty(self.shape, dtype=np.float64)
        zero = np.zeros(self.shape, dtype=np.float64)
        _, bb, bad, stray = _start_residual(
            self.source(rhs),
            self.voxel_volume_m3,
            self.lift,
            self.fixed,
            self.invd,
            zero,
            self.tz,
            self.ty,
            self.tx,
            self.react,
            b,
            np.empty(self.shape, np.float32),
        )
        self._check_source(bad, stray)
        if self.n_floating:
            bb = self._balance(b)
        return b, math.sqrt(bb)

    @staticmethod
    def _check_source(bad: int, stray: int) -> None:
        if bad:
            raise PhysicsError(f"rhs has {bad} non-finite voxels", "give a finite right-hand side")
        if stray:
            raise PhysicsError(
                f"rhs is non-zero on {stray} voxels that have no equation (a = 0, c = 0 and not held)",
                "put sources where a > 0 or c > 0",
            )

    def _balance(self, b: np.ndarray) -> float:
        """Check that b sums to zero over each floating region (else there is no solution); remove the rounding."""
        labels = self.floating_labels.ravel()
        flat = b.reshape(-1)
        m = self.n_floating + 1
        sums = np.bincount(labels, weights=flat, minlength=m)[1:]
        mags = np.bincount(labels, weights=np.abs(flat), minlength=m)[1:]
        counts = np.bincount(labels, minlength=m)[1:]
        ratio = np.abs(sums) / np.maximum(mags, 1e-300)
        worst = int(np.argmax(ratio))
        if ratio[worst] > _BALANCE_TOLERANCE and mags[worst] > 0:
            raise PhysicsError(
                "the problem is singular (pure Neumann: a region has no Dirichlet voxel and no reaction) and the"
                f" right-hand side does not sum to zero over it (Σ f·V = {sums[worst]:.3g}, Σ |f·V| ="
                f" {mags[worst]:.3g}), so there is no solution",
                "balance sources and sinks, hold some voxels with dirichlet_mask, or add a reaction term",
            )
        means = np.concatenate([[0.0], sums / np.maximum(counts, 1)])
        flat -= means[labels]
        return float(flat @ flat)

    def residual_norm(self, u: np.ndarray, rhs: np.ndarray | float) -> float:
        """Relative residual ‖b − A·u‖ / ‖b‖ of a full solution u (held voxels ignored), in float64."""
        b, bnorm = self.rhs_vector(rhs)
        x = np.ascontiguousarray(u, dtype=np.float64)
        r = np.empty_like(b)
        rr = _residual64(x, b, self.tz, self.ty, self.tx, self.react, r, np.empty(self.shape, np.float32))
        return math.sqrt(rr) / bnorm if bnorm > 0 else math.sqrt(rr)

    def remove_floating_constants(self, x: np.ndarray) -> None:
        """Shift each floating (pure-Neumann) region of x to zero mean, in place."""
        if not self.n_floating:
            return
        labels = self.floating_labels.ravel()
        flat = x.reshape(-1)
        m = self.n_floating + 1
        means = np.bincount(labels, weights=flat, minlength=m) / np.maximum(np.bincount(labels, minlength=m), 1)
        means[0] = 0.0
        flat -= means[labels]


class _Level:
    """One grid of the hierarchy: operator, work vectors and the transfer tables to the next coarser grid."""

    def __init__(self, shape: tuple[int, int, int], operator: EllipticOperator | None = None) -> None:
        self.shape = shape
        nk, nj, ni = shape
        if operator is None:
            self.tz = np.zeros((nk + 1, nj, ni), dtype=np.float32)
            self.ty = np.zeros((nk, nj + 1, ni), dtype=np.float32)
            self.tx = np.zeros((nk, nj, ni + 1), dtype=np.float32)
            self.react = np.empty(shape, dtype=np.float32)
            self.leak = np.empty(shape, dtype=np.float32)
            self.invd = np.empty(shape, dtype=np.float32)
            self.u = np.zeros(shape, dtype=np.float32)
            self.b = np.zeros(shape, dtype=np.float32)
        else:  # the finest level shares the operator's arrays; its u and b are the caller's vectors
            self.tz, self.ty, self.tx = operator.tz, operator.ty, operator.tx
            self.react, self.leak, self.invd = operator.react, operator.leak, operator.invd
            self.u = self.b = np.zeros((0, 0, 0), dtype=np.float32)
        self.work = np.zeros((nk, ni + 1), dtype=np.float32)  # one row per k-plane for the row kernels
        self.si = np.zeros((0, 0, 0), dtype=np.float32)  # residual restricted along i
        self.factors = (1, 1, 1)
        self.prolong: tuple[np.ndarray, ...] = ()
        self.restrict_i_tables: tuple[np.ndarray, ...] = ()
        self.restrict_kj_tables: tuple[np.ndarray, ...] = ()


def _plan_shapes(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], levels: int | None
) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """Level shapes and the factor (1 or 2 per axis) to the next: an axis is halved while its spacing is within
    √2 of the finest coarsenable one (semi-coarsening evens out anisotropic voxels), down to ~64 voxels."""
    plan = []
    n = list(shape)
    h = list(spacing)
    while True:
        can = [n[d] >= 2 for d in range(3)]
        if (levels is not None and len(plan) + 1 >= levels) or not any(can) or math.prod(n) <= _COARSEST_TARGET:
            plan.append((tuple(n), (1, 1, 1)))
            return plan  # type: ignore[return-value]
        hmin = min(h[d] for d in range(3) if can[d])
        fac = tuple(2 if can[d] and h[d] <= math.sqrt(2.0) * hmin * (1 + 1e-9) else 1 for d in range(3))
        plan.append((tuple(n), fac))
        n = [(n[d] + fac[d] - 1) // fac[d] for d in range(3)]
        h = [h[d] * fac[d] for d in range(3)]


def _axis_tables(nf: int, nc: int, factor: int) -> tuple[np.ndarray, ...]:
    """One axis of trilinear cell-centred prolongation (two coarse indices and weights ¾, ¼ per fine index;
    constant at the ends) and of its transpose (up to four fine indices and weights per coarse index)."""
    ci = np.zeros((nf, 2), dtype=np.int64)
    cw = np.zeros((nf, 2), dtype=np.float32)
    for x in range(nf):
        if factor == 1:
            ci[x] = (x, x)
            cw[x] = (1.0, 0.0)
            continue
        c0 = x // 2
        nb = c0 - 1 if x % 2 == 0 else c0 + 1
        ci[x] = (c0, nb) if 0 <= nb < nc else (c0, c0)
        cw[x] = (0.75, 0.25) if 0 <= nb < nc else (1.0, 0.0)
    entries: list[list[tuple[int, float]]] = [[] for _ in range(nc)]
    for x in range(nf):
        for s in range(2):
            if cw[x, s] != 0.0:
                entries[ci[x, s]].append((x, float(cw[x, s])))
    width = max(len(e) for e in entries)
    ri = np.zeros((nc, width), dtype=np.int64)
    rw = np.zeros((nc, width), dtype=np.float32)
    rn = np.zeros(nc, dtype=np.int64)
    for c, e in enumerate(entries):
        rn[c] = len(e)
        for s, (x, w) in enumerate(e):
            ri[c, s] = x
            rw[c, s] = w
    return ci, cw, ri, rw, rn


class MultigridSolver:
    """Geometric multigrid on an :class:`EllipticOperator`: CG preconditioned by one multigrid cycle (``cycle``,
    W by default), or plain V- or W-cycles. The hierarchy and all work vectors are allocated once;
    :meth:`update_coefficients` rediscretises into the same buffers and ``solve(x0=…)`` warm-starts.
    ``levels`` caps the number of grids (None: halve down to ~64 voxels); ``smoothing_steps`` is the number of
    red-black sweeps before and after each coarse correction."""

    def __init__(
        self,
        operator: EllipticOperator,
        levels: int | None = None,
        smoothing_steps: int = 1,
        cycle: Literal["v", "w"] = "w",
    ) -> None:
        if levels is not None and levels < 1:
            raise PhysicsError(f"levels = {levels}", "give levels ≥ 1, or None to coarsen down to ~64 voxels")
        if smoothing_steps < 1:
            raise PhysicsError(f"smoothing_steps = {smoothing_steps}", "give smoothing_steps ≥ 1")
        if cycle not in ("v", "w"):
            raise PhysicsError(f"unknown cycle {cycle!r}", "use 'v' or 'w'")
        self.operator = operator
        self.smoothing_steps = int(smoothing_steps)
        self.cycle = cycle
        plan = _plan_shapes(operator.shape, operator.spacing_m, levels)
        self.levels = [_Level(shape, operator if d == 0 else None) for d, (shape, _) in enumerate(plan)]
        for lvl, (_, fac) in zip(self.levels, plan, strict=True):
            lvl.factors = fac
        for fine, coarse in zip(self.levels[:-1], self.levels[1:], strict=True):
            tk, tj, ti = (_axis_tables(fine.shape[d], coarse.shape[d], fine.factors[d]) for d in range(3))
            fine.prolong = (tk[0], tk[1], tj[0], tj[1], ti[0], ti[1])
            fine.restrict_i_tables = ti[2:]
            fine.restrict_kj_tables = (*tk[2:], *tj[2:])
            fine.si = np.zeros((fine.shape[0], fine.shape[1], coarse.shape[2]), dtype=np.float32)
        n = operator.shape
        self._x = np.zeros(n, dtype=np.float64)
        self._r = np.zeros(n, dtype=np.float64)
        self._q = np.zeros(n, dtype=np.float64)
        self._p = np.zeros(n, dtype=np.float32)
        self._z = np.zeros(n, dtype=np.float32)
        self._r32 = np.zeros(n, dtype=np.float32)
        self._refresh_hierarchy()

    @property
    def n_levels(self) -> int:
        """Number of grids in the hierarchy, the finest included."""
        return len(self.levels)

    def _refresh_hierarchy(self) -> None:
        """Coarsen the (shared) fine operator level by level and invert the coarsest."""
        for fine, coarse in zip(self.levels[:-1], self.levels[1:], strict=True):
            _coarsen(
                fine.tz,
                fine.ty,
                fine.tx,
                fine.react,
                fine.leak,
                *fine.factors,
                coarse.tz,
                coarse.ty,
                coarse.tx,
                coarse.react,
                coarse.leak,
            )
            _finish_invd(coarse.tz, coarse.ty, coarse.tx, coarse.react, coarse.invd)
        self._invert_coarsest()

    def _invert_coarsest(self) -> None:
        """Dense inverse of the coarsest operator (pseudo-inverse where it is singular) on its active voxels."""
        lvl = self.levels[-1]
        idx = np.flatnonzero(lvl.invd.ravel() > 0)
        self._coarse_idx = idx
        self._coarse_inv: np.ndarray | None = None
        if idx.size == 0 or idx.size > _DENSE_MAX_CELLS:
            return
        m = idx.size
        pos = np.full(lvl.invd.size, -1, dtype=np.int64)
        pos[idx] = np.arange(m)
        kk, jj, ii = np.unravel_index(idx, lvl.shape)
        mat = np.zeros((m, m))
        diag = lvl.react.ravel()[idx].astype(np.float64)
        for t, axis in ((lvl.tz, 0), (lvl.ty, 1), (lvl.tx, 2)):
            coords = [kk, jj, ii]
            upper = list(coords)
            upper[axis] = coords[axis] + 1
            diag += t[kk, jj, ii] + t[tuple(upper)]
            ok = coords[axis] > 0
            lower = list(coords)
            lower[axis] = coords[axis] - 1
            nb = pos[np.ravel_multi_index(tuple(x[ok] for x in lower), lvl.shape)]
            me = np.arange(m)[ok]
            tv = t[kk[ok], jj[ok], ii[ok]].astype(np.float64)
            keep = nb >= 0
            mat[me[keep], nb[keep]] -= tv[keep]
            mat[nb[keep], me[keep]] -= tv[keep]
        mat[np.arange(m), np.arange(m)] += diag
        inv, ok = _spd_inverse(mat) if not self.operator.n_floating else (mat, False)
        if not ok:
            inv = scipy.linalg.pinvh(mat)
        self._coarse_inv = np.ascontiguousarray(inv)
        self._coarse_tmp = np.zeros(m)

    def update_coefficients(
        self,
        coefficient: np.ndarray | float,
        reaction: np.ndarray | float | None = None,
        dirichlet_value: np.ndarray | float | None = None,
        face_factors: FaceFactors | None = None,
    ) -> None:
        """New a (and optionally c, held values or face factors) on the same grid and mask, e.g. after tissue heated;
        every buffer is reused. Follow with ``solve(rhs, x0=previous)`` for a warm start."""
        self.operator.update(coefficient, reaction, dirichlet_value, face_factors)
        self._refresh_hierarchy()

    # ---- the cycle ------------------------------------------------------------------------

    def _smooth(self, lvl: _Level, forward: bool, zero_start: bool = False) -> None:
        """``smoothing_steps`` red-black sweeps: red first when forward, black first (the adjoint) otherwise."""
        nchunks = max(1, min(numba.get_num_threads(), lvl.shape[0] // 2))
        for step in range(self.smoothing_steps):
            _rb_pair(
                lvl.u,
                lvl.b,
                lvl.tz,
                lvl.ty,
                lvl.tx,
                lvl.invd,
                0 if forward else 1,
                zero_start and step == 0,
                nchunks,
                lvl.work,
            )

    def _cycle(self, depth: int, gamma: int, zero_guess: bool = True) -> None:
        """One cycle on level ``depth`` improving lvl.u for lvl.b: smooth, restrict the residual, ``gamma`` cycles on
        the coarser level for the same coarse right-hand side (1: V-cycle, 2: W-cycle), correct, smooth back. The
        post-smoother is the adjoint of the pre-smoother, so the cycle is a symmetric operator."""
        lvl = self.levels[depth]
        if depth == len(self.levels) - 1:
            if self._coarse_inv is not None:
                if zero_guess:  # exact: a second visit would return the same
                    _dense_solve(lvl.b, lvl.u, self._coarse_idx, self._coarse_inv, self._coarse_tmp)
            else:
                for sweep in range(_COARSEST_SWEEPS):
                    self._smooth(lvl, True, zero_guess and sweep == 0)
                    self._smooth(lvl, False)
            return
        coarse = self.levels[depth + 1]
        self._smooth(lvl, True, zero_start=zero_guess)
        _residual_restrict_i(lvl.u, lvl.b, lvl.tz, lvl.ty, lvl.tx, lvl.react, *lvl.restrict_i_tables, lvl.work, lvl.si)
        _restrict_kj(lvl.si, *lvl.restrict_kj_tables, coarse.b)
        for visit in range(gamma):
            self._cycle(depth + 1, gamma, visit == 0)
        _prolong_add(coarse.u, *lvl.prolong, lvl.invd, lvl.u, lvl.work)
        self._smooth(lvl, False)

    def precondition(self, r32: np.ndarray, out: np.ndarray, cycle: Literal["v", "w"] | None = None) -> np.ndarray:
        """out = B·r: one multigrid cycle from a zero guess (B is a symmetric positive definite approximation of
        A⁻¹); r32 and out are C-contiguous float32 fields on the grid, in integrated (×V) units."""
        top = self.levels[0]
        top.b, top.u = r32, out
        self._cycle(0, 2 if (cycle or self.cycle) == "w" else 1)
        return out

    # ---- solving --------------------------------------------------------------------------

    def solve(
        self,
        rhs: np.ndarray | float,
        x0: np.ndarray | None = None,
        rtol: float = 1e-6,
        max_iterations: int = 100,
        method: Method = "pcg",
    ) -> tuple[np.ndarray, SolveInfo]:
        """Solve for u (float32; held voxels at their values) until ‖b − A·u‖ ≤ rtol·‖b‖, b = f·V + Dirichlet lift.

        ``method``: "pcg" (CG preconditioned by one cycle), "v" or "w" (plain cycles). ``x0`` warm-starts, e.g.
        from the previous solution after :meth:`update_coefficients`. Floating (pure-Neumann) regions come back
        with zero mean. An unconverged solve returns ``info.converged = False``; it does not raise.
        """
        if method not in ("pcg", "v", "w"):
            raise PhysicsError(f"unknown method {method!r}", "use 'pcg', 'v' or 'w'")
        if not (rtol > 0 and math.isfinite(rtol)):
            raise PhysicsError(f"rtol = {rtol}", "give a positive tolerance such as 1e-6")
        op = self.operator
        x, r, q, p, z, r32 = self._x, self._r, self._q, self._p, self._z, self._r32
        if x0 is None:
            x[...] = 0.0
        else:
            x0a = np.asarray(x0)
            if x0a.shape != op.shape:
                raise PhysicsError(f"x0 has shape {x0a.shape}, the grid is {op.shape}", "give x0 on the same grid")
            np.copyto(x, x0a, casting="unsafe")
            if not math.isfinite(float(x.sum())):  # NaN and ±inf propagate into the sum
                raise PhysicsError("x0 has non-finite values", "give a finite initial guess, or none")
        if op.n_floating:
            b, bnorm = op.rhs_vector(rhs)
            rr = _residual64(x, b, op.tz, op.ty, op.tx, op.react, r, r32)
        else:
            rr, bb, bad, stray = _start_residual(
                op.source(rhs),
                op.voxel_volume_m3,
                op.lift,
                op.fixed,
                op.invd,
                x,
                op.tz,
                op.ty,
                op.tx,
                op.react,
                r,
                r32,
            )
            op._check_source(bad, stray)
            bnorm = math.sqrt(bb)
        info = SolveInfo(iterations=0, residuals=[math.sqrt(rr) / bnorm if bnorm > 0 else 0.0], method=method)
        if bnorm == 0.0:  # no source and every held value 0: the solution is 0
            x[...] = 0.0
            info.converged = True
            return self._finish(x), info
        target = rtol * bnorm
        if math.sqrt(rr) <= target:
            info.converged = True
            return self._finish(x), info
        if method == "pcg":
            self.precondition(r32, z)
            rz = _dot32(r32, z)
            p[...] = z
            for it in range(1, max_iterations + 1):
                pq = _apply64(p, op.tz, op.ty, op.tx, op.react, q)
                if not pq > 0.0:  # breakdown: only when the residual is already at rounding level
                    break
                rr = _cg_update(rz / pq, x, p, r, q, r32)
                info.iterations = it
                info.residuals.append(math.sqrt(rr) / bnorm)
                if math.sqrt(rr) <= target:
                    info.converged = True
                    break
                self.precondition(r32, z)
                rz_new = _dot32(r32, z)
                _xpby(z, np.float32(rz_new / rz), p)
                rz = rz_new
        else:
            for it in range(1, max_iterations + 1):
                self.precondition(r32, z, method)
                _apply64(z, op.tz, op.ty, op.tx, op.react, q)
                rr = _cg_update(1.0, x, z, r, q, r32)
                info.iterations = it
                info.residuals.append(math.sqrt(rr) / bnorm)
                if math.sqrt(rr) <= target:
                    info.converged = True
                    break
        return self._finish(x), info

    def _finish(self, x: np.ndarray) -> np.ndarray:
        """The float32 solution: floating regions at zero mean, held voxels at their values."""
        op = self.operator
        op.remove_floating_constants(x)
        out = x.astype(np.float32)
        if op.has_dirichlet:
            np.copyto(out, op.dirichlet_value, where=op.fixed)
        return out


def solve_elliptic(
    coefficient: np.ndarray | float,
    reaction: np.ndarray | float,
    rhs: np.ndarray | float,
    spacing_m: tuple[float, float, float],
    dirichlet_mask: np.ndarray | None = None,
    dirichlet_value: np.ndarray | float | None = None,
    **kw,
) -> np.ndarray:
    """One-shot solve of −∇·(a∇u) + c·u = f (see :class:`EllipticOperator`); ``levels`` goes to the solver,
    other keywords to :meth:`MultigridSolver.solve`. Raises PhysicsError if the tolerance is not reached."""
    levels = kw.pop("levels", None)
    shape = np.shape(rhs) if np.ndim(rhs) == 3 else kw.pop("shape", None)
    op = EllipticOperator(coefficient, reaction, spacing_m, dirichlet_mask, dirichlet_value, shape=shape)
    u, info = MultigridSolver(op, levels=levels).solve(rhs, **kw)
    if not info.converged:
        raise PhysicsError(
            f"the elliptic solve stopped at relative residual {info.residual:.2e} after {info.iterations} iterations",
            "raise max_iterations or loosen rtol; nearly insulating walls that cut the grid slow multigrid down",
        )
    return u
