"""``{root}/telemetry``: how the node itself is doing, every ``telemetry_seconds``.

Read straight from /proc and /sys (no psutil on the Pi image).  Fields the board does not have
(no thermal zone in a container) are ``null`` rather than invented.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.events import rfc3339

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")  # the SoC sensor on a Pi 4/5
MEMINFO = Path("/proc/meminfo")


def cpu_temperature_c(zone: Path = THERMAL_ZONE) -> float | None:
    try:
        return round(int(zone.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def memory_mb(meminfo: Path = MEMINFO) -> dict[str, float | None]:
    values: dict[str, int] = {}
    try:
        for line in meminfo.read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                values[key] = int(rest.split()[0])  # kB
    except (OSError, ValueError, IndexError):
        pass
    total, available = values.get("MemTotal"), values.get("MemAvailable")
    return {"total_mb": round(total / 1024, 1) if total else None,
            "available_mb": round(available / 1024, 1) if available else None}


def disk_free_mb(path: Path) -> float | None:
    try:
        return round(shutil.disk_usage(path).free / 2**20, 1)
    except OSError:
        return None


def system_telemetry(state_dir: Path) -> dict[str, Any]:
    try:
        load = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        load = None
    return {
        "ts": rfc3339(datetime.now(UTC)),
        "cpu_temp_c": cpu_temperature_c(),
        "load": load,
        "memory": memory_mb(),
        "disk_free_mb": disk_free_mb(state_dir),
    }


def outbox_telemetry(pending: int, oldest: datetime | None, in_flight: int) -> dict[str, Any]:
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else None
    return {"pending": pending, "oldest_pending_age_s": round(age, 1) if age is not None else None,
            "in_flight": in_flight}
