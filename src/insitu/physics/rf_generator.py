"""RF generator controllers: small deterministic state machines that decide the power for the next interval.

A controller knows nothing about the field solver. Every ``control_interval_s`` the caller passes a
:class:`GeneratorReading` (time, load impedance, tip temperature, per-terminal impedances) and gets a
:class:`GeneratorCommand`: the power the generator delivers to the load over the next interval and
which terminal is driven. The caller turns power into a drive voltage with V = sqrt(P·Z)
(:func:`drive_voltage_v`). Readings must come in time order; a controller keeps its own state.

Controllers and where their numbers come from (``../shared/reference/thermal.md`` §1.2):

- :class:`ConstantPower`: fixed power.
- :class:`ImpedanceControlled`: Cool-tip-like. Power ramps up; the first reading's impedance is the
  baseline; when impedance rises more than a threshold above it (roll-off) power is cut for a pause,
  then resumes at a reduced level and ramps again. Trujillo et al. 2016 (Int J Hyperthermia 32:931,
  doi 10.1080/02656736.2016.1190868) model this impedance-controlled pulsing protocol for a 17G 3 cm
  cooled electrode over 12 min (abstract read); the threshold and pause below are the values
  commonly used in that line of models, recalled, not confirmed from the paper's methods.
- :class:`TemperatureControlled`: PID on the measured tip temperature (RITA-like target 105 °C).
- :class:`Switching`: Cool-tip-like multiple-electrode switching: one electrode at a time, moving on
  after a maximum dwell or when its impedance rolls off, skipping rolled-off electrodes for a pause
  (Haemmerich et al. 2005, Radiology 234:563: rapid switching among three cluster electrodes, abstract
  read; the dwell and threshold values are recalled, not confirmed).

:func:`make_generator` builds a controller from a plan protocol's ``generator`` mapping.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol

from insitu.errors import PhysicsError, PlanError

# Cool-tip generator rating: 200 W (thermal.md §1.2 [S13][S63], confirmed in the cited studies).
COOL_TIP_MAX_POWER_W = 200.0
# Roll-off threshold: impedance more than 30 Ω above the initial (baseline) value; recalled from the
# Berjano/Trujillo cooled-electrode models (Trujillo 2016, above), not confirmed from the methods text.
ROLL_OFF_RISE_OHM = 30.0
# Power off for 15 s after a roll-off; recalled from the same models, not confirmed.
ROLL_OFF_PAUSE_S = 15.0
# Start power and ramp: our choice (the vendor ramp was not found). 50 W rising 1 W/s reaches 200 W in
# 150 s, inside the first quarter of the standard 12-min run (thermal.md §1.2 [S15][S57][S63]).
IMPEDANCE_START_POWER_W = 50.0
IMPEDANCE_RAMP_W_PER_S = 1.0
# Power on resuming after a roll-off, as a fraction of the power at roll-off: our choice, not sourced.
IMPEDANCE_RESUME_FRACTION = 0.8
# RITA-like target tip temperature: 105 °C (thermal.md §1.2 [R], recalled, not confirmed).
RITA_TARGET_C = 105.0
# RITA 1500X generator rating: 250 W (Go-Smart RitaCombinationSeeder GENERATOR_WATTAGE, code value read).
RITA_MAX_POWER_W = 250.0
# PID gains: our choice, tuned on a first-order plant (gain 0.5 K/W, time constant 20 s); not a vendor's.
PID_KP_W_PER_K = 4.0
PID_KI_W_PER_KS = 0.2
PID_KD_WS_PER_K = 0.0
# Switching: at most 30 s on one electrode before moving on; recalled (Cool-tip switching controller
# studies, e.g. Laeseke et al. 2006 Radiology 241:116), not confirmed.
SWITCH_MAX_DWELL_S = 30.0
# Generator control interval: our choice, fast against the seconds-long thermal response of tissue.
CONTROL_INTERVAL_S = 0.5


@dataclass(frozen=True)
class GeneratorReading:
    """What the generator measures at ``time_s``: load impedance, tip temperature, per-terminal impedances."""

    time_s: float
    impedance_ohm: float
    tip_temperature_c: float | None = None
    terminal_impedances_ohm: tuple[float, ...] | None = None


@dataclass(frozen=True)
class GeneratorCommand:
    """Power to deliver over the next interval; ``active_terminal`` None drives every terminal together."""

    power_w: float
    active_terminal: int | None = None
    on: bool = True
    note: str = ""


class Controller(Protocol):
    """A generator controller: call ``command`` every ``control_interval_s`` with readings in time order."""

    control_interval_s: float
    max_power_w: float

    def command(self, reading: GeneratorReading) -> GeneratorCommand: ...


def drive_voltage_v(power_w: float, impedance_ohm: float) -> float:
    """RMS voltage that delivers ``power_w`` into ``impedance_ohm`` (V = sqrt(P·Z))."""
    if not (impedance_ohm > 0 and math.isfinite(impedance_ohm)):
        raise PhysicsError(f"load impedance {impedance_ohm} Ω", "give a positive, finite impedance")
    return math.sqrt(max(power_w, 0.0) * impedance_ohm)


def _require(condition: bool, problem: str, fix: str) -> None:
    """Raise a PlanError naming a bad generator parameter and its fix."""
    if not condition:
        raise PlanError(problem, fix)


def _check_power(power_w: float, max_power_w: float, name: str = "power_w") -> None:
    """A power must be finite, non-negative and within the generator's maximum."""
    _require(math.isfinite(max_power_w) and max_power_w > 0, f"max_power_w {max_power_w} W", "give a positive power")
    _require(math.isfinite(power_w) and power_w >= 0, f"{name} {power_w} W is negative", "give a power ≥ 0 W")
    _require(power_w <= max_power_w, f"{name} {power_w} W exceeds max_power_w {max_power_w} W", "lower it")


