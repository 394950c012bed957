"""The validation report format of DESIGN.md: one row per quantity, six cells, PASS or FAIL."""

from insitu.validation.report import Row, render_report


def test_rows_render_as_six_cells_even_with_pipes_in_names():
    rows = [
        Row.below("VASC-2", "max |r0³−r1³−r2³|/r0³", 1e-16, 1e-9),
        Row.within("V1", "peak temperature (°C)", 80.5, 80.0, 0.01),
        Row.in_range("IN-X", "volume (mL)", 2000.0, 1200.0, 1800.0),
    ]
    text = render_report(rows)
    table = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(table) == 3
    for line in table:
        cells = [c for c in line.replace("\\|", "").split("|")][1:-1]
        assert len(cells) == 6
    assert table[0].endswith("| PASS |") and table[1].endswith("| PASS |") and table[2].endswith("| FAIL |")
    assert "2 passed, 1 failed" in text


def test_within_fails_on_nan():
    assert not Row.within("V1", "x", float("nan"), 1.0, 0.1).passed
