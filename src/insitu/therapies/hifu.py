"""``hifu``: high-intensity focused ultrasound — a sonication plan through an acoustic window, heated focus by focus.

A step names a catalog transducer (single bowl or phased array), a placement — the focus (``tip_mm``, LPS mm) and the
beam direction (``direction``: from the transducer towards the focus), or no direction for an automatic search over a
cone — and a protocol: acoustic power, sonication time per focus, cooling between sonications, and the foci (an
explicit list, or a lattice covering the target: lateral spacing across the beam, layer spacing along it).

**Acoustic window.** Before anything is heated, rays from the aperture to every focus are traced through the tissue
(geometric acoustics, area-weighted): bowel gas and aerated lung in the path reflect almost all of the beam and burn
at the interface, ribs absorb and overheat. Gas or lung in any ray, or ribs blocking more than ``max_rib_fraction``
of the aperture, forbid the plan (``window: forbid``, an :class:`AcousticWindowError` that says which obstacle, where
and how much) or are reported and simulated (``window: warn``). With no direction given, directions on a cone about
``search_axis`` (default: every direction) are tried and the clear one with the least rib blockage, then the least
attenuation on the way in, is taken; if none is clear the error says why each family of directions failed.

**Field and heating.** Every focus gets its field from :mod:`insitu.physics.acoustics` (Rayleigh → plane in the
coupling water → hybrid angular spectrum through the patient's tissue, nearest-voxel labels, gas outside the body
taken as the coupling water), scaled so the plane carries the protocol's acoustic power, and deposited as
q = α|p|²/(ρc) into the thermal grid (trilinear, power-conserving). A bowl is moved mechanically to each focus; a
phased array stays at the placement and steers electronically (within the device's ``max_steering_mm``). Foci are
sonicated deepest first (a fresh lesion does not shadow deeper foci; clinical practice, recalled), each for
``sonication_s`` then ``cooling_s`` of cooling, in one Pennes run (:mod:`insitu.therapies.thermal`); the lesion is the
plan's damage criterion. Reported: lesion volume and axes, target coverage, per-focus peak temperatures, peak
temperature on bone (ribs) and skin, the window summary.

**Coupling water.** The transducer couples through degassed water held at a set temperature (the device's
``coupling_water_temperature_c``, or the protocol's). The body surface under the water column in front of the
aperture — the aperture projected along the beam, from the bowl to the focus, at every position the bowl takes —
exchanges heat with that water through the film coefficient ``coupling_h_w_m2k`` (a Robin boundary:
the outside-air voxels of that column become an ambient medium at the water temperature); the rest of the body
surface keeps the thermal module's air film at body temperature. The skin starts the step at the state's temperature
(no pre-cooling before the first sonication).

Limits: linear (no harmonics yet — the field container has a slot per harmonic), one-way (reflections leave the
model), absorption = attenuation (acoustics.ABSORPTION_FRACTION), properties fixed during heating, no motion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np
import scipy.fft as sfft
from pydantic import BaseModel, ConfigDict, Field

from insitu.devices.catalog import Device, device_for
from insitu.errors import AcousticWindowError, CouplingError, DeviceRangeError, PlanError, ReachError, RegistryError
from insitu.grid import Grid
from insitu.physics import acoustics as ac
from insitu.physics.bioheat import RobinBoundary
from insitu.plan import Point3, Step
from insitu.simulation import StepContext, StepResult
from insitu.state import TissueState
from insitu.therapies.thermal import close_thermal_region, open_thermal_region, zone_level
from insitu.therapies.zone_geometry import zone_axes_mm

HIFU_THERAPY = "hifu"
BONE = ("bone_cortical", "bone_cancellous")
LUNG = ("lung_inflated",)
SKIN = ("skin",)
SOURCE_STANDOFF_MM = 2.0  # source plane this far in front of the rim (hifu_cases: O'Neil to 0.3 % at 2 mm)
BEAM_WAVELENGTHS = 0.5  # default lateral beam-grid spacing: λ/2 in water (no aliasing of any propagating angle)
POST_FOCAL_MM = 30.0  # the march continues this far beyond the deepest focus
RAY_RINGS, RAY_AZIMUTHS = 4, 16  # window rays: centre + rings × azimuths over the aperture (area-weighted)
RAY_STEP_MM = 1.0
SEARCH_DIRECTIONS = 600  # candidate directions on the whole sphere for the automatic search (≈ 8° apart)
FOCUS_PEAK_RADIUS_MM = 3.0  # a focus's peak temperature: the hottest voxel this close at the end of its sonication
ACTIVE_Q_FRACTION = 1e-3  # the thermal crop holds the voxels heated above this fraction of the first focus's peak
MAX_REGION_MARGIN_MM = 25.0  # thermal margin: 4 diffusion lengths of the whole plan, at most this (see _margin)


class HIFUProtocol(BaseModel):
    """Power, timing and foci of a HIFU sonication plan (units in the names)."""

    model_config = ConfigDict(extra="forbid")
    acoustic_power_w: float = Field(gt=0.0, le=2000.0, description="acoustic power radiated into the water")
    sonication_s: float = Field(gt=0.0, le=120.0, description="beam-on time per focus")
    cooling_s: float = Field(default=10.0, ge=0.0, le=600.0, description="beam off after each sonication")
    frequency_hz: float | None = Field(default=None, gt=0.0, description="default: the device's")
    foci_mm: list[Point3] | None = Field(default=None, description="explicit foci (LPS mm); default: a lattice")
    focus_spacing_mm: float = Field(default=5.0, ge=1.0, le=30.0, description="lattice spacing across the beam")
    layer_spacing_mm: float | None = Field(default=None, ge=1.0, le=40.0, description="along the beam (default 2×)")
    target: str | None = Field(default=None, description="structure the lattice covers (default: the plan's first)")
    window: Literal["forbid", "warn"] = Field(default="forbid", description="obstacles in the beam path")
    max_rib_fraction: float = Field(default=0.25, ge=0.0, le=1.0, description="aperture share ribs may block")
    search_axis: Point3 | None = Field(default=None, description="centre of the direction search cone (LPS)")
    search_cone_deg: float = Field(default=90.0, gt=0.0, le=180.0, description="half-angle of the search cone")
    beam_spacing_mm: float | None = Field(default=None, gt=0.05, le=3.0, description="lateral beam-grid spacing")
    region_margin_mm: float | None = Field(default=None, gt=0.0, le=200.0, description="thermal margin")
    max_foci: int = Field(default=400, ge=1, le=5000)
    coupling_water_temperature_c: float | None = Field(
        default=None, ge=0.0, le=45.0, description="coupling water temperature (default: the device's)"
    )


protocol_model = HIFUProtocol


# ------------------------------------------------------------------------------------------------ devices
def hifu_device(name: str | None) -> Device:
    """The HIFU transducer called ``name`` from the catalog (one-line errors otherwise)."""
    return device_for(name, HIFU_THERAPY, "HIFU", "focused ultrasound transducer")


def frequency_of(device: Device, protocol: HIFUProtocol) -> float:
    """The protocol's frequency (default: the device's), inside the device's range (DeviceRangeError)."""
    p = device.parameters
    frequency = float(protocol.frequency_hz or p["frequency_hz"])
    lo, hi = (float(v) for v in p["frequency_range_hz"])
    if not lo * (1 - 1e-9) <= frequency <= hi * (1 + 1e-9):
        raise DeviceRangeError(
            f"frequency {frequency / 1e6:g} MHz is outside {device.name!r}'s range {lo / 1e6:g}–{hi / 1e6:g} MHz",
            "give frequency_hz inside that range or choose another transducer",
        )
    return frequency


