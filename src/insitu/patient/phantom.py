"""The built-in phantom: a seeded, procedural upper abdomen with liver, vessels and tumours.

World frame: LPS millimetres (x → patient left, y → posterior, z → superior), grid centred on
(0, 0, 0). Organs are implicit shapes (ellipsoids, tubes, offset ellipses); the intrahepatic portal
vein, hepatic artery and hepatic veins are grown by constrained constructive optimization inside the
liver and kept as graphs. The artery grows last, around the veins and with terminals dense where the
tissue's arterial perfusion is high (tumours), and its radii are balanced to carry the hepatic-artery
flow; only its branches of at least half a voxel are drawn into the label map. Sizes, contrast values
and the arterial inflow with their sources live in ``phantom.yaml``; tissue CT numbers and perfusion
come from the tissue library.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import interpolate, ndimage

from insitu.errors import InsituError, StructureError
from insitu.geometry import distance_to_segment, segment_segment_distance, unit
from insitu.grid import Grid, isotropic_grid
from insitu.patient.patient import Patient
from insitu.patient.structure import Role, Structure
from insitu.patient.terminology import code_for
from insitu.progress import Progress, ensure_progress

_DATA = Path(__file__).with_name("phantom.yaml")

DEFAULT_EXTENT_MM = (300.0, 220.0, 200.0)
COUINAUD_NAMES = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII"}
_ROMAN = {v: k for k, v in COUINAUD_NAMES.items()}
# Veins > 5 mm left viable perivascular tissue after RFA in 7/7 cases, > 3 mm in about half (Lu et al.
# 2002, AJR 178:47; thermal.md §4.1). Branches of at least this diameter are kept out of phantom
# tumours, and "near a vessel" is measured to them; smaller branches may run into a tumour.
MAJOR_VESSEL_DIAMETER_MM = 5.0
_TREE_KINDS = {"portal_vein": "portal_vein", "hepatic_artery": "hepatic_artery", "hepatic_veins": "hepatic_vein"}
_ARTERY_STREAM = 0xA27E  # second seed word of the planning-scale artery (a stream of its own)


@cache
def phantom_data() -> dict[str, Any]:
    """The phantom's anatomical and contrast numbers with their sources."""
    return yaml.safe_load(_DATA.read_text(encoding="utf-8"))


@cache
def vessel_calibres() -> dict[str, float]:
    """Root radii of the phantom's vessels (mm), from ``vascular/anatomy.yaml`` with their sources."""
    from insitu.vascular.generate import load_anatomy

    return {key: float(entry["value"]) for key, entry in load_anatomy()["phantom_defaults"].items()}


# ---------------------------------------------------------------------- specifications
@dataclass(frozen=True)
class TumorSpec:
    """A tumour to place: size, where (Couinaud segment or explicit centre) and kind."""

    diameter_mm: float = 30.0
    segment: int | str | None = 8
    center_mm: tuple[float, float, float] | None = None
    kind: str = "hcc"  # "hcc" (hypervascular) or "metastasis" (hypovascular)
    lobulation: float = 0.12  # relative radial amplitude of the lobules (0 = sphere)
    near_vessel: str | None = None  # "portal_vein", "hepatic_veins" or "hepatic_artery"
    vessel_distance_mm: float | None = None  # gap between tumour surface and that vessel

    def __post_init__(self) -> None:
        if not (np.isfinite(self.diameter_mm) and 5.0 <= self.diameter_mm <= 100.0):
            raise StructureError(
                f"tumour diameter {self.diameter_mm} mm is outside 5–100 mm",
                "give --tumor-diameter-mm in that range",
            )
        if self.kind not in ("hcc", "metastasis"):
            raise StructureError(f"unknown tumour kind {self.kind!r}", "use 'hcc' or 'metastasis'")
        if self.segment is not None and self.center_mm is None:
            segment_number(self.segment)
        if (self.near_vessel is None) != (self.vessel_distance_mm is None):
            raise StructureError("near_vessel and vessel_distance_mm go together", "give both or neither")
        if self.near_vessel is not None and self.near_vessel not in (
            "portal_vein",
            "hepatic_veins",
            "hepatic_artery",
        ):
            raise StructureError(
                f"unknown vessel {self.near_vessel!r}",
                "use portal_vein, hepatic_veins or hepatic_artery",
            )
        if not 0.0 <= self.lobulation <= 0.4:
            raise StructureError(f"lobulation {self.lobulation} is outside 0–0.4", "give a value in that range")


def segment_number(segment: int | str) -> int:
    """Couinaud segment as 1…8 from an int or a Roman numeral ("VIII", "8")."""
    text = str(segment).strip().upper()
    if text in _ROMAN:
        return _ROMAN[text]
    if text.isdigit() and 1 <= int(text) <= 8:
        return int(text)
    raise StructureError(f"unknown Couinaud segment {segment!r}", "give 1–8 or I–VIII")


@dataclass(frozen=True)
class PhantomSpec:
    """Everything that defines a phantom; the same spec and seed give the same phantom."""

    spacing_mm: float = 1.0
    extent_mm: tuple[float, float, float] = DEFAULT_EXTENT_MM
    tumors: tuple[TumorSpec, ...] = (TumorSpec(),)
    seed: int = 0
    lymph_nodes: int = 2
    metastatic_nodes: bool = False
    terminal_radius_voxels: float = 0.75  # vessel trees taper to this radius (in voxels)
    max_terminals_per_tree: int = 1200
    noise: bool = True
    arterial_terminals: int = 4000  # hepatic-artery terminals (arterioles well below the voxel size)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.spacing_mm) and 0.4 <= self.spacing_mm <= 4.0):
            raise StructureError(
                f"phantom spacing {self.spacing_mm} mm is outside 0.4–4 mm",
                "give --spacing-mm in that range",
            )
        if not 0 <= self.lymph_nodes <= 4:
            raise StructureError(f"{self.lymph_nodes} lymph nodes requested", "give 0–4")
        if len(self.tumors) > 6:
            raise StructureError(f"{len(self.tumors)} tumours requested", "give at most 6")
        if not 8 <= self.arterial_terminals <= 20000:
            raise StructureError(f"{self.arterial_terminals} arterial terminals requested", "give 8–20000")


