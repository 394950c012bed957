"""An independent reference for the multigrid solver: the same finite-volume system assembled as a
sparse matrix from its definition and solved with pyamg (smoothed-aggregation CG), for tests and
``make validate``. pyamg is a development dependency, imported only here.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from insitu.physics.multigrid import EllipticOperator, MultigridSolver


def assemble_reference_system(a, c, f, spacing, held, value):
    """The 7-point finite-volume system on the free voxels (float64, scipy.sparse), written from the
    definition: face conductance = harmonic mean of a × area / distance; held neighbours move to the rhs.
    Returns (matrix, rhs, free mask flattened)."""
    n = a.shape
    hz, hy, hx = spacing
    vol = hz * hy * hx
    a = a.astype(np.float64)
    index = np.arange(a.size).reshape(n)
    rows, cols, vals = [], [], []
    diag = (np.broadcast_to(c, n) * vol).astype(np.float64).ravel().copy()
    for axis, geo in ((0, hy * hx / hz), (1, hz * hx / hy), (2, hz * hy / hx)):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        a0, a1 = a[tuple(lo)], a[tuple(hi)]
        t = (2 * a0 * a1 / np.where(a0 + a1 > 0, a0 + a1, 1.0) * geo).ravel()
        i0, i1 = index[tuple(lo)].ravel(), index[tuple(hi)].ravel()
        np.add.at(diag, i0, t)
        np.add.at(diag, i1, t)
        rows += [i0, i1]
        cols += [i1, i0]
        vals += [-t, -t]
    full = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(a.size,) * 2)
    full = (full + sp.diags(diag)).tocsr()
    free = ~held.ravel()
    g = np.where(held, value, 0.0).ravel()
    b = np.broadcast_to(f, n).ravel() * vol - full @ g
    return full[free][:, free].tocsr(), b[free], free


def heterogeneous_problem(n=(40, 36, 44), seed: int = 7):
    """Log-normal a spanning > 2 decades (a smooth random field), a reaction region, a held cube at 1 V and a
    grounded face, anisotropic spacing: (a, c, f, spacing, held, value)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=n), 2.0)
    a = np.exp(1.6 * field / field.std()).astype(np.float32)
    c = np.where(np.arange(n[2])[None, None, :] > 30, 3e4, 0.0) * np.ones(n)
    f = (rng.normal(size=n) * 50).astype(np.float32)
    held = np.zeros(n, dtype=bool)
    held[n[0] // 2 - 2 : n[0] // 2 + 1, n[1] // 2 - 2 : n[1] // 2 + 1, n[2] // 2 - 2 : n[2] // 2 + 1] = True
    held[:, :, 0] = True
    value = np.where(held & (np.arange(n[2]) > 0)[None, None, :], 1.0, 0.0).astype(np.float32)
    return a, c, f, (1.0e-3, 1.2e-3, 0.9e-3), held, value


def pyamg_agreement(n=(40, 36, 44), seed: int = 7) -> dict[str, float]:
    """Solve the heterogeneous problem with our multigrid-PCG (rtol 1e-10) and with pyamg; the relative
    difference of the solutions on the free voxels and the coefficient contrast."""
    import pyamg

    a, c, f, spacing, held, value = heterogeneous_problem(n, seed)
    u, info = MultigridSolver(EllipticOperator(a, c, spacing, held, value)).solve(f, rtol=1e-10)
    matrix, b, free = assemble_reference_system(a, c, f, spacing, held, value)
    reference = pyamg.smoothed_aggregation_solver(matrix).solve(b, tol=1e-12, accel="cg", maxiter=500)
    ours = u.astype(np.float64).ravel()[free]
    return {
        "relative_difference": float(np.linalg.norm(ours - reference) / np.linalg.norm(reference)),
        "reference_residual": float(np.linalg.norm(b - matrix @ reference) / np.linalg.norm(b)),
        "our_residual": float(info.residual),
        "coefficient_contrast": float(a.max() / a.min()),
        "held_exact": float(np.array_equal(u[held], value[held])),
    }
