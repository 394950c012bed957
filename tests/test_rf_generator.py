"""RF generator controllers: constant power, impedance roll-off, PID on tip temperature, switching, factory."""

from __future__ import annotations

import math

import pytest

from insitu.errors import PhysicsError, PlanError
from insitu.physics.rf_generator import (
    ConstantPower,
    GeneratorReading,
    ImpedanceControlled,
    Switching,
    TemperatureControlled,
    drive_voltage_v,
    make_generator,
)


def reading(time_s: float, impedance_ohm: float = 80.0, **kw) -> GeneratorReading:
    return GeneratorReading(time_s=time_s, impedance_ohm=impedance_ohm, **kw)


def run_plant(controller, duration_s: float, gain_k_per_w: float = 0.5, tau_s: float = 20.0):
    """Toy first-order tip plant dT/dt = (P·g − (T − 37)) / τ, stepped at the control interval."""
    dt_s = controller.control_interval_s
    temperature_c, powers_w, temperatures_c = 37.0, [], []
    for i in range(round(duration_s / dt_s)):
        power_w = controller.command(reading(i * dt_s, tip_temperature_c=temperature_c)).power_w
        temperature_c += dt_s * (power_w * gain_k_per_w - (temperature_c - 37.0)) / tau_s
        powers_w.append(power_w)
        temperatures_c.append(temperature_c)
    return powers_w, temperatures_c


def test_constant_power_returns_its_power():
    controller = ConstantPower(power_w=120.0, max_power_w=200.0)
    commands = [controller.command(reading(t, z)) for t, z in [(0, 80), (1, 60), (2, 400)]]
    assert [c.power_w for c in commands] == [120.0, 120.0, 120.0]
    assert all(c.on and c.active_terminal is None for c in commands)


@pytest.mark.parametrize("power_w, match", [(-5.0, "negative"), (250.0, "exceeds max_power_w 200")])
def test_constant_power_rejects_bad_power(power_w, match):
    with pytest.raises(PlanError, match=match):
        ConstantPower(power_w=power_w, max_power_w=200.0)


def test_drive_voltage_from_power_and_impedance():
    assert drive_voltage_v(100.0, 50.0) == pytest.approx(math.sqrt(5000.0))
    assert drive_voltage_v(0.0, 50.0) == 0.0


def test_impedance_control_ramps_from_start_power_to_max():
    controller = ImpedanceControlled()  # 50 W start, 1 W/s, 200 W max
    powers = [controller.command(reading(t)).power_w for t in (0.0, 10.0, 100.0, 200.0)]
    assert powers == pytest.approx([50.0, 60.0, 150.0, 200.0])
    assert controller.baseline_ohm == 80.0


def test_impedance_control_cuts_power_on_roll_off_and_resumes_after_pause():
    controller = ImpedanceControlled(rise_threshold_ohm=30.0, pause_s=15.0, resume_fraction=0.8)
    controller.command(reading(0.0, 80.0))
    assert controller.command(reading(20.0, 110.0)).power_w == pytest.approx(70.0)  # exactly +30 Ω: still on
    cut = controller.command(reading(40.0, 111.0))
    assert (cut.power_w, cut.on) == (0.0, False) and "roll-off 1" in cut.note
    assert controller.command(reading(54.5, 70.0)).power_w == 0.0  # inside the 15 s pause
    resumed = controller.command(reading(55.0, 70.0))
    assert resumed.on and resumed.power_w == pytest.approx(0.8 * 90.0)  # 90 W on the ramp at roll-off
    assert controller.command(reading(65.0, 70.0)).power_w == pytest.approx(72.0 + 10.0)  # ramps again
    assert controller.roll_offs == 1


def test_readings_out_of_order_or_invalid_are_refused():
    controller = ImpedanceControlled()
    controller.command(reading(10.0))
    with pytest.raises(PhysicsError, match="time order"):
        controller.command(reading(5.0))
    with pytest.raises(PhysicsError, match="impedance"):
        controller.command(reading(11.0, -3.0))