# ---------------------------------------------------------------------- small shape helpers
class _Space:
    """Broadcastable LPS coordinates of an axis-aligned grid (float32)."""

    def __init__(self, grid: Grid) -> None:
        z, y, x = grid.axis_coordinates_mm()
        self.grid = grid
        self.x = x.astype(np.float32)[None, None, :]
        self.y = y.astype(np.float32)[None, :, None]
        self.z = z.astype(np.float32)[:, None, None]

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice]:
        """Array slices (k, j, i) covering the LPS box [lo, hi] (clipped)."""
        lo_ijk = np.floor(self.grid.world_to_index(lo)).astype(int)
        hi_ijk = np.ceil(self.grid.world_to_index(hi)).astype(int) + 1
        sl = []
        for axis, n in zip((2, 1, 0), self.grid.shape, strict=True):
            a, b = max(0, lo_ijk[axis]), min(n, hi_ijk[axis])
            sl.append(slice(a, max(a, b)))
        return tuple(sl)  # type: ignore[return-value]

    def sub(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.x[:, :, sl[2]], self.y[:, sl[1], :], self.z[sl[0], :, :]


def _ellipsoid(space: _Space, center, semi_axes, rotation: np.ndarray | None = None) -> np.ndarray:
    """Boolean ellipsoid; ``rotation`` columns are the ellipsoid's axes in LPS."""
    c = np.asarray(center, np.float32)
    s = np.asarray(semi_axes, np.float32)
    reach = float(s.max())
    sl = space.box(c - reach, c + reach)
    x, y, z = space.sub(sl)
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    r = np.eye(3, dtype=np.float32) if rotation is None else np.asarray(rotation, np.float32)
    u = (dx * r[0, 0] + dy * r[1, 0] + dz * r[2, 0]) / s[0]
    v = (dx * r[0, 1] + dy * r[1, 1] + dz * r[2, 1]) / s[1]
    w = (dx * r[0, 2] + dy * r[1, 2] + dz * r[2, 2]) / s[2]
    out = np.zeros(space.grid.shape, dtype=bool)
    out[sl] = u * u + v * v + w * w <= 1.0
    return out


def _tube(space: _Space, points_mm: np.ndarray, radius_mm: float | np.ndarray, samples: int = 0) -> np.ndarray:
    """Boolean tube around a polyline (optionally smoothed to ``samples`` points by a spline)."""
    from insitu.vascular.tree import VesselTree

    pts = np.asarray(points_mm, dtype=float)
    if samples and len(pts) >= 3:
        tck, _ = interpolate.splprep(pts.T, s=0, k=min(3, len(pts) - 1))
        pts = np.stack(interpolate.splev(np.linspace(0, 1, samples), tck), axis=1)
    radii = np.array(np.broadcast_to(np.asarray(radius_mm, dtype=float), (len(pts),)))
    chain = VesselTree(points_mm=pts, parent=np.arange(-1, len(pts) - 1), radius_mm=radii, name="tube")
    return chain.rasterize(space.grid)


def _shell_param(space: _Space, semi: tuple[float, float], inset_mm: float) -> np.ndarray:
    """Inside the body ellipse shrunk by ``inset_mm`` (2-D, broadcast over z)."""
    a, b = semi[0] - inset_mm, semi[1] - inset_mm
    return (space.x / a) ** 2 + (space.y / b) ** 2 <= 1.0


def _diaphragm_height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height (mm) of the diaphragm's abdominal surface: right dome higher than left, lower posteriorly."""
    right = 72.0 - 60.0 * ((x + 60.0) / 90.0) ** 2 - 50.0 * ((y + 5.0) / 85.0) ** 2
    left = 60.0 - 60.0 * ((x - 60.0) / 90.0) ** 2 - 50.0 * ((y + 5.0) / 85.0) ** 2
    tendon = 50.0 - 40.0 * ((y + 10.0) / 85.0) ** 2
    return np.maximum(np.maximum(right, left), np.where(np.abs(x) < 45.0, tendon, -1e3)).astype(np.float32)


# ---------------------------------------------------------------------- the builder
@dataclass
class _Build:
    spec: PhantomSpec
    grid: Grid
    space: _Space
    rng: np.random.Generator
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


# label, name, role, tissue, code concept, colour
_LAYOUT: list[tuple[int, str, Role, str, str | None, tuple[int, int, int]]] = [
    (1, "skin", Role.OAR, "skin", "skin", (230, 190, 160)),
    (2, "subcutaneous_fat", Role.ORGAN, "fat", "adipose_tissue", (240, 220, 120)),
    (3, "muscle", Role.ORGAN, "muscle", "abdominal_wall_muscle", (190, 80, 70)),
    (4, "visceral_fat", Role.ORGAN, "fat", "adipose_tissue", (250, 235, 160)),
    (5, "ribs", Role.OBSTACLE, "bone_cortical", "rib", (245, 245, 235)),
    (6, "costal_cartilage", Role.OBSTACLE, "cartilage", "costal_cartilage", (180, 220, 230)),
    (7, "spine", Role.OBSTACLE, "bone_cancellous", "vertebral_body", (235, 235, 220)),
    (8, "spinal_canal", Role.OBSTACLE, "water", None, (120, 140, 200)),
    (9, "lungs", Role.OBSTACLE, "lung_inflated", "lung", (150, 200, 255)),
    (10, "diaphragm", Role.OAR, "muscle", "diaphragm", (200, 100, 100)),
    (11, "heart", Role.OAR, "heart", "heart", (200, 40, 60)),
    (12, "liver", Role.ORGAN, "liver", "liver", (170, 90, 60)),
    (13, "gallbladder", Role.OAR, "gallbladder_bile", "gallbladder", (110, 180, 60)),
    (14, "stomach", Role.OAR, "stomach", "stomach", (220, 150, 170)),
    (15, "stomach_gas", Role.OBSTACLE, "air", "gas", (40, 40, 40)),
    (16, "colon", Role.OAR, "bowel_wall", "colon", (200, 160, 110)),
    (17, "bowel_gas", Role.OBSTACLE, "air", "gas", (30, 30, 30)),
    (18, "kidney_right", Role.OAR, "kidney", "kidney", (180, 60, 140)),
    (19, "aorta", Role.VESSEL, "blood", "abdominal_aorta", (230, 30, 30)),
    (20, "ivc", Role.VESSEL, "blood", "inferior_vena_cava", (60, 60, 200)),
    (21, "portal_vein", Role.VESSEL, "blood", "portal_vein", (120, 60, 200)),
    (22, "hepatic_artery", Role.VESSEL, "blood", "hepatic_artery", (255, 80, 80)),
    (23, "hepatic_veins", Role.VESSEL, "blood", "hepatic_vein", (70, 130, 230)),
]
_NODE_LABEL0 = 30
_TUMOR_LABEL0 = 40

# Centre line of the IVC and aorta in the axial plane (mm, LPS) and the spine.
_IVC_XY = (-24.0, 14.0)
_AORTA_XY = (24.0, 22.0)
_SPINE_XY = (0.0, 52.0)


def make_phantom(spec: PhantomSpec | None = None, progress: Progress | None = None) -> Patient:
    """Build the phantom patient described by ``spec`` (default: 1 mm, one 3 cm HCC in segment VIII)."""
    spec = spec or PhantomSpec()
    report = ensure_progress(progress)
    t0 = time.perf_counter()
    grid = isotropic_grid(spec.extent_mm, spec.spacing_mm)
    build = _Build(spec=spec, grid=grid, space=_Space(grid), rng=np.random.default_rng(spec.seed))
    steps = [
        ("body wall", _body_wall),
        ("skeleton", _skeleton),
        ("thorax", _thorax),
        ("liver", _liver),
        ("abdominal organs", _abdominal_organs),
        ("great vessels", _great_vessels),
        ("vessel trees", _vessel_trees),
        ("couinaud segments", _couinaud),
        ("tumours", _tumours),
        ("hepatic artery", _hepatic_artery),
        ("lymph nodes", _lymph_nodes),
    ]
    for index, (stage, function) in enumerate(steps):
        report("phantom", index / (len(steps) + 1), stage)
        function(build)
    report("phantom", len(steps) / (len(steps) + 1), "synthetic CT")
    patient = _assemble(build)
    patient.image = _synthetic_ct(build, patient)
    patient.metadata["build_seconds"] = round(time.perf_counter() - t0, 2)
    report("phantom", 1.0, "done")
    return patient


def _body_wall(b: _Build) -> None:
    semi = tuple(phantom_data()["anatomy"]["body_semi_axes_mm"]["value"])
    fat_mm = phantom_data()["anatomy"]["subcutaneous_fat_mm"]["value"]
    skin_mm = phantom_data()["anatomy"]["skin_thickness_mm"]["value"]
    muscle_mm = phantom_data()["anatomy"]["abdominal_wall_muscle_mm"]["value"]
    shape = b.grid.shape
    body = np.broadcast_to(_shell_param(b.space, semi, 0.0), shape)
    inner_skin = np.broadcast_to(_shell_param(b.space, semi, skin_mm), shape)
    inner_fat = np.broadcast_to(_shell_param(b.space, semi, skin_mm + fat_mm), shape)
    cavity = np.broadcast_to(_shell_param(b.space, semi, skin_mm + fat_mm + muscle_mm), shape)
    b.masks["body"] = body.copy()
    b.masks["skin"] = body & ~inner_skin
    b.masks["subcutaneous_fat"] = inner_skin & ~inner_fat
    muscle = inner_fat & ~cavity
    # paraspinal muscles behind the spine
    for side in (-1.0, 1.0):
        muscle |= (
            np.broadcast_to(
                ((b.space.x - side * 34.0) / 26.0) ** 2 + ((b.space.y - 74.0) / 17.0) ** 2 <= 1.0,
                shape,
            )
            & body
        )
    b.masks["muscle"] = muscle & inner_fat
    b.masks["cavity"] = cavity.copy()
    b.info["body_semi_axes_mm"] = semi
    b.info["wall_mm"] = skin_mm + fat_mm + muscle_mm


def _skeleton(b: _Build) -> None:
    s = b.space
    shape = b.grid.shape
    semi = b.info["body_semi_axes_mm"]
    wall = b.info["wall_mm"]
    # ribs: bands in the inner wall, sloping down towards the front; lower ribs end laterally
    a_out, b_out = semi[0] - wall + 6.0, semi[1] - wall + 6.0
    a_in, b_in = semi[0] - wall - 3.0, semi[1] - wall - 3.0
    ring = (((s.x / a_out) ** 2 + (s.y / b_out) ** 2) <= 1.0) & (((s.x / a_in) ** 2 + (s.y / b_in) ** 2) > 1.0)
    theta = np.arctan2(s.y / b_out, s.x / a_out)  # +pi/2 posterior, -pi/2 anterior
    from_back = np.abs(theta - np.pi / 2.0)  # 0 at the spine, pi at the front midline
    from_back = np.where(from_back > np.pi, 2 * np.pi - from_back, from_back).astype(np.float32)
    ribs = np.zeros(shape, dtype=bool)
    cartilage = np.zeros(shape, dtype=bool)
    for n in range(8):
        z_back = 120.0 - 24.0 * n
        z_rib = z_back - 55.0 * (from_back / np.pi) ** 1.5
        band = np.abs(s.z - z_rib) <= 5.0
        bone_end = np.pi * (0.62 - 0.03 * n)
        cart_end = np.pi * (0.93 - 0.07 * n) if n < 6 else bone_end
        ribs |= ring & band & (from_back >= 0.12) & (from_back <= bone_end)
        cartilage |= ring & band & (from_back > bone_end) & (from_back <= cart_end)
    b.masks["ribs"] = ribs
    b.masks["costal_cartilage"] = cartilage & ~ribs
    # spine: vertebral bodies with discs, neural arch around the canal
    sx, sy = _SPINE_XY
    body = ((s.x - sx) / 19.0) ** 2 + ((s.y - sy) / 17.0) ** 2 <= 1.0
    canal = ((s.x - sx) / 9.0) ** 2 + ((s.y - sy - 26.0) / 8.0) ** 2 <= 1.0
    arch = (((s.x - sx) / 15.0) ** 2 + ((s.y - sy - 26.0) / 14.0) ** 2 <= 1.0) & ~canal
    spinous = (np.abs(s.x - sx) <= 4.0) & (s.y > sy + 36.0) & (s.y < sy + 52.0)
    disc = (np.mod(s.z + 100.0, 32.0) < 7.0) & body
    b.masks["spine"] = np.broadcast_to((body & ~disc) | arch | spinous, shape) & b.masks["body"]
    b.masks["spinal_canal"] = np.broadcast_to(canal, shape).copy()
    b.masks["spine_discs"] = np.broadcast_to(disc, shape).copy()


def _thorax(b: _Build) -> None:
    s = b.space
    shape = b.grid.shape
    zd = _diaphragm_height(s.x, s.y)
    cavity = b.masks["cavity"]
    above = np.broadcast_to(s.z > zd + 4.0, shape)
    diaphragm = np.broadcast_to((s.z > zd) & (s.z <= zd + 4.0), shape) & cavity
    heart = _ellipsoid(s, (22.0, -18.0, 112.0), (62.0, 48.0, 56.0)) & above & cavity
    mediastinum = np.broadcast_to((np.abs(s.x - 5.0) < 22.0) & (s.y > -10.0) & (s.y < 36.0), shape) & above & cavity
    lungs = above & cavity & ~heart & ~mediastinum
    b.masks["diaphragm"] = diaphragm
    b.masks["heart"] = heart
    b.masks["lungs"] = lungs
    b.masks["mediastinum"] = mediastinum
    b.masks["abdomen"] = np.broadcast_to(s.z <= zd, shape) & cavity


def _smooth_min(a: np.ndarray, c: np.ndarray, k: float) -> np.ndarray:
    h = np.clip(0.5 + 0.5 * (c - a) / k, 0.0, 1.0)
    return c + (a - c) * h - k * h * (1.0 - h)


def _liver(b: _Build) -> None:
    s = b.space
    shape = b.grid.shape
    lo = np.array([-135.0, -95.0, -95.0])
    hi = np.array([95.0, 90.0, 100.0])
    sl = s.box(lo, hi)
    x, y, z = s.sub(sl)

    def field_of(c, semi):
        return np.sqrt(((x - c[0]) / semi[0]) ** 2 + ((y - c[1]) / semi[1]) ** 2 + ((z - c[2]) / semi[2]) ** 2) - 1.0

    right = field_of((-64.0, 6.0, 10.0), (72.0, 84.0, 74.0))
    left = field_of((26.0, -28.0, 30.0), (74.0, 46.0, 31.0))
    liver_field = _smooth_min(right, left, 0.25)
    inside = liver_field <= 0.0
    zd = _diaphragm_height(x, y)
    inside &= z <= zd
    # inferior (visceral) border: slopes up from the right flank to the left lobe, lower at the back
    z_inferior = -92.0 + 0.42 * (x + 115.0) - 0.12 * y
    inside &= z >= z_inferior
    liver = np.zeros(shape, dtype=bool)
    liver[sl] = inside
    liver &= b.masks["abdomen"]
    liver &= ~b.masks["spine"] & ~b.masks["muscle"]
    # gallbladder in its fossa on the inferior surface (Cantlie's line), neck towards the hilum
    neck = np.array([-22.0, -12.0, -20.0])
    fundus = np.array([-38.0, -62.0, -42.0])
    axis = unit(fundus - neck)
    u_axis = unit(np.cross(axis, [0.0, 0.0, 1.0]))
    rot = np.stack([axis, u_axis, np.cross(axis, u_axis)], axis=1)
    gallbladder = _ellipsoid(s, 0.5 * (neck + fundus), (34.0, 15.0, 14.0), rot)
    liver &= ~ndimage.binary_dilation(gallbladder, iterations=1)
    b.masks["gallbladder"] = gallbladder & b.masks["abdomen"]
    b.masks["liver"] = liver


def _abdominal_organs(b: _Build) -> None:
    s = b.space
    abdomen = b.masks["abdomen"]
    occupied = ndimage.binary_dilation(b.masks["liver"] | b.masks["gallbladder"], iterations=2)
    # right kidney: tilted ellipsoid behind the inferior right lobe
    tilt = np.deg2rad(15.0)
    rot = np.array([[np.cos(tilt), 0.0, np.sin(tilt)], [0.0, 1.0, 0.0], [-np.sin(tilt), 0.0, np.cos(tilt)]])
    kidney = _ellipsoid(s, (-74.0, 50.0, -62.0), (27.0, 24.0, 54.0), rot) & abdomen
    b.masks["kidney_right"] = kidney
    b.masks["liver"] &= ~ndimage.binary_dilation(kidney, iterations=2)
    occupied |= ndimage.binary_dilation(kidney, iterations=2)
    # stomach: fundus/body under the left dome plus the antrum running to the pylorus
    body = _ellipsoid(s, (68.0, 0.0, 5.0), (34.0, 40.0, 52.0))
    antrum = _tube(
        s,
        np.array([[60.0, -25.0, -25.0], [35.0, -48.0, -40.0], [5.0, -45.0, -38.0], [-12.0, -30.0, -30.0]]),
        18.0,
        samples=24,
    )
    stomach = (body | antrum) & abdomen & ~occupied
    # supine patient: gas collects in the non-dependent (most anterior) part of the lumen
    lumen = ndimage.binary_erosion(stomach, iterations=max(1, round(4.0 / b.grid.spacing_mm[1])))  # 4 mm wall
    lumen_y = np.broadcast_to(s.y, stomach.shape)[lumen]
    gas = lumen & (s.y <= np.percentile(lumen_y, 12.0)) if lumen_y.size else lumen
    b.masks["stomach"] = stomach & ~gas
    b.masks["stomach_gas"] = gas
    occupied |= stomach
    # colon: ascending colon, hepatic flexure under the right lobe, transverse colon in front
    radius = phantom_data()["anatomy"]["colon_diameter_mm"]["value"] / 2.0
    path = np.array(
        [
            [-98, 14, -110],
            [-98, 4, -70],
            [-88, -22, -50],
            [-55, -52, -62],
            [0, -62, -72],
            [60, -55, -62],
            [96, -10, -70],
            [100, 10, -110],
        ],
        dtype=float,
    )
    colon = _tube(s, path, radius, samples=60) & abdomen & ~occupied
    lumen = ndimage.binary_erosion(colon, iterations=3)
    gas = lumen & (s.y < -35.0)
    b.masks["colon"] = colon & ~gas
    b.masks["bowel_gas"] = gas


def _great_vessels(b: _Build) -> None:
    s = b.space
    z0, z1 = -110.0, 110.0
    aorta_r = phantom_data()["anatomy"]["aorta_diameter_mm"]["value"] / 2.0
    ivc_r = vessel_calibres()["ivc_radius_mm"]
    aorta = _tube(s, np.array([[*_AORTA_XY, z0], [*_AORTA_XY, z1]]), aorta_r)
    ivc = _tube(
        s,
        np.array([[*_IVC_XY, z0], [*_IVC_XY, 40.0], [_IVC_XY[0] + 6, _IVC_XY[1] - 12, z1]]),
        ivc_r,
        samples=20,
    )
    b.masks["aorta"] = aorta & b.masks["body"]
    b.masks["ivc"] = ivc & b.masks["body"] & ~b.masks["heart"]
    b.masks["liver"] &= ~ndimage.binary_dilation(ivc, iterations=2)


def _column_bottom(mask: np.ndarray, grid: Grid, x_mm: float, y_mm: float) -> float:
    """Lowest z (mm) of ``mask`` in the column through (x, y)."""
    i, j, _ = grid.world_to_voxel([x_mm, y_mm, 0.0])
    column = np.flatnonzero(mask[:, j, i])
    if column.size == 0:
        raise InsituError("phantom liver has no tissue at the hilum column", "report this as a bug")
    return float(grid.index_to_world([i, j, column[0]])[2])


def _vessel_trees(b: _Build) -> None:
    from insitu.vascular.generate import TreeSpec, generate_trees
    from insitu.vascular.tree import VesselKind

    s = b.space
    grid = b.grid
    liver = b.masks["liver"]
    spacing = b.spec.spacing_mm
    r_term = b.spec.terminal_radius_voxels * spacing

    def terminals(root_radius: float) -> int:
        return int(np.clip(round((root_radius / r_term) ** 3), 8, b.spec.max_terminals_per_tree))

    # hilum: the portal vein enters from below, the artery in front of it; roots sit in liver tissue
    # deep enough for their calibre (the nearest such voxel to the anatomical position)
    depth = ndimage.distance_transform_edt(liver, sampling=grid.spacing_kji_mm)
    trunks: list[tuple[np.ndarray, np.ndarray, float]] = []

    def deep_point(desired: np.ndarray, min_depth_mm: float, radius_mm: float = 0.0) -> np.ndarray:
        """The liver voxel nearest ``desired`` that is deep enough and clear of the trunks placed so far."""
        candidates = np.argwhere(depth >= min_depth_mm)
        world = grid.index_to_world(candidates[:, ::-1].astype(float))
        for a, c, r in trunks:
            world = world[distance_to_segment(world, a, c) > radius_mm + r + 0.5 * spacing + 1.5]
        if world.size == 0:
            raise InsituError("the phantom liver has no room for a vessel root", "use a finer --spacing-mm")
        return world[int(np.argmin(np.linalg.norm(world - desired, axis=1)))]

    hx, hy = -20.0, -2.0
    pv_root = deep_point(np.array([hx, hy, _column_bottom(liver, grid, hx, hy) + 8.0]), 4.0 + spacing)
    z_hilum = float(pv_root[2])
    calibre = vessel_calibres()
    pv_r = calibre["portal_vein_root_radius_mm"]
    ha_r = calibre["proper_hepatic_artery_root_radius_mm"]
    # hepatic veins leave the IVC at the top of the liver, fanning forwards
    ivc_top = np.array([_IVC_XY[0], _IVC_XY[1] - 10.0, 38.0])
    hv = {
        "right_hepatic_vein": (np.array([-0.95, -0.30, 0.10]), calibre["right_hepatic_vein_root_radius_mm"]),
        "middle_hepatic_vein": (np.array([-0.35, -0.94, -0.05]), calibre["middle_hepatic_vein_root_radius_mm"]),
        "left_hepatic_vein": (np.array([0.55, -0.83, -0.05]), calibre["left_hepatic_vein_root_radius_mm"]),
    }

    def first_target(root: np.ndarray, preferred: list, length_mm: float, radius_mm: float) -> np.ndarray:
        """The first preferred direction whose straight trunk stays in the liver, clear of earlier trunks.

        After the anatomical preferences, a fan of directions ordered by closeness to the first one
        (and shorter trunks) keeps coarse grids working.
        """
        fan = _fibonacci_sphere(96)
        fan = fan[np.argsort(-(fan @ unit(preferred[0])))]
        candidates = [(unit(d), length_mm) for d in preferred]
        candidates += [(d, length_mm) for d in fan] + [(d, 0.6 * length_mm) for d in fan]
        for direction, length in candidates:
            end = root + direction * length
            samples = np.linspace(root, end, int(length / (0.5 * spacing)) + 2)
            if not np.all(grid.contains_world(samples)):
                continue
            ijk = grid.world_to_voxel(samples)
            clear = all(
                segment_segment_distance(root, end, a, c) > radius_mm + r + 0.5 * spacing + 1.0 for a, c, r in trunks
            )
            if liver[ijk[:, 2], ijk[:, 1], ijk[:, 0]].all() and clear:
                trunks.append((root, end, radius_mm))
                return end
        raise InsituError(
            f"no trunk direction from {tuple(np.round(root, 1))} mm stays inside the phantom liver",
            "report this as a bug (phantom geometry)",
        )

    pv_first = first_target(pv_root, [(-25, 10, 22), (-30, 0, 20), (-20, 15, 15)], 35.0, pv_r)
    ha_desired = np.array([hx + 4.0, hy - 12.0, _column_bottom(liver, grid, hx + 4.0, hy - 12.0) + 6.0])
    ha_root = deep_point(ha_desired, 2.0 + spacing, ha_r)
    ha_first = first_target(ha_root, [(-20, 5, 20), (10, 0, 22), (0, -5, 25), (15, -10, 15), (-5, 10, 25)], 25.0, ha_r)
    specs = [
        TreeSpec(
            name="portal_vein",
            kind=VesselKind.PORTAL_VEIN,
            root_mm=tuple(pv_root),
            root_radius_mm=pv_r,
            n_terminals=terminals(pv_r),
            first_target_mm=tuple(pv_first),
        ),
    ]
    for name, (direction, radius) in hv.items():
        root = ivc_top + unit(direction) * 20.0
        target = first_target(
            root, [direction, direction + np.array([0, 0, -0.3]), direction + np.array([0, 0, 0.3])], 40.0, radius
        )
        specs.append(
            TreeSpec(
                name=name,
                kind=VesselKind.HEPATIC_VEIN,
                root_mm=tuple(root),
                root_radius_mm=radius,
                n_terminals=terminals(radius),
                first_target_mm=tuple(target),
            )
        )
    # a first, coarse hepatic artery grows with the veins so that they leave it room (and so the veins, and
    # the tumours placed among them, stay what they were before the planning-scale artery existed); the
    # artery of record grows after the tumours, which set its demand (``_hepatic_artery``)
    specs.insert(
        1,
        TreeSpec(
            name="hepatic_artery",
            kind=VesselKind.HEPATIC_ARTERY,
            root_mm=tuple(ha_root),
            root_radius_mm=ha_r,
            n_terminals=terminals(ha_r) * 4,
            first_target_mm=tuple(ha_first),
        ),
    )
    trees = generate_trees(liver, grid, specs, seed=int(b.rng.integers(2**31)), clearance_mm=0.5 * spacing)
    b.info["trees"] = {tree.name: tree for tree in trees}
    # its own seed stream, so growing it draws nothing from the phantom's generator (the lymph nodes stay put)
    artery_seed = int(np.random.default_rng([b.spec.seed, _ARTERY_STREAM]).integers(2**31))
    b.info["artery"] = {"root_mm": ha_root, "seed": artery_seed}
    # extrahepatic parts: portal trunk from the confluence, common hepatic artery from the coeliac trunk
    trunk = np.array([[8.0, 22.0, -88.0], [-4.0, 12.0, -60.0], [hx, hy, z_hilum - 6.0], pv_root])
    cha = np.array(
        [
            [_AORTA_XY[0], _AORTA_XY[1] - 12.0, -52.0],
            [10.0, -8.0, -50.0],
            [ha_root[0], ha_root[1], ha_root[2] - 10.0],
            ha_root,
        ]
    )
    pv_mask = trees[0].rasterize(grid) | (_tube(s, trunk, pv_r, samples=20) & ~liver)
    ha_mask = _tube(s, cha, calibre["hepatic_artery_root_radius_mm"], samples=20) & ~liver  # extrahepatic
    hv_mask = np.zeros(grid.shape, dtype=bool)
    for tree in trees[2:]:
        hv_mask |= tree.rasterize(grid)
        hv_mask |= _tube(s, np.array([ivc_top, tree.points_mm[0]]), float(tree.radius_mm[tree.children(0)[0]]))
    body = b.masks["body"]
    b.masks["portal_vein"] = pv_mask & body
    b.masks["hepatic_artery"] = ha_mask & body & ~pv_mask
    b.masks["hepatic_veins"] = hv_mask & body & ~pv_mask & ~ha_mask
    b.info["hilum_mm"] = pv_root


def _arterial_demand(b: _Build) -> np.ndarray:
    """Relative arterial terminal density: each tissue's arterial perfusion ω·f_arterial (tissue library).

    Liver parenchyma and each tumour kind (hcc hypervascular, metastasis less so); zero in the portal and
    hepatic-vein lumens, which are blood, not tissue.
    """
    from insitu.tissue.library import load_library

    library = load_library()

    def arterial_per_s(name: str) -> float:
        tissue = library.tissue(name)
        return tissue.perfusion_per_s * tissue.value("perfusion_arterial_fraction")

    demand = np.zeros(b.grid.shape, dtype=np.float64)
    demand[b.masks["liver"]] = arterial_per_s("liver")
    for n, tumor in enumerate(b.spec.tumors, start=1):
        demand[b.masks[f"tumor_{n}"]] = arterial_per_s("hcc" if tumor.kind == "hcc" else "liver_metastasis")
    demand[b.masks["portal_vein"] | b.masks["hepatic_veins"]] = 0.0
    return demand


def arterial_inflow_ml_min() -> float:
    """Proper hepatic artery flow of the phantom: Carlisle 1992 per-kg flow × the assumed body mass."""
    data = phantom_data()["hepatic_artery"]
    return float(data["flow_ml_min_kg"]["value"]) * float(data["body_mass_kg"]["value"])


def _hepatic_artery(b: _Build) -> None:
    """Grow the hepatic artery around the finished veins, dense where tissue needs arterial blood.

    ``arterial_terminals`` terminals with equal flow, drawn ∝ the arterial demand, so tumour supply
    follows the tissue library; radii balanced so the Carlisle inflow runs from the inlet to the
    terminals between the Karch pressures (rheology.yaml). Only branches at least half a voxel thick are
    drawn into the label map; the whole tree is kept.
    """
    from insitu.vascular.balance import balance_radii
    from insitu.vascular.generate import TreeSpec, generate_trees, prune_overlaps
    from insitu.vascular.tree import VesselKind

    grid = b.grid
    spacing = b.spec.spacing_mm
    trees = b.info["trees"]
    veins = [tree for name, tree in trees.items() if name != "hepatic_artery"]  # the coarse artery is replaced
    info = b.info["artery"]
    # the trunk runs where the coarse artery's did (root → its first branch point), which the veins grew around
    coarse = trees["hepatic_artery"]
    first_target = coarse.points_mm[int(coarse.children(0)[0])]
    spec = TreeSpec(
        name="hepatic_artery",
        kind=VesselKind.HEPATIC_ARTERY,
        root_mm=tuple(info["root_mm"]),
        root_radius_mm=vessel_calibres()["proper_hepatic_artery_root_radius_mm"],
        n_terminals=b.spec.arterial_terminals,
        first_target_mm=tuple(first_target),
    )
    (artery,) = generate_trees(
        b.masks["liver"],
        grid,
        [spec],
        seed=info["seed"],
        clearance_mm=0.5 * spacing,
        demand=_arterial_demand(b),
        obstacles=veins,
    )
    inflow = arterial_inflow_ml_min()
    for _ in range(5):  # balanced radii differ from the growth-time ones: prune what now touches a vein
        artery = balance_radii(artery, inlet_flow_ml_min=inflow)
        pruned = prune_overlaps(artery, veins, clearance_mm=0.0)
        if pruned is artery:
            break
        artery = pruned
    else:
        raise InsituError("the balanced hepatic artery keeps overlapping the veins", "report this as a bug")
    mask = artery.rasterize(grid, min_radius_mm=0.5 * spacing) & b.masks["body"] & ~b.masks["portal_vein"]
    b.masks["hepatic_artery"] = b.masks["hepatic_artery"] | mask
    b.masks["hepatic_veins"] &= ~mask
    order = ["portal_vein", "hepatic_artery"] + [name for name in trees if name != "portal_vein"]
    trees["hepatic_artery"] = artery
    b.info["trees"] = {name: trees[name] for name in order}


def _couinaud(b: _Build) -> None:
    """Couinaud segments: sectors around the IVC bounded by the hepatic-vein planes, split at the portal plane."""
    s = b.space
    idx = np.nonzero(b.masks["liver"])  # the organ: parenchyma, intrahepatic vessels and tumours
    x = s.x[0, 0, idx[2]]
    y = s.y[0, idx[1], 0]
    z = s.z[idx[0], 0, 0]
    cx, cy = _IVC_XY
    angle = np.degrees(np.arctan2(-(y - cy), -(x - cx)))  # 0° = patient right, +90° = anterior
    z_portal = float(b.info["hilum_mm"][2]) + 18.0
    upper = z > z_portal
    seg = np.zeros(x.shape, dtype=np.uint8)
    right_posterior = angle < 6.0  # beyond the right hepatic vein plane
    right_anterior = (angle >= 6.0) & (angle < 76.0)  # between right and middle hepatic veins
    left_medial = (angle >= 76.0) & (angle < 128.0)  # between middle vein and falciform / left vein
    left_lateral = angle >= 128.0
    upper_posterior = z > z_portal + 15.0  # the right posterior portal branch runs higher
    seg[right_posterior & upper_posterior] = 7
    seg[right_posterior & ~upper_posterior] = 6
    seg[right_anterior & upper] = 8
    seg[right_anterior & ~upper] = 5
    seg[left_medial] = 4
    superior_posterior = (z - 30.0) + 0.6 * (y + 28.0) > 2.5  # above the left portal vein's plane
    seg[left_lateral & superior_posterior] = 2
    seg[left_lateral & ~superior_posterior] = 3
    caudate = (np.hypot(x - cx, y - cy) < 34.0) & (x > cx - 6.0) & (y > cy - 30.0) & (z < z_portal + 28.0)
    seg[caudate] = 1
    labels = np.zeros(b.grid.shape, dtype=np.uint8)
    labels[idx] = seg
    b.masks["couinaud"] = labels


def _lobulated_radius(directions: np.ndarray, bumps: np.ndarray, weights: np.ndarray, amplitude: float) -> np.ndarray:
    """Relative radius 1 + amplitude·Σ w·bump(u·d) for unit ``directions`` (…, 3)."""
    cos = directions @ bumps.T
    return 1.0 + amplitude * np.sum(weights * np.exp((cos - 1.0) / 0.18), axis=-1) - amplitude * 0.5


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1.0 - 2.0 * i / n)
    theta = np.pi * (1.0 + 5.0**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)