def check_protocol(device: Device, protocol: HIFUProtocol) -> None:
    """Frequency and power within the device's ratings (one-line errors)."""
    frequency_of(device, protocol)
    limit = float(device.parameters["max_acoustic_power_w"])
    if protocol.acoustic_power_w > limit:
        raise DeviceRangeError(
            f"acoustic power {protocol.acoustic_power_w:g} W is above {device.name!r}'s {limit:g} W",
            f"give acoustic_power_w ≤ {limit:g}",
        )


def check_step(step: Step) -> None:
    """Plan-time checks: a known HIFU transducer, a frequency and power it can give."""
    check_protocol(hifu_device(step.device), HIFUProtocol.model_validate(step.protocol))


@lru_cache(maxsize=8)
def transducer_of(name: str) -> ac.Transducer:
    """The acoustic model of a catalog transducer (mm in the catalog, metres here)."""
    p = hifu_device(name).parameters
    r = float(p["radius_of_curvature_mm"]) * 1e-3
    d = float(p["aperture_diameter_mm"]) * 1e-3
    hole = float(p.get("inner_diameter_mm", 0.0)) * 1e-3
    if p["layout"] == "phased":
        return ac.PhasedArray.spiral(int(p["elements"]), r, d, float(p["element_diameter_mm"]) * 1e-3, hole)
    if p["layout"] == "bowl":
        return ac.SphericalBowl(r, d, hole)
    raise PlanError(f"HIFU device {name!r} has layout {p['layout']!r}", "use 'bowl' or 'phased' in the catalog")


def reach_mm(device: Device) -> float:
    """Deepest focus below the skin: R − rim height − the minimum water path."""
    p = device.parameters
    r = float(p["radius_of_curvature_mm"])
    h = ac.bowl_depth_m(r, 0.5 * float(p["aperture_diameter_mm"]))
    return r - h - float(p.get("min_water_path_mm", 0.0))


