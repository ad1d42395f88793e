"""Daemon figures: cold start to READY=1, and CPU with one replay camera at 15 fps.

Run on one core (``make bench`` uses ``taskset -c 0``). Each figure stands beside a baseline measured
in the same run, because shared machines are noisy: a bare interpreter start for the cold start, and
for CPU the same daemon with no camera plus a bare OpenCV decode loop at 15 fps.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.simulation import generate_street_video  # noqa: E402

RUNS = 5
CPU_SECONDS = 20.0


def config_text(state_dir: Path, video: Path | None) -> str:
    camera = (f"  cameras:\n    - {{name: door, source: {video}, fps: 15, resolution: [640, 360],"
              " replay: {realtime: true, loop: true}}\n") if video else ""
    return (f"node: {{site: s, building: b, node_id: n}}\nhardware:\n  pin_factory: mock\n"
            f"  gates:\n    - {{name: main, lock_relay: 17, door_contact: 27, exit_button: 22}}\n"
            f"  smoke_detectors:\n    - {{name: lobby, alarm_pin: 24}}\n{camera}"
            f"storage: {{state_dir: {state_dir}}}\n")


def start_daemon(config: Path, notify_path: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start `edge-agent run` and return it with the seconds until it sent READY=1."""
    notify_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(60)
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(config)], cwd=ROOT,
                               env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while b"READY=1" not in sock.recv(4096):
            pass
        return process, time.perf_counter() - started
    finally:
        sock.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(10)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def daemon_cpu(config: Path, notify: Path) -> float:
    process, _ = start_daemon(config, notify)
    time.sleep(2.0)  # let the camera settle into its pace
    before, t0 = cpu_seconds(process.pid), time.perf_counter()
    time.sleep(CPU_SECONDS)
    used = (cpu_seconds(process.pid) - before) / (time.perf_counter() - t0)
    stop(process)
    return used * 100


def decode_loop_cpu(video: Path) -> float:
    """Baseline: the least any 15 fps replay can cost: decode one frame every 1/15 s, nothing else."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    before, t0 = time.process_time(), time.perf_counter()
    next_at = t0
    while time.perf_counter() - t0 < CPU_SECONDS:
        ok, _ = capture.read()
        if not ok:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        next_at += 1 / 15
        time.sleep(max(0.0, next_at - time.perf_counter()))
    return (time.process_time() - before) / (time.perf_counter() - t0) * 100


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        video = tmp_path / "door.avi"
        generate_street_video(video, seconds=10, fps=15, size=(640, 360))
        bare, with_camera = tmp_path / "bare.yaml", tmp_path / "camera.yaml"
        bare.write_text(config_text(tmp_path / "state-bare", None))
        with_camera.write_text(config_text(tmp_path / "state-cam", video))
        notify = tmp_path / "notify.sock"

        interpreter, ready = [], []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            interpreter.append(time.perf_counter() - t0)
            process, seconds = start_daemon(with_camera, notify)
            ready.append(seconds)
            stop(process)
        print(f"cold start to READY=1 (median of {RUNS}): {statistics.median(ready) * 1000:.0f} ms "
              f"[baseline: bare python start {statistics.median(interpreter) * 1000:.0f} ms]")

        idle = daemon_cpu(bare, notify)
        camera = daemon_cpu(with_camera, notify)
        decode = decode_loop_cpu(video)
        print(f"daemon CPU with one replay camera at 15 fps (640x360): {camera:.1f}% of a core over "
              f"{CPU_SECONDS:.0f} s [baselines: daemon without camera {idle:.1f}%, "
              f"bare OpenCV decode at 15 fps {decode:.1f}%]")


if __name__ == "__main__":
    main()