def _check_positive(value: float, name: str) -> None:
    """A duration, threshold or interval must be finite and positive."""
    _require(math.isfinite(value) and value > 0, f"{name} is {value}", f"give a positive {name}")


class _Clock:
    """Time-order check for readings; remembers the previous reading's time."""

    def __init__(self) -> None:
        self.last_s: float | None = None

    def tick(self, reading: GeneratorReading) -> float:
        """Seconds since the previous reading (0 for the first); refuses bad or backward readings."""
        if not math.isfinite(reading.time_s):
            raise PhysicsError(f"generator reading at time {reading.time_s} s", "give finite times")
        if not (math.isfinite(reading.impedance_ohm) and reading.impedance_ohm > 0):
            raise PhysicsError(f"generator reading of {reading.impedance_ohm} Ω", "give a positive, finite impedance")
        if self.last_s is not None and reading.time_s < self.last_s:
            raise PhysicsError(
                f"generator reading at {reading.time_s} s comes before {self.last_s} s", "pass readings in time order"
            )
        dt_s = 0.0 if self.last_s is None else reading.time_s - self.last_s
        self.last_s = reading.time_s
        return dt_s


@dataclass
class ConstantPower:
    """Fixed power for the whole run (the simplest protocol, and a reference for the others)."""

    power_w: float
    max_power_w: float = COOL_TIP_MAX_POWER_W
    control_interval_s: float = CONTROL_INTERVAL_S
    mode: ClassVar[str] = "constant_power"
    _clock: _Clock = field(default_factory=_Clock, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_power(self.power_w, self.max_power_w)
        _check_positive(self.control_interval_s, "control_interval_s")

    def command(self, reading: GeneratorReading) -> GeneratorCommand:
        """Always the set power."""
        self._clock.tick(reading)
        return GeneratorCommand(self.power_w, None, self.power_w > 0, "constant power")


@dataclass
class ImpedanceControlled:
    """Cool-tip-like impedance control: ramp, roll-off above baseline + threshold, pause, resume lower."""

    max_power_w: float = COOL_TIP_MAX_POWER_W
    start_power_w: float = IMPEDANCE_START_POWER_W
    ramp_w_per_s: float = IMPEDANCE_RAMP_W_PER_S
    rise_threshold_ohm: float = ROLL_OFF_RISE_OHM
    pause_s: float = ROLL_OFF_PAUSE_S
    resume_fraction: float = IMPEDANCE_RESUME_FRACTION
    control_interval_s: float = CONTROL_INTERVAL_S
    mode: ClassVar[str] = "impedance"
    baseline_ohm: float | None = field(default=None, init=False)
    roll_offs: int = field(default=0, init=False)
    _level_w: float = field(default=0.0, init=False, repr=False)
    _level_since_s: float = field(default=0.0, init=False, repr=False)
    _paused_until_s: float | None = field(default=None, init=False, repr=False)
    _clock: _Clock = field(default_factory=_Clock, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_power(self.start_power_w, self.max_power_w, "start_power_w")
        _require(
            math.isfinite(self.ramp_w_per_s) and self.ramp_w_per_s >= 0,
            f"ramp_w_per_s {self.ramp_w_per_s}",
            "give a ramp ≥ 0 W/s",
        )
        _check_positive(self.rise_threshold_ohm, "rise_threshold_ohm")
        _check_positive(self.pause_s, "pause_s")
        _check_positive(self.control_interval_s, "control_interval_s")
        _require(0 < self.resume_fraction <= 1, f"resume_fraction {self.resume_fraction}", "give a value in (0, 1]")
        self._level_w = self.start_power_w

    def _ramped_w(self, time_s: float) -> float:
        """Power on the current ramp at ``time_s``, capped at the maximum."""
        return min(self.max_power_w, self._level_w + self.ramp_w_per_s * (time_s - self._level_since_s))

    def _roll_off(self, reading: GeneratorReading) -> GeneratorCommand:
        """Cut power for the pause and remember the level to resume at."""
        self.roll_offs += 1
        self._level_w = self.resume_fraction * self._ramped_w(reading.time_s)
        self._paused_until_s = reading.time_s + self.pause_s
        return GeneratorCommand(
            0.0,
            None,
            False,
            f"roll-off {self.roll_offs}: {reading.impedance_ohm:.0f} Ω > baseline {self.baseline_ohm:.0f} Ω "
            f"+ {self.rise_threshold_ohm:.0f} Ω; off for {self.pause_s:.0f} s",
        )

    def command(self, reading: GeneratorReading) -> GeneratorCommand:
        """Ramp while impedance stays below baseline + threshold; pause after a roll-off."""
        if self._clock.tick(reading) == 0.0 and self.baseline_ohm is None:
            self.baseline_ohm = reading.impedance_ohm
            self._level_since_s = reading.time_s
        if self._paused_until_s is not None:
            if reading.time_s < self._paused_until_s:
                return GeneratorCommand(0.0, None, False, "paused after roll-off")
            self._paused_until_s = None
            self._level_since_s = reading.time_s
        elif reading.impedance_ohm > self.baseline_ohm + self.rise_threshold_ohm:
            return self._roll_off(reading)
        power_w = self._ramped_w(reading.time_s)
        return GeneratorCommand(power_w, None, power_w > 0, "impedance control")


@dataclass
class TemperatureControlled:
    """PID on the measured tip temperature, power clamped to [0, max] with anti-windup (RITA-like)."""

    target_c: float = RITA_TARGET_C
    max_power_w: float = RITA_MAX_POWER_W
    kp_w_per_k: float = PID_KP_W_PER_K
    ki_w_per_ks: float = PID_KI_W_PER_KS
    kd_ws_per_k: float = PID_KD_WS_PER_K
    control_interval_s: float = CONTROL_INTERVAL_S
    mode: ClassVar[str] = "temperature"
    _integral_ks: float = field(default=0.0, init=False, repr=False)
    _last_temperature_c: float | None = field(default=None, init=False, repr=False)
    _clock: _Clock = field(default_factory=_Clock, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_power(0.0, self.max_power_w)
        _require(20.0 <= self.target_c <= 120.0, f"target_c {self.target_c} °C", "give a target in 20–120 °C")
        for name in ("kp_w_per_k", "ki_w_per_ks", "kd_ws_per_k"):
            value = getattr(self, name)
            _require(math.isfinite(value) and value >= 0, f"{name} {value}", "give a gain ≥ 0")
        _check_positive(self.control_interval_s, "control_interval_s")

    def _pid_w(self, error_k: float, dt_s: float, derivative_k_s: float) -> float:
        """PID output in [0, max]; the integral only grows until the output reaches a limit (anti-windup)."""
        p_and_d_w = self.kp_w_per_k * error_k - self.kd_ws_per_k * derivative_k_s
        integral_ks = self._integral_ks + error_k * dt_s
        if self.ki_w_per_ks > 0:
            high_ks = (self.max_power_w - p_and_d_w) / self.ki_w_per_ks
            low_ks = -p_and_d_w / self.ki_w_per_ks
            if integral_ks > high_ks:
                integral_ks = max(self._integral_ks, high_ks)
            elif integral_ks < low_ks:
                integral_ks = min(self._integral_ks, low_ks)
        self._integral_ks = integral_ks
        return min(self.max_power_w, max(0.0, p_and_d_w + self.ki_w_per_ks * integral_ks))

    def command(self, reading: GeneratorReading) -> GeneratorCommand:
        """Power that drives the tip temperature to the target."""
        dt_s = self._clock.tick(reading)
        temperature_c = reading.tip_temperature_c
        if temperature_c is None or not math.isfinite(temperature_c):
            raise PhysicsError(
                "temperature control got no tip temperature", "pass tip_temperature_c in every generator reading"
            )
        last_c = self._last_temperature_c
        derivative_k_s = (temperature_c - last_c) / dt_s if last_c is not None and dt_s > 0 else 0.0
        self._last_temperature_c = temperature_c
        power_w = self._pid_w(self.target_c - temperature_c, dt_s, derivative_k_s)
        return GeneratorCommand(power_w, None, power_w > 0, f"tip {temperature_c:.1f} °C → {self.target_c:.0f} °C")


@dataclass
class Switching:
    """Drive one of ``n_terminals`` electrodes at a time, cycling; skip electrodes that rolled off for a pause."""

    n_terminals: int = 3
    power_w: float = COOL_TIP_MAX_POWER_W
    max_power_w: float = COOL_TIP_MAX_POWER_W
    max_dwell_s: float = SWITCH_MAX_DWELL_S
    rise_threshold_ohm: float = ROLL_OFF_RISE_OHM
    pause_s: float = ROLL_OFF_PAUSE_S
    control_interval_s: float = CONTROL_INTERVAL_S
    mode: ClassVar[str] = "switching"
    active_terminal: int = field(default=0, init=False)
    baselines_ohm: tuple[float, ...] | None = field(default=None, init=False)
    _active_since_s: float = field(default=0.0, init=False, repr=False)
    _locked_until_s: list[float] = field(default_factory=list, init=False, repr=False)
    _clock: _Clock = field(default_factory=_Clock, init=False, repr=False)

    def __post_init__(self) -> None:
        _require(
            isinstance(self.n_terminals, int) and self.n_terminals >= 1,
            f"n_terminals {self.n_terminals}",
            "give at least one electrode",
        )
        _check_power(self.power_w, self.max_power_w)
        for name in ("max_dwell_s", "rise_threshold_ohm", "pause_s", "control_interval_s"):
            _check_positive(getattr(self, name), name)
        self._locked_until_s = [-math.inf] * self.n_terminals

    def _terminal_impedances(self, reading: GeneratorReading) -> tuple[float, ...]:
        """Per-electrode impedances, checked for count and values."""
        values = reading.terminal_impedances_ohm
        if values is None or len(values) != self.n_terminals:
            raise PhysicsError(
                f"switching over {self.n_terminals} electrodes got terminal impedances {values}",
                f"pass terminal_impedances_ohm with {self.n_terminals} values",
            )
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise PhysicsError(f"terminal impedances {values} Ω", "give positive, finite impedances")
        return tuple(float(v) for v in values)

    def _lock_rolled_off(self, time_s: float, impedances: tuple[float, ...]) -> None:
        """Take every electrode whose impedance rose above baseline + threshold out of the cycle for a pause."""
        for k, (z, z0) in enumerate(zip(impedances, self.baselines_ohm, strict=True)):
            if z > z0 + self.rise_threshold_ohm:
                self._locked_until_s[k] = time_s + self.pause_s

    def _next_available(self, time_s: float, start: int) -> int | None:
        """First electrode after ``start`` (cyclically, ``start`` last) that is not locked out."""
        for step in range(1, self.n_terminals + 1):
            k = (start + step) % self.n_terminals
            if self._locked_until_s[k] <= time_s:
                return k
        return None

    def command(self, reading: GeneratorReading) -> GeneratorCommand:
        """Stay on the active electrode until its dwell ends or it rolls off; then move to the next usable one."""
        first = self._clock.tick(reading) == 0.0 and self.baselines_ohm is None
        impedances = self._terminal_impedances(reading)
        if first:
            self.baselines_ohm = impedances
            self._active_since_s = reading.time_s
        time_s = reading.time_s
        self._lock_rolled_off(time_s, impedances)
        locked = self._locked_until_s[self.active_terminal] > time_s
        if locked or time_s - self._active_since_s >= self.max_dwell_s:
            chosen = self._next_available(time_s, self.active_terminal)
            if chosen is None:
                return GeneratorCommand(0.0, None, False, "every electrode rolled off; waiting")
            self._active_since_s = time_s
            self.active_terminal = chosen
        return GeneratorCommand(self.power_w, self.active_terminal, self.power_w > 0, "switching")


_MODES: dict[str, type] = {c.mode: c for c in (ConstantPower, ImpedanceControlled, TemperatureControlled, Switching)}


def _spec_arguments(mode_class: type, spec: dict[str, Any]) -> dict[str, Any]:
    """The spec's keys other than ``mode``, checked against the controller's parameters."""
    allowed = [f.name for f in fields(mode_class) if f.init]
    arguments = {k: v for k, v in spec.items() if k != "mode"}
    for key in arguments:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise PlanError(
                f"generator mode {mode_class.mode!r} has no parameter {key!r}",
                f"{hint}allowed: {', '.join(allowed)}",
            )
    return arguments


def make_generator(spec: dict[str, Any], device_max_power_w: float | None = None) -> Controller:
    """Controller for a plan protocol's ``generator`` mapping ``{"mode": ..., parameters in SI units}``.

    ``device_max_power_w`` (the device's rating) caps ``max_power_w``; a mode's default maximum above
    the device's rating is lowered to it.
    """
    if not isinstance(spec, dict) or "mode" not in spec:
        raise PlanError(f"generator spec {spec!r} has no mode", f"give mode: one of {', '.join(_MODES)}")
    mode = spec["mode"]
    if mode not in _MODES:
        close = difflib.get_close_matches(str(mode), list(_MODES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise PlanError(f"unknown generator mode {mode!r}", f"{hint}choose one of {', '.join(_MODES)}")
    mode_class = _MODES[mode]
    arguments = _spec_arguments(mode_class, spec)
    if device_max_power_w is not None:
        _check_power(0.0, device_max_power_w)
        requested_w = arguments.get("max_power_w")
        if requested_w is not None and requested_w > device_max_power_w:
            raise PlanError(
                f"generator max_power_w {requested_w} W exceeds the device's {device_max_power_w} W",
                f"give at most {device_max_power_w} W",
            )
        if requested_w is None:
            arguments["max_power_w"] = min(_default_max_w(mode_class), device_max_power_w)
    if mode_class is Switching and "power_w" not in arguments and "max_power_w" in arguments:
        arguments["power_w"] = arguments["max_power_w"]
    try:
        return mode_class(**arguments)
    except TypeError as error:
        raise PlanError(f"generator mode {mode!r}: {error}", "give the required parameters") from None


def _default_max_w(mode_class: type) -> float:
    """The controller class's default ``max_power_w``."""
    return next(f.default for f in fields(mode_class) if f.name == "max_power_w")
