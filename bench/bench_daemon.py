"""Daemon figures: cold start to READY=1; CPU with one replay camera at 15 fps; CPU with face
recognition watching an empty scene; resident memory with 10,000 people in the whitelist.

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

from agent.simulation_media import generate_street_video  # noqa: E402

RUNS = 5
CPU_SECONDS = 20.0


def config_text(state_dir: Path, video: Path | None, watches_gate: bool = False, key: Path | None = None) -> str:
    gate = ", gate: main" if watches_gate else ""
    camera = (f"  cameras:\n    - {{name: door, source: {video}, fps: 15, resolution: [640, 360]{gate},"
              " replay: {realtime: true, loop: true}}\n") if video else ""
    whitelist = f"whitelist: {{key: {{file: {key}}}}}\n" if key else ""
    return (f"node: {{site: s, building: b, node_id: n}}\nhardware:\n  pin_factory: mock\n"
            f"  gates:\n    - {{name: main, lock_relay: 17, door_contact: 27, exit_button: 22}}\n"
            f"  smoke_detectors:\n    - {{name: lobby, alarm_pin: 24}}\n{camera}"
            f"storage: {{state_dir: {state_dir}}}\n{whitelist}")


def empty_scene_video(path: Path, seconds: float = 10.0, fps: float = 15.0) -> None:
    """The entrance with nobody in it: a still background and a camera's sensor noise."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(3)
    background = np.full((360, 640, 3), (120, 130, 125), np.uint8)
    cv2.rectangle(background, (213, 45), (426, 288), (60, 65, 75), -1)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 360))
    for _ in range(int(seconds * fps)):
        noise = rng.integers(-3, 4, background.shape, dtype=np.int16)
        writer.write(np.clip(background.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    writer.release()


def big_whitelist(state_dir: Path, key: Path, people: int = 10_000, templates: int = 3) -> None:
    import numpy as np

    from agent.whitelist import Person, Whitelist
    from agent.whitelist_store import WhitelistStore, read_key_file, write_new_key

    write_new_key(key)
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(people, templates, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    WhitelistStore(state_dir / "whitelist.bin", read_key_file(key)).save(
        Whitelist(Person(id=f"R-{i // 100:04d}-{i % 100}", templates=vectors[i]) for i in range(people)))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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


def daemon_cpu(config: Path, notify: Path) -> tuple[float, float]:
    """(% of a core over CPU_SECONDS, peak RSS in MB) of a running daemon."""
    process, _ = start_daemon(config, notify)
    time.sleep(3.0)  # let the camera settle into its pace and the models load
    before, t0 = cpu_seconds(process.pid), time.perf_counter()
    peak = rss_mb(process.pid)
    while time.perf_counter() - t0 < CPU_SECONDS:
        time.sleep(0.5)
        peak = max(peak, rss_mb(process.pid))
    used = (cpu_seconds(process.pid) - before) / (time.perf_counter() - t0)
    stop(process)
    return used * 100, peak


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

        (idle, idle_rss), (camera, _) = daemon_cpu(bare, notify), daemon_cpu(with_camera, notify)
        decode = decode_loop_cpu(video)
        print(f"daemon CPU with one replay camera at 15 fps (640x360): {camera:.1f}% of a core over "
              f"{CPU_SECONDS:.0f} s [baselines: daemon without camera {idle:.1f}%, "
              f"bare OpenCV decode at 15 fps {decode:.1f}%]")

        empty = tmp_path / "empty.avi"
        empty_scene_video(empty)
        key = tmp_path / "whitelist.key"
        faces = tmp_path / "faces.yaml"
        faces.write_text(config_text(tmp_path / "state-faces", empty, watches_gate=True, key=key))
        big_whitelist(tmp_path / "state-faces", key)
        face_cpu, face_rss = daemon_cpu(faces, notify)
        print(f"daemon with face recognition on an empty scene at 15 fps: {face_cpu:.1f}% of a core "
              f"[baseline: the same camera without recognition {camera:.1f}%]")
        print(f"daemon RSS with 10,000 people x 3 templates and the face models loaded: {face_rss:.0f} MB "
              f"[baseline: daemon with no camera and no whitelist {idle_rss:.0f} MB]")


if __name__ == "__main__":
    main()