# ------------------------------------------------------------------------------------------------ coupling water
def coupling_water(device: Device, protocol: HIFUProtocol | None = None) -> tuple[float, float]:
    """(temperature °C, skin–water film coefficient W/m²/K) of the device's coupling water; the protocol's
    ``coupling_water_temperature_c`` overrides the temperature. One-line errors for a catalog entry without them."""
    p = device.parameters
    values = []
    for key, lo, hi in (("coupling_water_temperature_c", 0.0, 45.0), ("coupling_h_w_m2k", 1.0, 1e5)):
        value = p.get(key)
        if value is None or not (lo <= float(value) <= hi):
            raise RegistryError(
                f"HIFU device {device.name!r} has no valid {key} (got {value!r})",
                f"give {key} between {lo:g} and {hi:g} in its catalog entry",
            )
        values.append(float(value))
    if protocol is not None and protocol.coupling_water_temperature_c is not None:
        values[0] = float(protocol.coupling_water_temperature_c)
    return values[0], values[1]


def coupling_robin(device: Device, water: np.ndarray, protocol: HIFUProtocol | None = None) -> RobinBoundary:
    """The Robin boundary of the coupling water: the voxels ``water`` (ambient medium, outside the body) held at the
    water temperature, every face between them and tissue convective with the device's film coefficient."""
    temperature_c, h = coupling_water(device, protocol)
    return RobinBoundary(h_w_m2k=h, ambient_c=temperature_c, mask=water)


def coupling_column(
    candidates: np.ndarray, grid: Grid, apexes_mm: np.ndarray, axis: np.ndarray, radius_mm: float, length_mm: float
) -> np.ndarray:
    """The ``candidates`` voxels (outside-body gas on ``grid``) inside the water column in front of the aperture: within
    ``radius_mm`` of the beam axis and 0–``length_mm`` along it from an apex (the bowl's position for each focus)."""
    out = np.zeros(candidates.shape, bool)
    where = np.argwhere(candidates)
    if where.size == 0:
        return out
    points = grid.index_to_world(where[:, ::-1].astype(float))
    inside = np.zeros(len(points), bool)
    for apex in np.unique(np.round(np.atleast_2d(apexes_mm), 6), axis=0):
        rel = points - apex
        t = rel @ axis
        radial = np.linalg.norm(rel - t[:, None] * axis, axis=1)
        inside |= (t >= 0.0) & (t <= length_mm) & (radial <= radius_mm)
    out[tuple(where[inside].T)] = True
    return out


def coupled_area_cm2(water: np.ndarray, tissue: np.ndarray, spacing_kji_mm) -> float:
    """Area of the body surface in contact with the coupling water: faces between ``water`` and ``tissue`` voxels."""
    dk, dj, di = (float(s) for s in spacing_kji_mm)
    area = 0.0
    for axis, face in enumerate((dj * di, dk * di, dk * dj)):
        a = np.swapaxes(water, 0, axis)
        b = np.swapaxes(tissue, 0, axis)
        area += face * (np.count_nonzero(a[:-1] & b[1:]) + np.count_nonzero(a[1:] & b[:-1]))
    return area * 1e-2


# ------------------------------------------------------------------------------------------------ media
def outside_gas(state: TissueState, context: StepContext) -> np.ndarray:
    """Gas outside the body: air voxels connected to the image border (where the coupling water is)."""
    from scipy import ndimage

    gas = state.tissue_index == context.library.index_of("air")
    regions, _ = ndimage.label(gas)
    border = np.unique(np.concatenate([regions[[0, -1]].ravel(), regions[:, [0, -1]].ravel(),
                                       regions[:, :, [0, -1]].ravel()]))  # fmt: skip
    return np.isin(regions, border[border > 0])


def acoustic_labels(state: TissueState, context: StepContext) -> np.ndarray:
    """The state's tissue index with the gas outside the body (air connected to the image border) made coupling
    water: the transducer sits in a water bath or bag; gas inside the body (bowel, stomach) stays gas."""
    labels = state.tissue_index.copy()
    labels[outside_gas(state, context)] = context.library.index_of("water")
    return labels


# ------------------------------------------------------------------------------------------------ window
@dataclass
class Window:
    """What rays from the aperture to one focus meet (area-weighted shares of the aperture) and the depth."""

    focus_mm: np.ndarray
    direction: np.ndarray
    gas: float = 0.0
    lung: float = 0.0
    bone: float = 0.0
    collision: float = 0.0  # aperture points inside the body: the transducer cannot be there
    depth_mm: float = math.nan  # focus below the skin along the axis (nan: never leaves the body in the image)
    attenuation_db: float = 0.0  # one-way, along the axis, at the frequency
    first_obstacle_mm: dict[str, np.ndarray] = field(default_factory=dict)

    def problems(self, reach: float, max_rib_fraction: float) -> list[str]:
        """Why this window is not clear (empty: clear)."""
        out = []
        if not math.isfinite(self.depth_mm):
            out.append("the beam axis stays inside the body to the image border: no water coupling path")
        elif self.depth_mm > reach:
            out.append(f"the focus is {self.depth_mm:.0f} mm below the skin, beyond the {reach:.0f} mm reach")
        if self.collision > 0:
            out.append(f"the transducer would intersect the body ({self.collision:.0%} of the aperture)")
        for name, share, limit in (("bowel/stomach gas", self.gas, 0.0), ("lung", self.lung, 0.0)):
            if share > limit:
                where = self.first_obstacle_mm.get(name)
                at = f" near {_mm(where)} mm" if where is not None else ""
                out.append(f"{name} is in {share:.0%} of the beam{at}")
        if self.bone > max_rib_fraction:
            where = self.first_obstacle_mm.get("ribs")
            at = f" near {_mm(where)} mm" if where is not None else ""
            out.append(f"ribs block {self.bone:.0%} of the aperture (limit {max_rib_fraction:.0%}){at}")
        return out


