"""LEDs and buzzers that tell a resident what happened: granted, denied, alarm.

Patterns run in gpiozero's background blink threads, so showing one never blocks a decision.
An alarm pattern owns the device until it is stopped: a granted chirp must not silence a fire alarm.
"""

from __future__ import annotations

import threading
from typing import Literal

from gpiozero import LED, Buzzer, Factory

from agent.config import IndicatorConfig

Pattern = Literal["granted", "denied", "alarm"]

# (on seconds, off seconds, repetitions; None = until stopped)
LED_PATTERNS: dict[Pattern, tuple[float, float, int | None]] = {
    "granted": (2.0, 0.0, 1),  # steady for as long as a typical unlock pulse is worth noticing
    "denied": (0.15, 0.15, 4),  # quick flicker
    "alarm": (0.5, 0.5, None),
}
BUZZER_PATTERNS: dict[Pattern, tuple[float, float, int | None]] = {
    "granted": (0.1, 0.0, 1),  # one short chirp
    "denied": (0.1, 0.1, 3),
    "alarm": (0.5, 0.5, None),  # until the alarm is reset
}


class Indicator:
    def __init__(self, config: IndicatorConfig, pin_factory: Factory | None = None) -> None:
        self.config = config
        self.name = config.name
        device_class = LED if config.kind == "led" else Buzzer
        self.device: LED | Buzzer = device_class(config.pin, active_high=config.active_high,
                                                 initial_value=False, pin_factory=pin_factory)
        self._patterns = LED_PATTERNS if config.kind == "led" else BUZZER_PATTERNS
        self._alarm = False
        self._lock = threading.Lock()

    def shows(self, pattern: Pattern, gate: str | None = None) -> bool:
        """Whether this indicator plays ``pattern`` for ``gate`` (None: a building-wide pattern)."""
        return pattern in self.config.shows and (gate is None or self.config.gate in (None, gate))

    def show(self, pattern: Pattern) -> None:
        with self._lock:
            if self._alarm and pattern != "alarm":
                return
            self._alarm = pattern == "alarm"
            on, off, times = self._patterns[pattern]
            self.device.blink(on_time=on, off_time=off, n=times, background=True)

    def stop_alarm(self) -> None:
        with self._lock:
            if self._alarm:
                self._alarm = False
                self.device.off()

    @property
    def alarm_active(self) -> bool:
        return self._alarm

    def close(self) -> None:
        self.device.close()