def _tumours(b: _Build) -> None:
    s = b.space
    grid = b.grid
    envelope = b.masks["liver"]
    depth = ndimage.distance_transform_edt(envelope, sampling=grid.spacing_kji_mm).astype(np.float32)
    vessel_depth = {}
    placed: list[tuple[np.ndarray, float]] = []
    b.info["tumors"] = []
    for n, tumor in enumerate(b.spec.tumors, start=1):
        radius = tumor.diameter_mm / 2.0
        bumps = _fibonacci_sphere(7)
        bumps = bumps @ np.linalg.qr(b.rng.normal(size=(3, 3)))[0]
        weights = b.rng.uniform(0.4, 1.0, size=len(bumps))
        # scale so the lobulated volume equals the sphere of the requested diameter: V = ⅓∮ r³ dΩ
        dirs = _fibonacci_sphere(6000)
        rel = _lobulated_radius(dirs, bumps, weights, tumor.lobulation)
        scale = radius / float(np.mean(rel**3)) ** (1.0 / 3.0)
        reach = scale * float(rel.max())
        if tumor.center_mm is not None:
            center = np.asarray(tumor.center_mm, dtype=float)
            if not grid.contains_world(center) or not envelope[grid.world_to_kji(center)]:
                raise StructureError(
                    f"tumour {n} centre {tuple(center)} mm is not inside the phantom liver",
                    "give a centre inside the liver or a Couinaud segment",
                )
        else:
            center = _choose_centre(b, tumor, depth, reach, placed, vessel_depth)
        placed.append((center, reach))
        sl = s.box(center - reach - 1.0, center + reach + 1.0)
        x, y, z = s.sub(sl)
        d = np.stack(np.broadcast_arrays(x - center[0], y - center[1], z - center[2]), axis=-1).astype(np.float64)
        r = np.linalg.norm(d, axis=-1)
        u = d / np.maximum(r, 1e-9)[..., None]
        mask = np.zeros(grid.shape, dtype=bool)
        mask[sl] = r <= scale * _lobulated_radius(u, bumps, weights, tumor.lobulation)
        mask &= envelope
        b.masks[f"tumor_{n}"] = mask
        b.info["tumors"].append(
            {
                "name": f"tumor_{n}",
                "kind": tumor.kind,
                "diameter_mm": tumor.diameter_mm,
                "center_mm": [round(float(c), 2) for c in center],
                "segment": COUINAUD_NAMES.get(int(b.masks["couinaud"][grid.world_to_kji(center)]), "outside"),
                "near_vessel": tumor.near_vessel,
                "vessel_distance_mm": tumor.vessel_distance_mm,
            }
        )