def test_pid_settles_on_first_order_plant_within_a_degree_without_exceeding_max_power():
    controller = TemperatureControlled(target_c=105.0, max_power_w=250.0)
    powers, temperatures = run_plant(controller, 600.0)
    settled = temperatures[round(300.0 / controller.control_interval_s) :]
    assert max(abs(t - 105.0) for t in settled) < 1.0
    assert max(powers) <= 250.0 and min(powers) >= 0.0
    assert powers[-1] == pytest.approx(68.0 / 0.5, rel=0.01)  # steady state: P·g = 105 − 37


def test_pid_anti_windup_limits_overshoot_after_long_saturation():
    controller = TemperatureControlled(target_c=105.0, max_power_w=140.0, kp_w_per_k=2.0, ki_w_per_ks=1.0)
    powers, temperatures = run_plant(controller, 800.0)
    assert powers[1:100] == [140.0] * 99  # pinned at the limit while heating (the first reading has no dt)
    assert max(temperatures) < 106.5
    assert abs(temperatures[-1] - 105.0) < 0.1


def test_temperature_control_needs_a_tip_temperature():
    with pytest.raises(PhysicsError, match="tip temperature"):
        TemperatureControlled().command(reading(0.0))


def test_switching_cycles_and_skips_a_high_impedance_electrode():
    controller = Switching(n_terminals=3, power_w=150.0, max_dwell_s=30.0, rise_threshold_ohm=30.0, pause_s=15.0)
    normal = (80.0, 80.0, 80.0)
    high_1 = (80.0, 150.0, 80.0)
    sequence = [(0.0, normal), (29.0, normal), (30.0, high_1), (59.0, high_1), (60.0, high_1), (90.0, normal)]
    active = [controller.command(reading(t, terminal_impedances_ohm=z)).active_terminal for t, z in sequence]
    assert active == [0, 0, 2, 2, 0, 1]
    assert controller.command(reading(91.0, terminal_impedances_ohm=normal)).power_w == 150.0


def test_switching_moves_off_an_electrode_that_rolls_off_and_stops_when_all_do():
    controller = Switching(n_terminals=2, power_w=100.0)
    controller.command(reading(0.0, terminal_impedances_ohm=(80.0, 90.0)))
    assert controller.command(reading(5.0, terminal_impedances_ohm=(111.0, 90.0))).active_terminal == 1
    stopped = controller.command(reading(6.0, terminal_impedances_ohm=(111.0, 121.0)))
    assert (stopped.on, stopped.power_w, stopped.active_terminal) == (False, 0.0, None)
    with pytest.raises(PhysicsError, match="2 values"):
        controller.command(reading(7.0, terminal_impedances_ohm=(80.0,)))


def test_make_generator_builds_each_mode():
    assert isinstance(make_generator({"mode": "constant_power", "power_w": 60.0}), ConstantPower)
    impedance = make_generator({"mode": "impedance", "pause_s": 20.0}, device_max_power_w=150.0)
    assert isinstance(impedance, ImpedanceControlled) and (impedance.pause_s, impedance.max_power_w) == (20.0, 150.0)
    temperature = make_generator({"mode": "temperature", "target_c": 95.0})
    assert isinstance(temperature, TemperatureControlled) and temperature.target_c == 95.0
    switching = make_generator({"mode": "switching", "n_terminals": 3}, device_max_power_w=180.0)
    assert isinstance(switching, Switching) and switching.power_w == 180.0


@pytest.mark.parametrize(
    "spec, device_max_w, match",
    [
        ({"mode": "impedence"}, None, "unknown generator mode 'impedence'; did you mean 'impedance'"),
        ({"power_w": 10.0}, None, "has no mode"),
        ({"mode": "constant_power", "power_w": -1.0}, None, "negative"),
        ({"mode": "constant_power", "power_w": 250.0}, 200.0, "power_w 250.0 W exceeds max_power_w 200.0 W"),
        ({"mode": "impedance", "max_power_w": 300.0}, 200.0, "exceeds the device's 200.0 W"),
        ({"mode": "impedance", "pause": 15.0}, None, "no parameter 'pause'; did you mean 'pause_s'"),
        ({"mode": "constant_power"}, None, "constant_power"),
    ],
)
def test_make_generator_errors_name_the_problem(spec, device_max_w, match):
    with pytest.raises(PlanError, match=match) as info:
        make_generator(spec, device_max_power_w=device_max_w)
    assert "\n" not in str(info.value)