def _aperture_points(transducer: ac.Transducer) -> tuple[np.ndarray, np.ndarray]:
    """Points on the bowl (transducer frame, m) and their area weights: centre + rings × azimuths."""
    r = transducer.radius_of_curvature_m
    a_in = 0.5 * getattr(transducer, "inner_diameter_m", 0.0)
    a_out = transducer.aperture_radius_m
    edges = np.sqrt(np.linspace(a_in**2, a_out**2, RAY_RINGS + 1))
    rho = 0.5 * (edges[:-1] + edges[1:])
    phi = 2 * math.pi * (np.arange(RAY_AZIMUTHS) + 0.5) / RAY_AZIMUTHS
    rr, pp = np.meshgrid(rho, phi, indexing="ij")
    points = np.stack([rr * np.cos(pp), rr * np.sin(pp), r - np.sqrt(r**2 - rr**2)], axis=-1).reshape(-1, 3)
    weights = np.full(points.shape[0], 1.0 / points.shape[0])
    return points, weights


def trace_window(
    labels: np.ndarray, grid: Grid, context: StepContext, transducer: ac.Transducer, apex_mm: np.ndarray,
    focus_mm: np.ndarray, direction: np.ndarray, alpha_db_mm: np.ndarray | None = None,
) -> Window:  # fmt: skip
    """Trace area-weighted rays from the aperture (transducer at ``apex_mm``, axis ``direction``) to ``focus_mm``."""
    library = context.library
    water = library.index_of("water")
    air = library.index_of("air")
    ids = {
        "ribs": [library.index_of(n) for n in BONE if n in library],
        "lung": [library.index_of(n) for n in LUNG if n in library],
        "bowel/stomach gas": [air],
    }
    axis = direction / np.linalg.norm(direction)
    ex, ey = ac._perpendiculars(axis)
    points, weights = _aperture_points(transducer)
    starts = apex_mm + 1e3 * (points[:, :1] * ex + points[:, 1:2] * ey + points[:, 2:3] * axis)
    lengths = np.linalg.norm(focus_mm - starts, axis=1)
    n_steps = int(np.ceil(lengths.max() / RAY_STEP_MM)) + 1
    t = np.linspace(0.0, 1.0, n_steps)
    samples = starts[:, None, :] + t[None, :, None] * (focus_mm - starts)[:, None, :]  # (rays, steps, 3)
    voxel = grid.world_to_voxel(samples)
    inside = np.all((voxel >= 0) & (voxel < np.asarray(grid.shape[::-1])), axis=-1)
    clipped = np.clip(voxel, 0, np.asarray(grid.shape[::-1]) - 1)
    lab = np.where(inside, labels[clipped[..., 2], clipped[..., 1], clipped[..., 0]], water)
    window = Window(np.asarray(focus_mm, float), axis)
    window.collision = float(weights[lab[:, 0] != water].sum())
    for name, members in ids.items():
        hit = np.isin(lab, members)
        rays = hit.any(axis=1)
        share = float(weights[rays].sum())
        setattr(window, {"ribs": "bone", "lung": "lung", "bowel/stomach gas": "gas"}[name], share)
        if rays.any():
            first = np.argmax(hit[rays], axis=1)
            window.first_obstacle_mm[name] = samples[rays][np.arange(first.size), first].mean(axis=0)
    # the axis from the focus back towards the transducer: depth to the first coupling water
    span = float(np.linalg.norm(np.subtract(*grid.bounds_mm())))  # to the image border, whatever the focal length
    back = np.arange(0.0, span + 1e-9, 0.5 * min(grid.spacing_mm))
    line = focus_mm - back[:, None] * axis
    v = grid.world_to_voxel(line)
    ok = np.all((v >= 0) & (v < np.asarray(grid.shape[::-1])), axis=-1)
    cv = np.clip(v, 0, np.asarray(grid.shape[::-1]) - 1)
    lab_line = labels[cv[:, 2], cv[:, 1], cv[:, 0]]
    coupled = ok & (lab_line == water)
    if coupled.any():
        window.depth_mm = float(back[np.argmax(coupled)])
        if alpha_db_mm is not None:
            step = back[1] - back[0]
            window.attenuation_db = float(alpha_db_mm[lab_line[: np.argmax(coupled)]].sum() * step)
    else:
        window.depth_mm = math.nan  # left the image still inside the body
    return window