def _choose_centre(b: _Build, tumor: TumorSpec, depth: np.ndarray, reach: float, placed, vessel_depth) -> np.ndarray:
    grid = b.grid
    ok = depth >= reach + 4.0
    if tumor.segment is not None:
        ok &= b.masks["couinaud"] == segment_number(tumor.segment)
    for center, other in placed:
        kji = np.array(grid.world_to_kji(center))
        lo = np.maximum(kji - int(np.ceil((reach + other + 4) / min(grid.spacing_mm))), 0)
        hi = kji + int(np.ceil((reach + other + 4) / min(grid.spacing_mm))) + 1
        ok[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = False
    # keep major vessels (≥ 5 mm, an assured heat sink) outside the tumour
    large = {name: _large_vessel_mask(b, name) for name in _TREE_KINDS}
    any_large = large["portal_vein"] | large["hepatic_artery"] | large["hepatic_veins"]
    ok &= ndimage.distance_transform_edt(~any_large, sampling=grid.spacing_kji_mm) >= reach + 1.0
    if tumor.near_vessel is not None:
        name = tumor.near_vessel
        if name not in vessel_depth:
            vessel_depth[name] = ndimage.distance_transform_edt(~large[name], sampling=grid.spacing_kji_mm)
        target = reach + float(tumor.vessel_distance_mm)
        gap = np.abs(vessel_depth[name] - target)
        ok_near = ok & (gap <= 0.6 * grid.spacing_mm[0] + 0.25)
        if not ok_near.any():
            raise StructureError(
                f"no place in segment {tumor.segment} puts a {tumor.diameter_mm:g} mm tumour "
                f"{tumor.vessel_distance_mm:g} mm from the {name.replace('_', ' ')} (branches ≥ 5 mm)",
                "choose another segment, a smaller tumour or another distance",
            )
        ok = ok_near
    candidates = np.argwhere(ok)
    if candidates.size == 0:
        raise StructureError(
            f"a {tumor.diameter_mm:g} mm tumour does not fit in Couinaud segment {tumor.segment}",
            "choose a smaller diameter or another segment",
        )
    # prefer deep positions, with seeded variety among the deepest candidates
    scores = depth[tuple(candidates.T)] + b.rng.uniform(0.0, 3.0, size=len(candidates))
    best = candidates[int(np.argmax(scores))]
    return grid.index_to_world(best[::-1].astype(float))


def _large_vessel_mask(b: _Build, name: str) -> np.ndarray:
    """Voxels of the named vessel's branches of at least the major-vessel diameter (trunks included)."""
    radius = MAJOR_VESSEL_DIAMETER_MM / 2.0
    mask = np.zeros(b.grid.shape, dtype=bool)
    for tree in b.info["trees"].values():
        if str(tree.kind) == _TREE_KINDS[name]:
            mask |= tree.rasterize(b.grid, min_radius_mm=radius)
    return mask | (b.masks[name] & ~b.masks["liver"])


def _lymph_nodes(b: _Build) -> None:
    s = b.space
    hilum = b.info["hilum_mm"]
    offsets = [(14.0, 6.0, -22.0), (-10.0, 10.0, -34.0), (22.0, -6.0, -40.0), (-4.0, 20.0, -48.0)]
    taken = np.zeros(b.grid.shape, dtype=bool)
    for name in (
        "portal_vein",
        "hepatic_artery",
        "ivc",
        "aorta",
        "liver",
        "kidney_right",
        "stomach",
        "colon",
        "gallbladder",
    ):
        taken |= b.masks[name]
    taken = ndimage.binary_dilation(taken, iterations=1)
    for n in range(b.spec.lymph_nodes):
        center = hilum + np.array(offsets[n])
        semi = (6.0 + b.rng.uniform(0, 2), 5.0 + b.rng.uniform(0, 2), 8.0 + b.rng.uniform(0, 3))
        if b.spec.metastatic_nodes:
            semi = tuple(1.7 * v for v in semi)
        node = _ellipsoid(s, center, semi) & b.masks["abdomen"] & ~taken
        b.masks[f"lymph_node_{n + 1}"] = node
        taken |= node


def _assemble(b: _Build) -> Patient:
    grid = b.grid
    label = np.zeros(grid.shape, dtype=np.uint8)
    m = b.masks
    # paint order: later wins
    m["muscle"] = m["muscle"] & ~m["spine"] & ~m["spinal_canal"]
    m["visceral_fat"] = m["cavity"] & ~m["lungs"] & ~m["heart"] & ~m["diaphragm"]
    m["spine"] = m["spine"] | (m["spine_discs"] & m["body"])
    paint = [
        "visceral_fat",
        "subcutaneous_fat",
        "muscle",
        "skin",
        "costal_cartilage",
        "ribs",
        "spine",
        "spinal_canal",
        "lungs",
        "diaphragm",
        "heart",
        "kidney_right",
        "colon",
        "bowel_gas",
        "stomach",
        "stomach_gas",
        "liver",
        "gallbladder",
        "aorta",
        "ivc",
        "portal_vein",
        "hepatic_artery",
        "hepatic_veins",
    ]
    by_name = {name: (value, role, tissue, concept, color) for value, name, role, tissue, concept, color in _LAYOUT}
    for name in paint:
        label[m[name]] = by_name[name][0]
    node_names = [k for k in m if k.startswith("lymph_node_")]
    for n, name in enumerate(node_names):
        label[m[name]] = _NODE_LABEL0 + n
    tumor_names = [k for k in m if k.startswith("tumor_") and k[6:].isdigit()]
    for n, name in enumerate(tumor_names):
        label[m[name] & (label != by_name["hepatic_veins"][0]) & (label != by_name["portal_vein"][0])] = (
            _TUMOR_LABEL0 + n
        )
    label[~m["body"]] = 0

    structures: dict[str, Structure] = {}
    for value, name, role, tissue, concept, color in _LAYOUT:
        structures[name] = Structure(
            name=name,
            role=role,
            mask=label == value,
            grid=grid,
            tissue=tissue,
            code=code_for(concept) if concept else None,
            label=value,
            color_rgb=color,
        )
    for n, name in enumerate(node_names):
        structures[name] = Structure(
            name=name,
            role=Role.TARGET if b.spec.metastatic_nodes else Role.OAR,
            mask=label == _NODE_LABEL0 + n,
            grid=grid,
            tissue="lymph_node",
            code=code_for("porta_hepatis_lymph_node"),
            label=_NODE_LABEL0 + n,
            color_rgb=(120, 200, 120),
        )
    for n, name in enumerate(tumor_names):
        kind = b.spec.tumors[n].kind
        structures[name] = Structure(
            name=name,
            role=Role.TARGET,
            mask=label == _TUMOR_LABEL0 + n,
            grid=grid,
            tissue="hcc" if kind == "hcc" else "liver_metastasis",
            code=code_for("hepatocellular_carcinoma" if kind == "hcc" else "metastatic_neoplasm"),
            label=_TUMOR_LABEL0 + n,
            color_rgb=(255, 220, 0),
        )
    couinaud = m["couinaud"].astype(np.uint8)
    metadata = {
        "source": "insitu built-in phantom",
        "seed": b.spec.seed,
        "spacing_mm": b.spec.spacing_mm,
        "contrast_phase": "late arterial",
        "tumors": b.info["tumors"],
        "hilum_mm": [round(float(v), 2) for v in b.info["hilum_mm"]],
        "liver_organ_ml": round(float(np.count_nonzero(couinaud)) * grid.voxel_volume_ml, 1),
    }
    return Patient(
        grid=grid,
        image=np.zeros(grid.shape, dtype=np.int16),
        structures=structures,
        trees=dict(b.info["trees"]),
        label_maps={"couinaud": (couinaud, {k: v for k, v in COUINAUD_NAMES.items()})},
        modality="CT",
        background_tissue="air",
        metadata=metadata,
    )


def ct_numbers(patient: Patient) -> dict[str, float]:
    """The HU each structure gets in the phantom CT: arterial-phase tissue value or vessel contrast."""
    from insitu.tissue.library import load_library

    library = load_library()
    arterial = library.property_table("ct_hu_arterial")
    contrast = phantom_data()["contrast_hu"]
    values = {}
    for name, structure in patient.structures.items():
        if name in contrast:
            values[name] = float(contrast[name]["value"])
        else:
            values[name] = float(arterial[library.index_of(structure.tissue)])
    return values


def _synthetic_ct(b: _Build, patient: Patient) -> np.ndarray:
    from insitu.tissue.library import load_library

    library = load_library()
    hu = np.full(
        b.grid.shape,
        float(library.property_table("ct_hu")[library.index_of("air")]),
        dtype=np.float32,
    )
    for name, value in ct_numbers(patient).items():
        hu[patient.structures[name].mask] = value
    hu = ndimage.gaussian_filter(hu, sigma=0.6 / b.spec.spacing_mm, truncate=2.5)  # scanner blur
    if b.spec.noise:
        sigma = float(phantom_data()["ct_noise_hu"]["value"])
        hu += np.random.default_rng(b.spec.seed + 1).standard_normal(hu.shape, dtype=np.float32) * sigma
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
