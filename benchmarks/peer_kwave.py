"""k-wave-python as the peer on HIFU-1 (O'Neil KW-bowl: R = D = 30 mm, 1 MHz, water, 1 MPa source pressure).

Offline: ``import kwave`` (0.6.x) checks ``kwave/bin/<os>/`` for the C++ binaries and their ``*_metadata.json`` (md5 +
release URL) and downloads them from GitHub when absent. :func:`import_kwave_offline` imports it with
``urllib.request.urlretrieve`` replaced by a function that writes a placeholder script instead of fetching, so the
package's own code records matching metadata (its URL and the placeholder's md5) and later imports find the
"binaries" present. Nothing is downloaded; the placeholders only print an error if run. Only the pure NumPy backend
(``kspaceFirstOrder(..., backend="python")``) is used, which never calls them. Real binaries already present are kept.

The peer run: 3-D, off-grid bowl (``kWaveArray``, band-limited interpolation), CW source, pressure recorded on the
axis, amplitude from a one-frequency DFT over the last periods. Peers are never test or package dependencies.
"""

from __future__ import annotations

import contextlib
import time
import urllib.request

import numpy as np

PLACEHOLDER = (
    "#!/bin/sh\n"
    "echo 'placeholder written by insitu benchmarks/peer_kwave.py (offline): not the k-Wave C++ binary; "
    'use backend="python"\' >&2\nexit 1\n'
)
KWAVE_RELEASES = "https://github.com/waltsims/"


def _placeholder_urlretrieve(url, filename=None, *args, **kwargs):
    if not str(url).startswith(KWAVE_RELEASES) or filename is None:
        raise OSError(f"offline: refusing to fetch {url}")
    with open(filename, "w") as f:
        f.write(PLACEHOLDER)
    return filename, None


@contextlib.contextmanager
def _no_downloads():
    original = urllib.request.urlretrieve
    urllib.request.urlretrieve = _placeholder_urlretrieve
    try:
        yield
    finally:
        urllib.request.urlretrieve = original


def import_kwave_offline():
    """Import k-wave-python without network access (placeholders for its C++ binaries, see the module docstring)."""
    with _no_downloads():
        import kwave
    if not kwave.binaries_present():  # e.g. a read-only site-packages: the placeholders could not be written
        raise ImportError("k-wave-python imported but its binary check still fails (is site-packages writable?)")
    return kwave


def run_kwave_oneil(
    radius_m: float = 0.030,
    diameter_m: float = 0.030,
    frequency_hz: float = 1.0e6,
    c_m_s: float = 1500.0,
    rho_kg_m3: float = 1000.0,
    source_pa: float = 1.0e6,
    ppw: int = 3,
    axial_m: float = 0.044,
    lateral_m: float = 0.038,
    pml: int = 10,
    cfl: float = 0.3,
    dft_periods: int = 3,
) -> dict:
    """On-axis CW amplitude of the bowl from the NumPy backend. Returns z from the apex (m), |p| (Pa), timings."""
    import_kwave_offline()
    from kwave.data import Vector
    from kwave.kgrid import kWaveGrid
    from kwave.kmedium import kWaveMedium
    from kwave.ksensor import kSensor
    from kwave.ksource import kSource
    from kwave.kspaceFirstOrder import kspaceFirstOrder
    from kwave.utils.kwave_array import kWaveArray
    from kwave.utils.signals import create_cw_signals

    t0 = time.perf_counter()
    wavelength = c_m_s / frequency_hz
    dx = wavelength / ppw
    nx = round(axial_m / dx)
    ny = round(lateral_m / dx)
    ny += ny % 2  # even: the axis is a grid line (index ny // 2 is y = 0)
    kgrid = kWaveGrid(Vector([nx, ny, ny]), Vector([dx, dx, dx]))
    steps_per_period = round(ppw / cfl)
    dt = 1.0 / (frequency_hz * steps_per_period)
    apex_x = float(kgrid.x_vec.ravel()[0]) + 2 * dx
    depth = radius_m - np.sqrt(radius_m**2 - (diameter_m / 2) ** 2)
    x_end = float(kgrid.x_vec.ravel()[-1])
    # the slowest arrival on the axis: from the rim to the far end of the grid, then ring-up and the DFT window
    rim_to_end = np.hypot(x_end - apex_x - depth, diameter_m / 2)
    nt = int(np.ceil(rim_to_end / c_m_s / dt)) + (dft_periods + 3) * steps_per_period
    kgrid.setTime(nt, dt)

    medium = kWaveMedium(sound_speed=c_m_s, density=rho_kg_m3)
    karray = kWaveArray(bli_tolerance=0.05, upsampling_rate=10, single_precision=True)
    karray.add_bowl_element([apex_x, 0.0, 0.0], radius_m, diameter_m, [apex_x + radius_m, 0.0, 0.0])
    signal = create_cw_signals(np.asarray(kgrid.t_array).ravel(), frequency_hz, np.array([source_pa]), np.array([0.0]))
    source = kSource()
    source.p_mask = karray.get_array_binary_mask(kgrid)
    source.p = karray.get_distributed_source_signal(kgrid, signal, order="C")  # 'F' scrambles weights (hifu.md §4.1)

    x = np.asarray(kgrid.x_vec).ravel()
    on_axis = x > apex_x + depth + 2 * dx  # in front of the bowl
    mask = np.zeros((nx, ny, ny), bool)
    mask[on_axis, ny // 2, ny // 2] = True
    sensor = kSensor(mask=mask)
    sensor.record = ["p"]
    t1 = time.perf_counter()
    result = kspaceFirstOrder(kgrid, medium, source, sensor, pml_size=pml, backend="python", dtype=np.float32,
                              quiet=True)  # fmt: skip
    t2 = time.perf_counter()
    p = np.asarray(result["p"], dtype=np.float64)  # (n_sensor, nt), sensor points in C order = increasing x
    n = dft_periods * steps_per_period
    t = np.arange(nt - n, nt) * dt
    amplitude = 2.0 / n * np.abs(p[:, -n:] @ np.exp(-2j * np.pi * frequency_hz * t))
    return {"z_m": x[on_axis] - apex_x, "p_pa": amplitude, "setup_s": t1 - t0, "run_s": t2 - t1, "dx_m": dx,
            "ppw": ppw, "grid": (nx + 2 * pml, ny + 2 * pml, ny + 2 * pml), "nt": nt}  # fmt: skip


def kwave_version() -> str:
    import kwave

    return getattr(kwave, "__version__", "?")


def main() -> int:
    """Run in the peers' own environment (``make bench`` builds ``.venv-peers``: k-wave-python pins numpy, scipy and
    matplotlib, so it never shares insitu's venv): print the HIFU-1 result and the version as one JSON line."""
    import json

    result = run_kwave_oneil()
    out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in result.items()}
    out["version"] = kwave_version()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
