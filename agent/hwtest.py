"""``edge-agent hw test``: every configured device, one line each, OK or FAIL, in plain language."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gpiozero import Factory

from agent.agent_config import AgentConfig
from agent.config_loader import camera_source_problem


@dataclass(frozen=True)
class Check:
    device: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'}  {self.device:<28} {self.detail}"


def _try(device: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(device, True, probe())
    except Exception as exc:
        return Check(device, False, str(exc) or type(exc).__name__)


def run_checks(config: AgentConfig, pin_factory: Factory, pulse: bool = False) -> list[Check]:
    """Read every input; pulse relays, LEDs and buzzers only with ``pulse``; grab a frame per camera."""
    from gpiozero import Button, DigitalInputDevice, DigitalOutputDevice

    checks: list[Check] = []

    def read_input(pin: int | str, pull_up: bool, active: str, idle: str) -> str:
        with DigitalInputDevice(pin, pull_up=pull_up, pin_factory=pin_factory) as device:
            return f"pin {pin}: {active if device.is_active else idle}"

    def output(pin: int | str, active_high: bool, seconds: float) -> str:
        with DigitalOutputDevice(pin, active_high=active_high, pin_factory=pin_factory) as device:
            if not pulse:
                return f"pin {pin}: claimed (use --pulse to click it)"
            device.on()
            time.sleep(seconds)
            device.off()
            return f"pin {pin}: pulsed {seconds:.1f} s"

    hardware = config.hardware
    for gate in hardware.gates:
        checks.append(_try(f"gate {gate.name} lock relay", lambda g=gate: output(g.lock_relay, g.active_high, 1.0)))
        if gate.door_contact is not None:
            checks.append(_try(f"gate {gate.name} door contact",
                               lambda g=gate: read_input(g.door_contact, True, "door closed", "door OPEN")))
        for label, pin in (("exit button", gate.exit_button), ("assist button", gate.assist_button)):
            if pin is not None:
                def button(pin: int | str = pin) -> str:
                    with Button(pin, pull_up=True, pin_factory=pin_factory) as device:
                        return f"pin {pin}: {'PRESSED (stuck?)' if device.is_pressed else 'released'}"
                checks.append(_try(f"gate {gate.name} {label}", button))
    for barrier in hardware.barriers:
        for label in ("raise_relay", "lower_relay", "pulse_relay"):
            pin = getattr(barrier, label)
            if pin is not None:
                checks.append(_try(f"barrier {barrier.name} {label.replace('_', ' ')}",
                                   lambda p=pin, b=barrier: output(p, b.active_high, b.pulse_seconds)))
        checks.append(_try(f"barrier {barrier.name} safety loop", lambda b=barrier: read_input(
            b.safety_loop, b.safety_loop_active_low, "VEHICLE PRESENT", "clear")))
        if barrier.position_sensor is not None:
            checks.append(_try(f"barrier {barrier.name} position", lambda b=barrier: read_input(
                b.position_sensor, True, "arm up", "arm down")))
    for smoke in hardware.smoke_detectors:
        checks.append(_try(f"smoke {smoke.name} alarm", lambda s=smoke: read_input(
            s.alarm_pin, s.active_low, "IN ALARM", "quiet")))
        if smoke.fault_pin is not None:
            checks.append(_try(f"smoke {smoke.name} fault", lambda s=smoke: read_input(
                s.fault_pin, True, "FAULT", "ok")))
    for indicator in hardware.indicators:
        checks.append(_try(f"{indicator.kind} {indicator.name}",
                           lambda i=indicator: output(i.pin, i.active_high, 0.5)))
    for camera in hardware.cameras:
        def grab(camera=camera) -> str:
            problem = camera_source_problem(camera)
            if problem:
                raise RuntimeError(problem)
            from drivers.camera import grab_one

            frame, fps = grab_one(camera, timeout=10.0)
            return f"{camera.source}: frame {frame.shape[1]}x{frame.shape[0]}, {fps:.1f} fps"
        checks.append(_try(f"camera {camera.name}", grab))
    return checks
