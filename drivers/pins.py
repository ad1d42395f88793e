"""Choose gpiozero's pin factory from the configuration.

Every driver takes the factory as an argument (gpiozero's ``pin_factory=``), so the same device
classes run on a Pi (lgpio), on older kernels (native) and in simulation and tests (MockFactory).
"""

from __future__ import annotations

from typing import Literal

from gpiozero import Factory

PinFactoryKind = Literal["lgpio", "native", "mock"]


def wired_mock_pin_class() -> type:
    """gpiozero's MockPWMPin, except that a level driven from outside survives enabling the pull-up.

    A door contact wired to ground reads low whatever pull resistor the driver enables; plain mock
    pins jump to the pull level when a device opens them, so a simulated door would start "open".
    PWM-capable so LEDs and buzzers blink in simulation exactly as on a Pi.
    """
    from gpiozero.pins.mock import MockPWMPin

    class WiredMockPin(MockPWMPin):
        _wired: bool | None = None

        def drive_high(self) -> None:
            self._wired = True
            super().drive_high()

        def drive_low(self) -> None:
            self._wired = False
            super().drive_low()

        def _set_pull(self, value: str) -> None:
            wired = self._wired
            super()._set_pull(value)
            if wired is not None:
                self.drive_high() if wired else self.drive_low()

    return WiredMockPin


class PinFactoryError(RuntimeError):
    """The configured pin factory cannot run on this machine; the message says what to do."""


def make_pin_factory(kind: PinFactoryKind) -> Factory:
    if kind == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory(pin_class=wired_mock_pin_class())
    if kind == "lgpio":
        try:
            from gpiozero.pins.lgpio import LGPIOFactory
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise PinFactoryError(
                "pin factory lgpio needs the lgpio module: `apt install python3-lgpio` or "
                "`pip install 'edge-agent[pi]'`"
            ) from exc
        try:
            return LGPIOFactory()
        except Exception as exc:
            raise PinFactoryError(
                f"cannot open the GPIO chip with lgpio ({exc}); is this a Raspberry Pi, and is the "
                "service user in the gpio group?"
            ) from exc
    if kind == "native":
        from gpiozero.pins.native import NativeFactory

        try:
            return NativeFactory()
        except Exception as exc:
            raise PinFactoryError(f"cannot use the native pin factory ({exc}); use lgpio on bookworm") from exc
    raise PinFactoryError(f"unknown pin factory {kind!r}")
