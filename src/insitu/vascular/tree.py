"""A vessel tree as a rooted graph of straight cylindrical segments (LPS millimetres).

Node 0 is the inlet (for veins: the outlet into the IVC); ``parent[n]`` is the upstream node of
node ``n`` (``-1`` for the root) and segment ``n`` runs ``parent[n] → n`` with radius
``radius_mm[n]`` and flow ``flow[n]``. ``radius_mm[0]`` and ``flow[0]`` describe the inlet itself.
Nodes may come in any order; methods that need one walk a breadth-first order computed once.
A tree is treated as immutable: methods return new trees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

import numba
import numpy as np

from insitu.errors import StructureError
from insitu.grid import Grid

FLOW_UNITS = ("relative", "ml_min")
_FORMAT = "insitu.vessel_tree"
_FORMAT_VERSION = 1


class VesselKind(StrEnum):
    """Which vascular system a tree belongs to."""

    HEPATIC_ARTERY = "hepatic_artery"
    PORTAL_VEIN = "portal_vein"
    HEPATIC_VEIN = "hepatic_vein"
    OTHER = "other"

    @classmethod
    def parse(cls, value: str | VesselKind) -> VesselKind:
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise StructureError(
                f"unknown vessel kind {value!r}", f"use one of {', '.join(k.value for k in cls)}"
            ) from None


@dataclass(eq=False)
class VesselTree:
    """Rooted tree of straight segments: node positions, parent links, radii and flows.

    ``flow`` is per segment, either ``"relative"`` (fraction of the inlet flow) or ``"ml_min"``;
    when omitted it is the number of downstream terminals divided by the terminal count
    (equal terminal flows).
    """

    points_mm: np.ndarray
    parent: np.ndarray
    radius_mm: np.ndarray
    flow: np.ndarray | None = None
    name: str = "vessel"
    kind: VesselKind = VesselKind.OTHER
    flow_unit: str = "relative"

    def __post_init__(self) -> None:
        self.points_mm = np.array(self.points_mm, dtype=np.float64).reshape(-1, 3)
        self.parent = np.array(self.parent, dtype=np.int64).reshape(-1)
        self.radius_mm = np.array(self.radius_mm, dtype=np.float64).reshape(-1)
        self.kind = VesselKind.parse(self.kind)
        n = self.points_mm.shape[0]
        if self.parent.shape[0] != n or self.radius_mm.shape[0] != n:
            raise StructureError(
                f"vessel tree {self.name!r} has {n} points, {self.parent.shape[0]} parents and "
                f"{self.radius_mm.shape[0]} radii",
                "give one parent index and one radius per node",
            )
        if n == 0:
            raise StructureError(f"vessel tree {self.name!r} is empty", "give at least the root")
        if self.flow_unit not in FLOW_UNITS:
            raise StructureError(f"unknown flow unit {self.flow_unit!r}", f"use one of {', '.join(FLOW_UNITS)}")
        if self.flow is None:
            self.flow = self._terminal_fraction()
            self.flow_unit = "relative"
        else:
            self.flow = np.array(self.flow, dtype=np.float64).reshape(-1)
            if self.flow.shape[0] != n:
                raise StructureError(
                    f"vessel tree {self.name!r} has {self.flow.shape[0]} flows for {n} nodes",
                    "give one flow per node (segment n ends at node n; flow[0] is the inlet)",
                )

    # ------------------------------------------------------------------ topology
    @property
    def n_nodes(self) -> int:
        """Number of nodes, the root included."""
        return int(self.points_mm.shape[0])

    @property
    def n_segments(self) -> int:
        """Number of segments (one per non-root node)."""
        return self.n_nodes - 1

    @cached_property
    def _csr(self) -> tuple[np.ndarray, np.ndarray]:
        """Children in CSR form: ``children_of[offsets[n]:offsets[n+1]]`` (ascending index)."""
        n = self.n_nodes
        child_nodes = np.flatnonzero(self.parent >= 0)
        parents = self.parent[child_nodes]
        if parents.size and (parents.min() < 0 or parents.max() >= n):
            raise StructureError(
                f"vessel tree {self.name!r} has a parent index outside 0..{n - 1}",
                "fix the parent array (−1 for the root only)",
            )
        order = np.argsort(parents, kind="stable")
        counts = np.bincount(parents, minlength=n)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return child_nodes[order].astype(np.int64), offsets

    @property
    def n_children(self) -> np.ndarray:
        """Number of children of every node."""
        return np.diff(self._csr[1])

    def children(self, node: int) -> np.ndarray:
        """Child nodes of ``node`` (ascending index)."""
        kids, offsets = self._csr
        return kids[offsets[node] : offsets[node + 1]]

    @property
    def children_lists(self) -> list[list[int]]:
        """Children of every node as Python lists."""
        return [self.children(n).tolist() for n in range(self.n_nodes)]

    @cached_property
    def order(self) -> np.ndarray:
        """Breadth-first node order from the root (parents before children)."""
        if int(self.parent[0]) != -1 or np.count_nonzero(self.parent < 0) != 1:
            raise StructureError(
                f"vessel tree {self.name!r} must have exactly one root, node 0 with parent −1",
                "renumber the nodes so the inlet is node 0",
            )
        kids, offsets = self._csr
        out = _bfs_order(kids, offsets)
        if out.shape[0] != self.n_nodes:
            raise StructureError(
                f"vessel tree {self.name!r} has {self.n_nodes - out.shape[0]} nodes not reachable "
                "from the root (a cycle or a second component)",
                "fix the parent array so every node leads back to node 0",
            )
        return out

    @property
    def terminals(self) -> np.ndarray:
        """Leaf nodes (no children), excluding a lone root."""
        leaf = self.n_children == 0
        leaf[0] = False
        return np.flatnonzero(leaf)

    @property
    def bifurcations(self) -> np.ndarray:
        """Branching nodes (two or more children), the root included when it branches."""
        return np.flatnonzero(self.n_children >= 2)

    @cached_property
    def segment_lengths_mm(self) -> np.ndarray:
        """Length of every segment (``[0]`` is 0: the root has no segment)."""
        out = np.zeros(self.n_nodes)
        idx = np.flatnonzero(self.parent >= 0)
        out[idx] = np.linalg.norm(self.points_mm[idx] - self.points_mm[self.parent[idx]], axis=1)
        return out

    @cached_property
    def depth(self) -> np.ndarray:
        """Number of segments between the root and every node (root 0)."""
        out = np.zeros(self.n_nodes, dtype=np.int64)
        for n in self.order[1:]:
            out[n] = out[self.parent[n]] + 1
        return out

    @cached_property
    def generation(self) -> np.ndarray:
        """Segment generation: 1 for segments leaving the root, +1 after every branching node."""
        out = np.zeros(self.n_nodes, dtype=np.int64)
        branching = self.n_children >= 2
        for n in self.order[1:]:
            p = self.parent[n]
            out[n] = out[p] + 1 if (p == 0 or branching[p]) else out[p]
        return out

    @cached_property
    def strahler(self) -> np.ndarray:
        """Strahler order of every segment (terminal segments 1; ``[0]`` is the inlet's order)."""
        kids, offsets = self._csr
        return _strahler(self.order, kids, offsets)

    def _terminal_fraction(self) -> np.ndarray:
        """Downstream terminal count of every node divided by the total (equal terminal flows)."""
        count = (self.n_children == 0).astype(np.float64)
        count[0] = 0.0 if self.n_nodes > 1 else 1.0
        for n in self.order[::-1][:-1]:
            count[self.parent[n]] += count[n]
        return count / max(count[0], 1.0)

    # ------------------------------------------------------------------ checks and statistics
    def murray_residuals(self, exponent: float = 3.0) -> np.ndarray:
        """``|r0^γ − Σ r_child^γ| / r0^γ`` at every branching node (order of ``bifurcations``)."""
        nodes = self.bifurcations
        out = np.empty(nodes.shape[0])
        for i, n in enumerate(nodes):
            r0 = self.radius_mm[n] ** exponent
            rc = np.sum(self.radius_mm[self.children(n)] ** exponent)
            out[i] = abs(r0 - rc) / r0
        return out

    def validate(self) -> None:
        """Raise :class:`StructureError` unless this is a finite connected tree, radii > 0."""
        n = self.n_nodes
        if not np.all(np.isfinite(self.points_mm)):
            raise StructureError(f"vessel tree {self.name!r} has non-finite points", "give finite LPS millimetres")
        if np.any((self.parent < -1) | (self.parent >= n)) or np.any(self.parent[1:] == -1):
            raise StructureError(
                f"vessel tree {self.name!r} has parent indices outside 0..{n - 1} or a second root",
                "node 0 is the only root (parent −1); every other parent is a node index",
            )
        if np.any(self.parent == np.arange(n)):
            raise StructureError(
                f"vessel tree {self.name!r} has a node that is its own parent",
                "fix the parent array",
            )
        _ = self.order  # raises on cycles and unreachable nodes
        if not np.all(np.isfinite(self.radius_mm)) or np.any(self.radius_mm <= 0.0):
            bad = int(np.flatnonzero(~(self.radius_mm > 0.0))[0])
            raise StructureError(
                f"vessel tree {self.name!r} has a zero, negative or non-finite radius (node {bad})",
                "give every node a positive radius in millimetres",
            )
        flow = np.asarray(self.flow)
        if not np.all(np.isfinite(flow)) or np.any(flow < 0.0):
            raise StructureError(
                f"vessel tree {self.name!r} has negative or non-finite flows",
                "give non-negative flows (relative or mL/min)",
            )

    def statistics(self) -> dict[str, Any]:
        """Counts, total length, volume, radius range and per-Strahler-order means (JSON-ready)."""
        seg = np.flatnonzero(self.parent >= 0)
        lengths = self.segment_lengths_mm[seg]
        radii = self.radius_mm[seg]
        orders = self.strahler[seg]
        per_order = []
        for order in np.unique(orders):
            sel = orders == order
            per_order.append(
                {
                    "order": int(order),
                    "n_segments": int(sel.sum()),
                    "mean_radius_mm": float(radii[sel].mean()),
                    "mean_length_mm": float(lengths[sel].mean()),
                }
            )
        return {
            "name": self.name,
            "kind": str(self.kind),
            "n_nodes": self.n_nodes,
            "n_segments": int(seg.size),
            "n_terminals": int(self.terminals.size),
            "n_bifurcations": int(self.bifurcations.size),
            "total_length_mm": float(lengths.sum()),
            "volume_ml": float(np.sum(np.pi * radii**2 * lengths) / 1000.0),
            "radius_min_mm": float(radii.min()) if seg.size else float(self.radius_mm[0]),
            "radius_max_mm": float(radii.max()) if seg.size else float(self.radius_mm[0]),
            "max_generation": int(self.generation.max()),
            "max_depth": int(self.depth.max()),
            "max_strahler_order": int(orders.max()) if seg.size else 0,
            "per_strahler_order": per_order,
        }

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary; ``from_dict`` restores it exactly."""
        return {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "name": self.name,
            "kind": str(self.kind),
            "flow_unit": self.flow_unit,
            "points_mm": self.points_mm.tolist(),
            "parent": self.parent.tolist(),
            "radius_mm": self.radius_mm.tolist(),
            "flow": np.asarray(self.flow).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VesselTree:
        """Rebuild a tree written by :meth:`to_dict`."""
        if data.get("format", _FORMAT) != _FORMAT:
            raise StructureError(
                f"not a vessel tree document (format {data.get('format')!r})",
                f"give a dictionary written by VesselTree.to_dict (format {_FORMAT!r})",
            )
        try:
            return cls(
                points_mm=np.asarray(data["points_mm"], dtype=np.float64),
                parent=np.asarray(data["parent"], dtype=np.int64),
                radius_mm=np.asarray(data["radius_mm"], dtype=np.float64),
                flow=None if data.get("flow") is None else np.asarray(data["flow"], np.float64),
                name=str(data.get("name", "vessel")),
                kind=VesselKind.parse(data.get("kind", "other")),
                flow_unit=str(data.get("flow_unit", "relative")),
            )
        except KeyError as exc:
            raise StructureError(
                f"vessel tree document lacks {exc.args[0]!r}",
                "give points_mm, parent and radius_mm",
            ) from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VesselTree):
            return NotImplemented
        return (
            self.name == other.name
            and self.kind == other.kind
            and self.flow_unit == other.flow_unit
            and np.array_equal(self.points_mm, other.points_mm)
            and np.array_equal(self.parent, other.parent)
            and np.array_equal(self.radius_mm, other.radius_mm)
            and np.array_equal(self.flow, other.flow)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable arrays: not hashable

    # ------------------------------------------------------------------ derived trees
    def _replace(self, **changes: Any) -> VesselTree:
        fields = {
            "points_mm": self.points_mm,
            "parent": self.parent,
            "radius_mm": self.radius_mm,
            "flow": self.flow,
            "name": self.name,
            "kind": self.kind,
            "flow_unit": self.flow_unit,
        }
        fields.update(changes)
        return VesselTree(**fields)

    def with_inlet_flow(self, inlet_flow_ml_min: float) -> VesselTree:
        """The same tree with flows in mL/min, scaled so the inlet carries ``inlet_flow_ml_min``."""
        flow = np.asarray(self.flow, dtype=np.float64)
        if flow[0] <= 0.0:
            raise StructureError(f"vessel tree {self.name!r} has no inlet flow to scale", "set flow[0] > 0")
        return self._replace(flow=flow * (float(inlet_flow_ml_min) / flow[0]), flow_unit="ml_min")

    def subtree(self, node: int) -> VesselTree:
        """The part fed by segment ``node``: its upstream end becomes the new root (node 0).

        Nodes are renumbered in breadth-first order; ``subtree(0)`` is a renumbered copy.
        """
        node = int(node)
        if not 0 <= node < self.n_nodes:
            raise StructureError(
                f"node {node} is not in vessel tree {self.name!r} (0..{self.n_nodes - 1})",
                "give a node index of this tree",
            )
        kids, offsets = self._csr
        down = _bfs_order_from(kids, offsets, node)
        if node == 0:
            keep = down
            new_parent_of = {int(n): i for i, n in enumerate(keep)}
            parent = np.array([-1] + [new_parent_of[int(self.parent[n])] for n in keep[1:]], dtype=np.int64)
            return self._replace(
                points_mm=self.points_mm[keep],
                parent=parent,
                radius_mm=self.radius_mm[keep],
                flow=np.asarray(self.flow)[keep],
            )
        up = int(self.parent[node])
        index = {int(n): i + 1 for i, n in enumerate(down)}
        parent = np.empty(down.size + 1, dtype=np.int64)
        parent[0] = -1
        parent[1] = 0
        for i, n in enumerate(down[1:], start=2):
            parent[i] = index[int(self.parent[n])]
        points = np.vstack([self.points_mm[up][None, :], self.points_mm[down]])
        radius = np.concatenate([[self.radius_mm[node]], self.radius_mm[down]])
        flow = np.asarray(self.flow)
        flows = np.concatenate([[flow[node]], flow[down]])
        return self._replace(points_mm=points, parent=parent, radius_mm=radius, flow=flows)

    def translate(self, offset_mm: np.ndarray | tuple[float, float, float]) -> VesselTree:
        """The tree moved by ``offset_mm`` (LPS)."""
        offset = np.asarray(offset_mm, dtype=np.float64).reshape(3)
        return self._replace(points_mm=self.points_mm + offset)

    def transform(self, matrix: np.ndarray) -> VesselTree:
        """The tree under a 4×4 (or 3×3) similarity transform; radii scale with it.

        Only rotations, reflections, translations and uniform scaling keep cylinders cylinders,
        so any other linear part is refused.
        """
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape == (3, 3):
            linear, offset = m, np.zeros(3)
        elif m.shape == (4, 4):
            linear, offset = m[:3, :3], m[:3, 3]
        else:
            raise StructureError(f"transform has shape {m.shape}", "give a 4×4 homogeneous or 3×3 matrix")
        gram = linear.T @ linear
        scale2 = float(np.trace(gram) / 3.0)
        if scale2 <= 0.0 or not np.allclose(gram, scale2 * np.eye(3), rtol=1e-6, atol=1e-9):
            raise StructureError(
                "transform is not a similarity (rotation, translation, uniform scale)",
                "give a rigid or uniformly scaled transform; vessels would stop being cylinders",
            )
        scale = math.sqrt(scale2)
        return self._replace(points_mm=self.points_mm @ linear.T + offset, radius_mm=self.radius_mm * scale)

    # ------------------------------------------------------------------ voxelisation
    def _segments_in_grid_frame(
        self, grid: Grid, min_radius_mm: float | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segment ends as continuous (i, j, k) indices, and radii, for segments to draw."""
        seg = np.flatnonzero(self.parent >= 0)
        if min_radius_mm is not None:
            seg = seg[self.radius_mm[seg] >= float(min_radius_mm)]
        a = grid.world_to_index(self.points_mm[self.parent[seg]])
        b = grid.world_to_index(self.points_mm[seg])
        return (
            np.ascontiguousarray(a, dtype=np.float64),
            np.ascontiguousarray(b, dtype=np.float64),
            np.ascontiguousarray(self.radius_mm[seg], dtype=np.float64),
        )

    def rasterize(self, grid: Grid, min_radius_mm: float | None = None) -> np.ndarray:
        """Boolean ``[k, j, i]`` mask of the voxels whose centre lies inside a vessel.

        A voxel is set when its centre is within ``r`` of a segment (a capsule), and every voxel
        a centreline passes through is set too, so vessels thinner than a voxel stay
        face-connected. Segments thinner than ``min_radius_mm`` are left out.
        """
        a, b, r = self._segments_in_grid_frame(grid, min_radius_mm)
        mask = np.zeros(grid.shape, dtype=np.bool_)
        spacing = np.asarray(grid.spacing_mm, dtype=np.float64)
        _rasterize(a, b, r, spacing, mask)
        return mask

    def occupancy(self, grid: Grid) -> np.ndarray:
        """Fraction (float32, 0…1) of every voxel filled by vessel lumen.

        Segments at least half a voxel thick are sampled 4×4×4 per voxel (their union is
        counted once); thinner ones add their exact volume πr²·(length inside the voxel).
        """
        a, b, r = self._segments_in_grid_frame(grid, None)
        spacing = np.asarray(grid.spacing_mm, dtype=np.float64)
        out = np.zeros(grid.shape, dtype=np.float32)
        if r.size == 0:
            return out
        thin = r < 0.5 * float(spacing.min())
        thick = ~thin
        if thick.any():
            lo, hi = _index_box(a[thick], b[thick], r[thick], spacing, grid.shape)
            if lo is not None:
                box = tuple(int(h - lo_) for lo_, h in zip(lo, hi, strict=True))
                bits = np.zeros(box, dtype=np.uint64)
                _occupancy_bits(a[thick], b[thick], r[thick], spacing, lo, bits)
                sub = tuple(slice(int(lo_), int(h)) for lo_, h in zip(lo, hi, strict=True))
                out[sub] = _popcount_fraction(bits)
        if thin.any():
            deposit = np.zeros(grid.shape, dtype=np.float64)
            voxel_volume = float(np.prod(spacing))
            _deposit_thin(a[thin], b[thin], r[thin], spacing, voxel_volume, deposit)
            out += deposit.astype(np.float32)
        np.clip(out, 0.0, 1.0, out=out)
        return out


# ---------------------------------------------------------------------- helpers (numba)
def _index_box(
    a: np.ndarray, b: np.ndarray, r: np.ndarray, spacing: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Array-order (k, j, i) box [lo, hi) holding every capsule, clipped to the grid."""
    reach = r[:, None] / spacing[None, :]
    lo_ijk = np.floor(np.minimum(a, b) - reach).astype(np.int64)
    hi_ijk = np.ceil(np.maximum(a, b) + reach).astype(np.int64) + 1
    lo = np.maximum(lo_ijk.min(axis=0)[::-1], 0)
    hi = np.minimum(hi_ijk.max(axis=0)[::-1], np.asarray(shape))
    if np.any(hi <= lo):
        return None, None
    return lo, hi


@numba.njit(cache=True)
def _bfs_order(kids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return _bfs_order_from(kids, offsets, 0)


@numba.njit(cache=True)
def _bfs_order_from(kids: np.ndarray, offsets: np.ndarray, start: int) -> np.ndarray:
    n = offsets.shape[0] - 1
    out = np.empty(n, dtype=np.int64)
    seen = np.zeros(n, dtype=np.bool_)
    out[0] = start
    seen[start] = True
    head, tail = 0, 1
    while head < tail:
        node = out[head]
        head += 1
        for c in range(offsets[node], offsets[node + 1]):
            child = kids[c]
            if not seen[child]:
                seen[child] = True
                out[tail] = child
                tail += 1
    return out[:tail]


@numba.njit(cache=True)
def _strahler(order: np.ndarray, kids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    n = offsets.shape[0] - 1
    out = np.ones(n, dtype=np.int64)
    for idx in range(order.shape[0] - 1, -1, -1):
        node = order[idx]
        lo, hi = offsets[node], offsets[node + 1]
        if hi == lo:
            continue
        best, count = 0, 0
        for c in range(lo, hi):
            s = out[kids[c]]
            if s > best:
                best, count = s, 1
            elif s == best:
                count += 1
        out[node] = best + 1 if (hi - lo >= 2 and count >= 2) else best
    return out


@numba.njit(cache=True, inline="always")
def _dist2_point_segment(
    px: float,
    py: float,
    pz: float,
    ax: float,
    ay: float,
    az: float,
    dx: float,
    dy: float,
    dz: float,
    inv_len2: float,
) -> float:
    """Squared distance from p to the segment a + t·d, t ∈ [0, 1] (all in mm)."""
    wx, wy, wz = px - ax, py - ay, pz - az
    t = (wx * dx + wy * dy + wz * dz) * inv_len2
    if t < 0.0:
        t = 0.0
    elif t > 1.0:
        t = 1.0
    ex, ey, ez = wx - t * dx, wy - t * dy, wz - t * dz
    return ex * ex + ey * ey + ez * ez


@numba.njit(cache=True)
def _fill_capsule(
    mask: np.ndarray,
    ai: float,
    aj: float,
    ak: float,
    bi: float,
    bj: float,
    bk: float,
    rad: float,
    sx: float,
    sy: float,
    sz: float,
) -> None:
    """Set voxels whose centre is within ``rad`` mm of the segment a–b (continuous indices)."""
    nk, nj, ni = mask.shape
    ax, ay, az = ai * sx, aj * sy, ak * sz
    dx, dy, dz = bi * sx - ax, bj * sy - ay, bk * sz - az
    len2 = dx * dx + dy * dy + dz * dz
    inv = 1.0 / len2 if len2 > 0.0 else 0.0
    r2 = rad * rad
    i0 = max(int(np.ceil(min(ai, bi) - rad / sx)), 0)
    i1 = min(int(np.floor(max(ai, bi) + rad / sx)), ni - 1)
    j0 = max(int(np.ceil(min(aj, bj) - rad / sy)), 0)
    j1 = min(int(np.floor(max(aj, bj) + rad / sy)), nj - 1)
    k0 = max(int(np.ceil(min(ak, bk) - rad / sz)), 0)
    k1 = min(int(np.floor(max(ak, bk) + rad / sz)), nk - 1)
    for k in range(k0, k1 + 1):
        pz = k * sz
        for j in range(j0, j1 + 1):
            py = j * sy
            for i in range(i0, i1 + 1):
                if _dist2_point_segment(i * sx, py, pz, ax, ay, az, dx, dy, dz, inv) <= r2:
                    mask[k, j, i] = True


@numba.njit(cache=True)
def _rasterize(a: np.ndarray, b: np.ndarray, r: np.ndarray, spacing: np.ndarray, mask: np.ndarray) -> None:
    nk, nj, ni = mask.shape
    sx, sy, sz = spacing[0], spacing[1], spacing[2]
    cells = np.empty((4096, 3), dtype=np.int64)
    tvals = np.empty(4096)
    for s in range(r.shape[0]):
        # capsule, drawn in pieces no longer than a few radii so each box stays tight
        length = np.sqrt(
            ((b[s, 0] - a[s, 0]) * sx) ** 2 + ((b[s, 1] - a[s, 1]) * sy) ** 2 + ((b[s, 2] - a[s, 2]) * sz) ** 2
        )
        pieces = max(1, int(np.ceil(length / max(4.0 * r[s], 4.0 * min(sx, sy, sz)))))
        for p in range(pieces):
            t0, t1 = p / pieces, (p + 1) / pieces
            _fill_capsule(
                mask,
                a[s, 0] + t0 * (b[s, 0] - a[s, 0]),
                a[s, 1] + t0 * (b[s, 1] - a[s, 1]),
                a[s, 2] + t0 * (b[s, 2] - a[s, 2]),
                a[s, 0] + t1 * (b[s, 0] - a[s, 0]),
                a[s, 1] + t1 * (b[s, 1] - a[s, 1]),
                a[s, 2] + t1 * (b[s, 2] - a[s, 2]),
                r[s],
                sx,
                sy,
                sz,
            )
        # centreline: every voxel the axis passes through (keeps thin vessels connected)
        span = abs(b[s, 0] - a[s, 0]) + abs(b[s, 1] - a[s, 1]) + abs(b[s, 2] - a[s, 2])
        need = int(span) + 8
        if need > cells.shape[0]:
            cells = np.empty((need, 3), dtype=np.int64)
            tvals = np.empty(need)
        n = _traverse(a[s], b[s], cells, tvals)
        for c in range(n):
            k, j, i = cells[c, 0], cells[c, 1], cells[c, 2]
            if 0 <= i < ni and 0 <= j < nj and 0 <= k < nk:
                mask[k, j, i] = True


@numba.njit(cache=True)
def _occupancy_bits(
    a: np.ndarray,
    b: np.ndarray,
    r: np.ndarray,
    spacing: np.ndarray,
    lo: np.ndarray,
    bits: np.ndarray,
) -> None:
    """OR into ``bits`` (box starting at ``lo`` (k, j, i)) the 4×4×4 sub-samples inside capsules."""
    sx, sy, sz = spacing[0], spacing[1], spacing[2]
    for s in range(r.shape[0]):
        length = np.sqrt(
            ((b[s, 0] - a[s, 0]) * sx) ** 2 + ((b[s, 1] - a[s, 1]) * sy) ** 2 + ((b[s, 2] - a[s, 2]) * sz) ** 2
        )
        pieces = max(1, int(np.ceil(length / max(4.0 * r[s], 4.0 * min(sx, sy, sz)))))
        for p in range(pieces):
            t0, t1 = p / pieces, (p + 1) / pieces
            _bits_capsule(
                bits,
                lo,
                a[s, 0] + t0 * (b[s, 0] - a[s, 0]),
                a[s, 1] + t0 * (b[s, 1] - a[s, 1]),
                a[s, 2] + t0 * (b[s, 2] - a[s, 2]),
                a[s, 0] + t1 * (b[s, 0] - a[s, 0]),
                a[s, 1] + t1 * (b[s, 1] - a[s, 1]),
                a[s, 2] + t1 * (b[s, 2] - a[s, 2]),
                r[s],
                sx,
                sy,
                sz,
            )


@numba.njit(cache=True)
def _bits_capsule(
    bits: np.ndarray,
    lo: np.ndarray,
    ai: float,
    aj: float,
    ak: float,
    bi: float,
    bj: float,
    bk: float,
    rad: float,
    sx: float,
    sy: float,
    sz: float,
) -> None:
    """Set the sub-sample bits of voxels near one capsule (4×4×4 samples per voxel)."""
    bk_, bj_, bi_ = bits.shape
    half_diag = 0.5 * np.sqrt(sx * sx + sy * sy + sz * sz)
    full = np.uint64(0xFFFFFFFFFFFFFFFF)
    ax, ay, az = ai * sx, aj * sy, ak * sz
    dx, dy, dz = bi * sx - ax, bj * sy - ay, bk * sz - az
    len2 = dx * dx + dy * dy + dz * dz
    inv = 1.0 / len2 if len2 > 0.0 else 0.0
    r2 = rad * rad
    outer2 = (rad + half_diag) ** 2
    inner = rad - half_diag
    inner2 = inner * inner if inner > 0.0 else -1.0
    i0 = max(int(np.floor(min(ai, bi) - rad / sx)), lo[2])
    i1 = min(int(np.ceil(max(ai, bi) + rad / sx)), lo[2] + bi_ - 1)
    j0 = max(int(np.floor(min(aj, bj) - rad / sy)), lo[1])
    j1 = min(int(np.ceil(max(aj, bj) + rad / sy)), lo[1] + bj_ - 1)
    k0 = max(int(np.floor(min(ak, bk) - rad / sz)), lo[0])
    k1 = min(int(np.ceil(max(ak, bk) + rad / sz)), lo[0] + bk_ - 1)
    for k in range(k0, k1 + 1):
        pz = k * sz
        for j in range(j0, j1 + 1):
            py = j * sy
            for i in range(i0, i1 + 1):
                px = i * sx
                d2 = _dist2_point_segment(px, py, pz, ax, ay, az, dx, dy, dz, inv)
                if d2 > outer2:
                    continue
                kk, jj, ii = k - lo[0], j - lo[1], i - lo[2]
                if d2 <= inner2:
                    bits[kk, jj, ii] = full
                    continue
                word = bits[kk, jj, ii]
                if word == full:
                    continue
                bit = 0
                for ok in range(4):
                    qz = pz + (ok - 1.5) * 0.25 * sz
                    for oj in range(4):
                        qy = py + (oj - 1.5) * 0.25 * sy
                        for oi in range(4):
                            qx = px + (oi - 1.5) * 0.25 * sx
                            d2q = _dist2_point_segment(qx, qy, qz, ax, ay, az, dx, dy, dz, inv)
                            if d2q <= r2:
                                word |= np.uint64(1) << np.uint64(bit)
                            bit += 1
                bits[kk, jj, ii] = word


@numba.njit(cache=True)
def _popcount_fraction(bits: np.ndarray) -> np.ndarray:
    out = np.zeros(bits.shape, dtype=np.float32)
    flat_in = bits.reshape(-1)
    flat_out = out.reshape(-1)
    m1 = np.uint64(0x5555555555555555)
    m2 = np.uint64(0x3333333333333333)
    m4 = np.uint64(0x0F0F0F0F0F0F0F0F)
    h01 = np.uint64(0x0101010101010101)
    for idx in range(flat_in.shape[0]):
        x = flat_in[idx]
        if x == 0:
            continue
        x = x - ((x >> np.uint64(1)) & m1)
        x = (x & m2) + ((x >> np.uint64(2)) & m2)
        x = (x + (x >> np.uint64(4))) & m4
        flat_out[idx] = np.float32(((x * h01) >> np.uint64(56)) / 64.0)
    return out


@numba.njit(cache=True)
def _deposit_thin(
    a: np.ndarray,
    b: np.ndarray,
    r: np.ndarray,
    spacing: np.ndarray,
    voxel_volume: float,
    out: np.ndarray,
) -> None:
    """Add πr²·(length inside each voxel)/voxel volume along every (thin) segment."""
    nk, nj, ni = out.shape
    cells = np.empty((4096, 3), dtype=np.int64)
    tvals = np.empty(4096)
    for s in range(r.shape[0]):
        dx = (b[s, 0] - a[s, 0]) * spacing[0]
        dy = (b[s, 1] - a[s, 1]) * spacing[1]
        dz = (b[s, 2] - a[s, 2]) * spacing[2]
        length = np.sqrt(dx * dx + dy * dy + dz * dz)
        if length == 0.0:
            continue
        area = np.pi * r[s] * r[s]
        span = abs(b[s, 0] - a[s, 0]) + abs(b[s, 1] - a[s, 1]) + abs(b[s, 2] - a[s, 2])
        need = int(span) + 8
        if need > cells.shape[0]:
            cells = np.empty((need, 3), dtype=np.int64)
            tvals = np.empty(need)
        n = _traverse(a[s], b[s], cells, tvals)
        t_prev = 0.0
        for c in range(n):
            k, j, i = cells[c, 0], cells[c, 1], cells[c, 2]
            t_exit = tvals[c]
            if 0 <= i < ni and 0 <= j < nj and 0 <= k < nk:
                out[k, j, i] += area * length * (t_exit - t_prev) / voxel_volume
            t_prev = t_exit


@numba.njit(cache=True)
def _traverse(a: np.ndarray, b: np.ndarray, cells: np.ndarray, tvals: np.ndarray) -> int:
    """Voxels (k, j, i) the line from index point a to b passes through, in order.

    Amanatides–Woo traversal; voxel v covers [v − ½, v + ½) on each axis, so consecutive cells
    share a face. Writes the parameter t where the line leaves each cell; returns the count.
    """
    v = np.empty(3, dtype=np.int64)
    step = np.empty(3, dtype=np.int64)
    tmax = np.empty(3)
    tdelta = np.empty(3)
    for ax in range(3):
        v[ax] = int(np.floor(a[ax] + 0.5))
        d = b[ax] - a[ax]
        if d > 0.0:
            step[ax] = 1
            tmax[ax] = (v[ax] + 0.5 - a[ax]) / d
            tdelta[ax] = 1.0 / d
        elif d < 0.0:
            step[ax] = -1
            tmax[ax] = (v[ax] - 0.5 - a[ax]) / d
            tdelta[ax] = -1.0 / d
        else:
            step[ax] = 0
            tmax[ax] = np.inf
            tdelta[ax] = np.inf
    count = 0
    while count < cells.shape[0]:
        ax = 0
        if tmax[1] < tmax[ax]:
            ax = 1
        if tmax[2] < tmax[ax]:
            ax = 2
        cells[count, 0] = v[2]
        cells[count, 1] = v[1]
        cells[count, 2] = v[0]
        tvals[count] = min(tmax[ax], 1.0)
        count += 1
        if tmax[ax] > 1.0:
            break
        v[ax] += step[ax]
        tmax[ax] += tdelta[ax]
    return count
