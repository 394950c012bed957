"""Verification and validation cases, run by ``make validate`` into ``validation/REPORT.md``.

Each case is a function returning :class:`Row` objects — one per quantity — comparing what insitu
computes with a reference (analytic, published or a documented range) under a stated tolerance.
Case ids follow DESIGN.md: thermal.md's V1…V10, hifu.md §8 as HIFU-n, vascular.md §8 as VASC-n, and
our own as IN-….
"""

from insitu.validation.report import Row, render_report

__all__ = ["Row", "render_report"]
