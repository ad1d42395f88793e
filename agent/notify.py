"""The systemd notify protocol (sd_notify(3)), spoken directly over the unix datagram socket.

No libsystemd binding is needed: the protocol is one datagram of ``KEY=value`` lines.
"""

from __future__ import annotations

import os
import socket


class SystemdNotifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        watchdog_ours = usec is not None and (pid is None or pid == str(os.getpid()))
        # Ping at half the watchdog period, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval: float | None = int(usec) / 2e6 if watchdog_ours and usec else None
        self._socket: socket.socket | None = None
        if self.address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, **fields: str | int) -> bool:
        """Send e.g. ``notify(READY=1, STATUS="running")``; False when not under systemd or on error."""
        if self._socket is None or self.address is None:
            return False
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            self._socket.sendto(message, address)
            return True
        except OSError:
            return False

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