def _mm(point) -> str:
    """A point or vector for messages: (x, y, z) with one decimal."""
    return "(" + ", ".join(f"{float(v):.1f}" for v in np.ravel(point)) + ")"


def sphere_directions(n: int) -> np.ndarray:
    """n unit vectors spread evenly over the sphere (Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    r = np.sqrt(1.0 - z**2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def search_direction(
    labels, grid, context, device: Device, transducer, focus_mm, protocol: HIFUProtocol, alpha_db_mm
) -> tuple[np.ndarray, Window, dict[str, int]]:
    """The clear direction with the least rib blockage, then the least attenuation; AcousticWindowError naming why
    each direction failed when none is clear."""
    candidates = sphere_directions(SEARCH_DIRECTIONS)
    if protocol.search_axis is not None:
        centre = np.asarray(protocol.search_axis, float)
        centre /= np.linalg.norm(centre)
        candidates = candidates[candidates @ centre >= math.cos(math.radians(protocol.search_cone_deg))]
    reach = reach_mm(device)
    r_mm = 1e3 * transducer.radius_of_curvature_m
    best: tuple[float, float] | None = None
    chosen = None
    reasons: dict[str, int] = {}
    least_rib: Window | None = None
    for d in candidates:
        w = trace_window(labels, grid, context, transducer, focus_mm - r_mm * d, focus_mm, d, alpha_db_mm)
        problems = w.problems(reach, protocol.max_rib_fraction)
        if not problems:
            score = (w.bone, w.attenuation_db)
            if best is None or score < best:
                best, chosen = score, w
            continue
        for problem in problems:
            key = problem.split(" is in ")[0].split(" (")[0].split(" near ")[0]
            key = "ribs" if problem.startswith("ribs") else key
            key = "reach" if "reach" in problem else key
            reasons[key] = reasons.get(key, 0) + 1
        others = [p for p in problems if not p.startswith("ribs")]
        if not others and (least_rib is None or w.bone < least_rib.bone):
            least_rib = w
    if chosen is None:
        summary = ", ".join(f"{count} {why}" for why, count in sorted(reasons.items(), key=lambda kv: -kv[1]))
        hint = ""
        if least_rib is not None:
            hint = (f"; the least rib blockage is {least_rib.bone:.0%} from direction "
                    f"{_mm(least_rib.direction)}")  # fmt: skip
        raise AcousticWindowError(
            f"no acoustic window to the focus at {_mm(focus_mm)} mm among {len(candidates)} "
            f"directions ({summary}){hint}",
            "accept rib blockage (max_rib_fraction, window: warn), widen search_cone_deg, or treat another way",
        )
    return chosen.direction, chosen, reasons


# ------------------------------------------------------------------------------------------------ foci
def focus_lattice(
    target: np.ndarray, grid: Grid, centre_mm: np.ndarray, axis: np.ndarray, spacing_mm: float, layer_mm: float
) -> np.ndarray:
    """Lattice points (beam frame: spacing across, layer spacing along the axis, through ``centre_mm``) inside the
    target; deepest layers first (farthest from the transducer)."""
    ex, ey = ac._perpendiculars(axis)
    corners = grid.index_to_world(np.argwhere(target)[:, ::-1])
    rel = corners - centre_mm
    extent = np.abs(rel).max() + max(spacing_mm, layer_mm)
    nl = int(extent // spacing_mm) + 1
    na = int(extent // layer_mm) + 1
    u = np.arange(-nl, nl + 1) * spacing_mm
    w = np.arange(-na, na + 1) * layer_mm
    uu, vv, ww = np.meshgrid(u, u, w, indexing="ij")
    points = centre_mm + uu.reshape(-1, 1) * ex + vv.reshape(-1, 1) * ey + ww.reshape(-1, 1) * axis
    v = grid.world_to_voxel(points)
    ok = np.all((v >= 0) & (v < np.asarray(grid.shape[::-1])), axis=1)
    keep = np.zeros(len(points), bool)
    keep[ok] = target[v[ok, 2], v[ok, 1], v[ok, 0]]
    points = points[keep]
    if points.size == 0:
        return np.asarray(centre_mm, float)[None, :]
    depth = (points - centre_mm) @ axis
    return points[np.lexsort((np.arange(len(points)), -np.round(depth, 6)))]


def _target_mask(state: TissueState, context: StepContext, protocol: HIFUProtocol) -> tuple[str, np.ndarray]:
    names = [protocol.target] if protocol.target else context.plan.targets or [t.name for t in context.patient.targets]
    if not names:
        raise PlanError("a HIFU lattice needs a target", "name one in protocol.target or give foci_mm")
    return names[0], context.patient.structure(names[0]).mask


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class FieldEngine:
    """Source plane(s) and beam grid of one step: a field per focus, deposited into a heat array."""

    transducer: ac.Transducer
    frequency_hz: float
    tables: ac.MediumTables
    grid: Grid
    labels: np.ndarray
    water: int
    dx_m: float
    n: int
    z0_m: float
    plane: ac.SourcePlane
    power_w: float

    @classmethod
    def build(cls, transducer, frequency_hz, tables, grid, labels, water, spacing_mm, power_w) -> FieldEngine:
        c = float(tables.speed_m_s[water])
        wavelength = c / frequency_hz
        dx = spacing_mm * 1e-3 if spacing_mm else BEAM_WAVELENGTHS * wavelength
        z0 = transducer.depth_m + SOURCE_STANDOFF_MM * 1e-3
        if isinstance(transducer, ac.PhasedArray):  # elements tilt out of the cap: clear their rims too
            z0 += 0.5 * transducer.element_diameter_m
        span = 2.0 * transducer.aperture_radius_m + 10e-3
        n = sfft.next_fast_len(math.ceil(span / dx) + 2 * ac.ABSORBING_CELLS)
        plane = ac.source_plane(transducer, frequency_hz, c, z0, dx, n)
        return cls(transducer, frequency_hz, tables, grid, labels, water, dx, n, z0, plane, power_w)

    def field(self, apex_mm, axis, focus_local_m, depth_to_m: float, heat_out, offset_kji) -> ac.BeamField:
        """March the steered (or geometric) field through the patient, adding q (W/m³) into ``heat_out``."""
        weights = (
            self.transducer.focusing_weights(focus_local_m, self.frequency_hz, self.plane.sound_speed_m_s)
            if isinstance(self.transducer, ac.PhasedArray)
            else np.ones(self.transducer.n_channels)
        )
        p0 = self.plane.field(weights)
        c = float(self.tables.speed_m_s[self.water])
        rho = float(self.tables.density_kg_m3[self.water])
        unit_power = ac.plane_power_w(p0, self.dx_m, self.frequency_hz, c, rho)
        p0 *= np.complex64(math.sqrt(self.power_w / unit_power))
        n_planes = math.ceil((depth_to_m - self.z0_m) / self.dx_m) + 1
        placement = ac.BeamPlacement.along(apex_mm, axis, self.dx_m, self.dx_m, self.n, n_planes, self.z0_m)
        return ac.patient_field(p0, placement, self.frequency_hz, self.tables, self.grid, self.labels, self.water,
                                heat_out=heat_out, heat_offset_kji=offset_kji)  # fmt: skip


def _margin(protocol: HIFUProtocol, total_s: float, context: StepContext) -> float:
    """4 diffusion lengths of the whole plan (soft tissue κ ≈ 1.4e-7 m²/s), capped at MAX_REGION_MARGIN_MM: the
    sonications are short and spread; beyond the cap the rise is a fraction of a kelvin (its far tail)."""
    if protocol.region_margin_mm is not None:
        return protocol.region_margin_mm
    return min(MAX_REGION_MARGIN_MM, max(10.0, 4e3 * math.sqrt(1.4e-7 * total_s)))


def apply(state: TissueState, step: Step, context: StepContext) -> tuple[TissueState, StepResult]:
    """Check the window, sonicate every focus with cooling between, and report the lesion and the exposure."""
    protocol = HIFUProtocol.model_validate(step.protocol)
    device = hifu_device(step.device)
    check_protocol(device, protocol)
    frequency = frequency_of(device, protocol)
    transducer = transducer_of(device.name)
    library = context.library
    grid = state.grid
    report = context.progress
    label = f"step {step.label or step.therapy}"
    labels = acoustic_labels(state, context)
    water = library.index_of("water")
    tables = ac.MediumTables.from_library(library, frequency)
    alpha_db_mm = tables.attenuation_np_m / ac.NP_PER_DB * 1e-3

    # the focus (centre) and the direction
    placement = step.placement
    if placement.auto:
        _, mask = _target_mask(state, context, protocol)
        centre = grid.index_to_world(np.argwhere(mask)[:, ::-1].mean(axis=0))
    else:
        centre = np.asarray(placement.point_mm, float)
    if not bool(grid.contains_world(centre)):
        raise PlanError(f"{label}: the focus {_mm(centre)} mm lies outside the image", "move it")
    k, j, i = grid.world_to_kji(centre)
    if labels[k, j, i] == water:
        raise CouplingError(
            f"{label}: the focus {_mm(centre)} mm lies outside the body (coupling water)",
            "put the focus in tissue",
        )
    r_mm = 1e3 * transducer.radius_of_curvature_m
    reach = reach_mm(device)
    auto_direction = placement.auto or placement.direction is None
    if auto_direction:
        report("hifu", 0.0, "searching for an acoustic window")
        axis, _, _ = search_direction(labels, grid, context, device, transducer, centre, protocol, alpha_db_mm)
    else:
        axis = np.asarray(placement.direction, float)
        axis /= np.linalg.norm(axis)

    # the foci
    if protocol.foci_mm:
        foci = np.asarray(protocol.foci_mm, float)
        depth = (foci - centre) @ axis
        foci = foci[np.argsort(-depth, kind="stable")]
    else:
        _, mask = _target_mask(state, context, protocol)
        layer = protocol.layer_spacing_mm or 2.0 * protocol.focus_spacing_mm
        foci = focus_lattice(mask, grid, centre, axis, protocol.focus_spacing_mm, layer)
    if len(foci) > protocol.max_foci:
        raise PlanError(f"{label}: {len(foci)} foci exceed max_foci = {protocol.max_foci}", "widen the spacing")
    phased = isinstance(transducer, ac.PhasedArray)
    if phased:
        limit = float(device.parameters.get("max_steering_mm", 0.0))
        offsets = np.linalg.norm(foci - centre, axis=1)
        if offsets.max() > limit + 1e-6:
            far = foci[int(np.argmax(offsets))]
            raise ReachError(
                f"{label}: focus {_mm(far)} mm is {offsets.max():.1f} mm from the array's geometric "
                f"focus, beyond the ±{limit:g} mm it steers",
                "split the foci into steps placed within the steering range",
            )

    # the window, focus by focus
    windows = []
    warnings: list[str] = []
    for focus in foci:
        apex = (centre if phased else focus) - r_mm * axis
        w = trace_window(labels, grid, context, transducer, apex, focus, axis, alpha_db_mm)
        if not math.isfinite(w.depth_mm):
            raise CouplingError(
                f"{label}: along {_mm(axis)} the beam axis from the focus {_mm(focus)}"
                " mm stays inside the body up to the image border: no water coupling path can be modelled",
                "choose a beam direction that meets the skin inside the image",
            )
        if w.depth_mm > reach or w.collision > 0:
            raise ReachError(
                f"{label}: the focus {_mm(focus)} mm is {w.depth_mm:.0f} mm below the skin along the "
                f"beam; {device.name!r} reaches {reach:.0f} mm"
                + (f" (its aperture would intersect the body: {w.collision:.0%})" if w.collision > 0 else ""),
                "choose a shorter path (another direction) or a transducer with a longer focal length",
            )
        problems = w.problems(reach, protocol.max_rib_fraction)
        if problems:
            message = f"{label}: focus {_mm(focus)} mm: " + "; ".join(problems)
            if protocol.window == "forbid":
                raise AcousticWindowError(message, "choose another direction (or none, to search), or window: warn")
            warnings.append(message)
        windows.append(w)
    for message in warnings:
        report("hifu", 0.0, "warning: " + message)

    # the first field sets the thermal crop (where heat is deposited), then every focus runs on it
    engine = FieldEngine.build(transducer, frequency, tables, grid, labels, water, protocol.beam_spacing_mm,
                               protocol.acoustic_power_w)  # fmt: skip
    deepest = max(float((f - (centre if phased else f)) @ axis) for f in foci)
    depth_to_m = (r_mm + deepest + POST_FOCAL_MM) * 1e-3

    def geometry(focus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        apex = (centre if phased else focus) - r_mm * axis
        ex, ey = ac._perpendiculars(axis)
        rel = (focus - apex) * 1e-3
        return apex, np.array([rel @ ex, rel @ ey, rel @ axis])

    first_q = np.zeros(grid.shape, dtype=np.float32)
    apex0, local0 = geometry(foci[0])
    engine.field(apex0, axis, local0, depth_to_m, first_q, (0, 0, 0))
    active = first_q >= ACTIVE_Q_FRACTION * float(first_q.max())
    # the other foci heat the first one's region moved with them (a bowl moves; a steered array's focus moves while
    # its near field stays: the shifted box covers both)
    shifts = grid.world_to_index(foci) - grid.world_to_index(foci[0])  # (i, j, k) per focus
    lo = np.floor(shifts.min(axis=0)).astype(int)[::-1]
    hi = np.ceil(shifts.max(axis=0)).astype(int)[::-1]
    box = np.argwhere(active)
    start = np.maximum(box.min(axis=0) + lo - 1, 0)
    stop = box.max(axis=0) + hi + 2
    active[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]] = True
    total_s = len(foci) * (protocol.sonication_s + protocol.cooling_s)
    sub, slices = grid.crop_to_mask(active, margin_mm=_margin(protocol, total_s, context))
    offset = tuple(s.start for s in slices)
    # the coupling water: outside-body gas of the crop inside the water column of every bowl position
    sub_labels = labels[slices]
    sub_air = state.tissue_index[slices] == library.index_of("air")
    apexes = np.array([(centre if phased else f) - r_mm * axis for f in foci])
    water_column = coupling_column(
        (sub_labels == water) & sub_air, sub, apexes, axis, 1e3 * transducer.aperture_radius_m, r_mm
    )
    water_c, water_h = coupling_water(device, protocol)
    coupling = coupling_robin(device, water_column, protocol)
    region = open_thermal_region(state, context, sub, slices, total_s, coupling=coupling)
    q = np.zeros(sub.shape, dtype=np.float32)
    bone = np.isin(sub_labels, [library.index_of(n) for n in BONE if n in library])
    skin = np.isin(sub_labels, [library.index_of(n) for n in SKIN if n in library])

    focus_peaks, focal_pressures, absorbed = [], [], []
    for n_focus, focus in enumerate(foci):
        report("hifu", n_focus / len(foci), f"focus {n_focus + 1}/{len(foci)}")
        q[...] = 0.0
        apex, local = geometry(focus)
        beam = engine.field(apex, axis, local, depth_to_m, q, offset)
        absorbed.append(beam.absorbed_power_w)
        focal_pressures.append(float(beam.plane_max_pa.max()))
        region.advance(protocol.sonication_s, q)
        focus_peaks.append(_peak_near(region, sub, focus))
        region.advance(protocol.cooling_s)
    new_state, result = close_thermal_region(region, step.therapy)

    level = zone_level(region)
    result.metrics.update(zone_axes_mm(result.fields["ablation_zone"], grid, axis, level=level))
    peak = region.peak_c
    target_name = None
    try:
        target_name, target = _target_mask(state, context, protocol)
        covered = np.count_nonzero(result.fields["ablation_zone"] & target) / max(1, np.count_nonzero(target))
    except PlanError:
        covered = math.nan
    result.metrics.update(
        {
            "foci": float(len(foci)),
            "acoustic_power_w": protocol.acoustic_power_w,
            "frequency_hz": frequency,
            "sonication_s": protocol.sonication_s,
            "cooling_s": protocol.cooling_s,
            "beam_on_s": protocol.sonication_s * len(foci),
            "acoustic_energy_j": protocol.acoustic_power_w * protocol.sonication_s * len(foci),
            "absorbed_power_w_mean": float(np.mean(absorbed)),
            "focal_pressure_mpa_mean": float(np.mean(focal_pressures)) * 1e-6,
            "lesion_volume_ml": result.metrics.get("ablation_volume_ml", 0.0),
            "target_coverage": float(covered),
            "focus_peak_temperature_c_max": float(max(focus_peaks)),
            "focus_peak_temperature_c_min": float(min(focus_peaks)),
            "rib_peak_temperature_c": float(peak[bone].max()) if bone.any() else math.nan,
            "skin_peak_temperature_c": float(peak[skin].max()) if skin.any() else math.nan,
            "coupling_water_temperature_c": water_c,
            "coupling_h_w_m2k": water_h,
            "coupled_skin_area_cm2": coupled_area_cm2(water_column, ~sub_air, sub.spacing_kji_mm),
            "window_rib_fraction_max": float(max(w.bone for w in windows)),
            "window_gas_fraction_max": float(max(w.gas for w in windows)),
            "window_lung_fraction_max": float(max(w.lung for w in windows)),
            "window_depth_mm_max": float(max(w.depth_mm for w in windows)),
            "window_attenuation_db_max": float(max(w.attenuation_db for w in windows)),
            "window_warnings": float(len(warnings)),
            "direction_searched": float(auto_direction),
            "beam_direction_x": float(axis[0]),
            "beam_direction_y": float(axis[1]),
            "beam_direction_z": float(axis[2]),
            "beam_spacing_mm": engine.dx_m * 1e3,
            "beam_plane_points": float(engine.n),
        }
    )
    if target_name:
        result.metrics[f"coverage_{target_name}"] = float(covered)
    result.curves = {
        "focus_x_mm": [float(f[0]) for f in foci],
        "focus_y_mm": [float(f[1]) for f in foci],
        "focus_z_mm": [float(f[2]) for f in foci],
        "focus_peak_temperature_c": focus_peaks,
        "focus_depth_mm": [float(w.depth_mm) for w in windows],
        "focus_rib_fraction": [float(w.bone) for w in windows],
    }
    return new_state, result


def _peak_near(region, sub: Grid, focus_mm: np.ndarray) -> float:
    """Hottest temperature within FOCUS_PEAK_RADIUS_MM of ``focus_mm`` now (the end of its sonication)."""
    centre = sub.world_to_index(focus_mm)[::-1]
    h = np.asarray(sub.spacing_kji_mm)
    r = np.ceil(FOCUS_PEAK_RADIUS_MM / h).astype(int)
    lo = np.maximum(np.floor(centre).astype(int) - r, 0)
    hi = np.minimum(np.ceil(centre).astype(int) + r + 1, np.asarray(sub.shape))
    if np.any(hi <= lo):
        return math.nan
    box = region.temperature_c[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    kk, jj, ii = np.indices(box.shape)
    d2 = (((kk + lo[0] - centre[0]) * h[0]) ** 2 + ((jj + lo[1] - centre[1]) * h[1]) ** 2
          + ((ii + lo[2] - centre[2]) * h[2]) ** 2)  # fmt: skip
    return float(box[d2 <= FOCUS_PEAK_RADIUS_MM**2].max())
