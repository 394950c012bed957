"""The cases behind ``make validate``; each returns one Row per compared quantity."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from insitu.validation.report import Row


@cache
def _default_phantom():
    from insitu.patient.phantom import PhantomSpec, make_phantom

    return make_phantom(PhantomSpec())


def in_phantom() -> list[Row]:
    """IN-PHANTOM: the default phantom against its anatomical acceptance numbers."""
    from insitu.patient.phantom import phantom_data

    patient = _default_phantom()
    data = phantom_data()
    liver_range = data["anatomy"]["liver_volume_l"]["value"]
    tumor = patient.structures["tumor_1"]
    sphere_ml = 4.0 / 3.0 * np.pi * (patient.metadata["tumors"][0]["diameter_mm"] / 2.0) ** 3 / 1000.0
    labels = patient.label_maps["couinaud"][0]
    counts = np.bincount(labels.reshape(-1), minlength=9)[1:]
    fractions = counts / counts.sum()
    source = data["sources"]
    return [
        Row.in_range(
            "IN-PHANTOM-1",
            "liver parenchyma volume (mL)",
            patient.structures["liver"].volume_ml,
            1000 * liver_range[0],
            1000 * liver_range[1],
            source["issue2"],
        ),
        Row.within(
            "IN-PHANTOM-2",
            "tumour volume (mL), 30 mm lobulated HCC",
            tumor.volume_ml,
            sphere_ml,
            0.10,
            "sphere of the requested diameter (issue 2: within 10 %)",
        ),
        Row.in_range(
            "IN-PHANTOM-3",
            "Couinaud VIII fraction of liver volume",
            float(fractions[7]),
            0.111,
            0.380,
            source["hpb2013"],
        ),
        Row.below(
            "IN-PHANTOM-3",
            "Couinaud II fraction of liver volume",
            float(fractions[1]),
            0.10,
            source["hpb2013"],
        ),
        Row.below(
            "IN-PHANTOM-3",
            "Couinaud III fraction of liver volume",
            float(fractions[2]),
            0.10,
            source["hpb2013"],
        ),
    ]


def vasc_2() -> list[Row]:
    """VASC-2 (vascular.md §8 case 2): Murray's law at every bifurcation of the generated trees."""
    patient = _default_phantom()
    rows = []
    for name, tree in patient.trees.items():
        residual = float(np.max(tree.murray_residuals(3.0)))
        rows.append(
            Row.below(
                "VASC-2",
                f"max Murray residual |r0³−r1³−r2³|/r0³, {name}",
                residual,
                1e-9,
                "vascular.md §8 case 2 (Murray 1926; γ = 3 as in Karch 1999 / svVascularize)",
            )
        )
    return rows


CASES: list[Callable[[], list[Row]]] = [in_phantom, vasc_2]
