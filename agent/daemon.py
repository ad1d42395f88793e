"""The edge-agent daemon: configuration → drivers → events, supervised by systemd.

The main thread only supervises (signals, reloads, watchdog, housekeeping); devices report from
their own threads.  Fire safety never waits on this loop: see :mod:`agent.fire`.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpiozero import Factory

from agent.access import AccessController, UnreadPlateExits, face_gate_lines
from agent.agent_config import AgentConfig
from agent.config import HardwareConfig
from agent.config_files import named_file_problems
from agent.config_loader import ConfigError, load_config
from agent.control import ControlServer
from agent.event_store import EventStore
from agent.events import Event
from agent.fire import FireSafety, ResetRefused
from agent.hardware import Hardware, build_hardware
from agent.node_faults import NodeFaults
from agent.notify import SystemdNotifier
from agent.parking import Parking
from agent.recorder import Recorder
from agent.sqlite_files import StorageReports
from agent.vision import Models, VisionWorker, start_workers
from agent.whitelist_watch import WhitelistWatch
from drivers.pins import make_pin_factory

if TYPE_CHECKING:
    from agent.uplink import Uplink

log = logging.getLogger("edge_agent")

TICK_SECONDS = 0.5
PURGE_EVERY_SECONDS = 3600.0
STATE_EVERY_SECONDS = 1.0
UPLINK_RETRY_SECONDS = 60.0
STORAGE_RETRY_SECONDS = 5.0  # files the disk refused (a full SD card) are tried this often
ACK_TIMEOUT_SECONDS = 2.0  # longest a reply waits for its events' commit (docs/durability.md)
NOT_RECORDED = ("its event is NOT on disk yet ({reason}); it is kept in memory and written as soon as the disk "
                "takes it (see `edge-agent status`)")


class Agent:
    """One running node. ``start()``, then ``run()`` in the main thread, or ``stop()`` from anywhere."""

    def __init__(self, config: AgentConfig, *, config_path: Path | None = None,
                 pin_factory: Factory | None = None, notifier: SystemdNotifier | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.notifier = notifier or SystemdNotifier()
        state_dir = config.storage.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.storage = StorageReports()  # damaged files healed at open are recorded once events can be
        self.store = EventStore(state_dir / "events.db", reports=self.storage)
        self.fire = FireSafety(state_dir / "fire_latch.json")
        self.pin_factory = pin_factory or make_pin_factory(config.hardware.pin_factory)
        self.hardware = Hardware()  # no devices until start()
        self.models = Models()
        self.parking = Parking(config.parking, state_dir / "parking.db", self.emit, self.storage)
        self.unread_exits = UnreadPlateExits(lambda: self.hardware.barriers, self.parking, self.emit)
        self.workers: list[VisionWorker] = []
        self.uplink: Uplink | None = None
        self.control = ControlServer(state_dir, self.handle_control)
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.listeners: list[Callable[[Event], None]] = []
        self.faults = NodeFaults(self.emit)
        self.recorder = Recorder(self._record, faults=self.faults, emit=self.emit, where=str(self.store.path))
        self.whitelist = WhitelistWatch(config, config_path, self.faults)  # reports through faults
        self._last_state: dict[str, dict[str, Any]] = {}
        self._state_listeners: list[Callable[[str, dict[str, Any]], None]] = []

    # -- events -----------------------------------------------------------------------------------
    def emit(self, type_: str, device: str | None = None, details: dict[str, Any] | None = None) -> Event:
        """Record an event. Never blocks the caller: drivers call this from their pin callback threads,
        and a slow disk must not delay the next door, button or smoke edge."""
        event = Event(node=self.config.node.node_id, type=type_, device=device, details=details or {})
        log.info("%s%s %s", type_, f" {device}" if device else "",
                 " ".join(f"{k}={v}" for k, v in event.details.items()))
        self.recorder.put(event)
        return event

    def _record(self, events: list[Event]) -> None:
        """The recorder's write: one transaction; an error leaves the events with the recorder, which
        keeps them and reports the fault (so no traceback here: a full disk would make one a second)."""
        self.store.append_many(events)
        for event in events:
            for listener in list(self.listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception("event listener failed")

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self.recorder.start()
        hw = self.config.hardware
        self.emit("agent.started", None, {
            "gates": len(hw.gates), "barriers": len(hw.barriers), "smoke_detectors": len(hw.smoke_detectors),
            "cameras": len(hw.cameras), "fire_latched": self.fire.latched,
        })
        self.storage.attach(self.emit, self.faults)  # storage.recovered / node.fault for files healed at open
        self.hardware = self._build_hardware(hw)
        self._start_workers()
        self.hardware.start_cameras()
        # Beyond the pins, nothing may stop the node: what fails is reported and the rest runs.
        try:
            self.control.start()
        except OSError as exc:
            self.faults.report("control", f"the control socket could not be opened ({exc}); "
                                          "edge-agent status and alarm reset cannot reach the agent")
        for problem in named_file_problems(self.config):  # check-config's rule: a fault here, never an exit
            if problem.key not in ("whitelist.key.file", "whitelist.file"):  # the whitelist watch says those
                self.faults.report(problem.component, problem.message)
        self._start_uplink()
        self.notifier.notify(READY=1, STATUS=self.status_line())

    def _start_workers(self) -> None:
        def failed(camera: str, exc: Exception) -> None:
            self.faults.report(f"recognition/{camera}", f"recognition could not start, nobody is recognised "
                                                        f"there until a reload: {type(exc).__name__}: {exc}")

        for camera in list(self.faults.active()):
            if camera.startswith("recognition/"):
                self.faults.clear(camera)  # tried again below
        self.workers = start_workers(self.config, self.hardware, self._access(), self.models, on_failure=failed)

    def _start_uplink(self) -> None:
        """Without an uplink events wait in the outbox; a failed start is tried again every minute."""
        if self.config.mqtt is None or self.uplink is not None:
            return
        from agent.uplink import Uplink

        connection_files = ("mqtt.tls.", "mqtt.password.")
        blocked = [p.key for p in named_file_problems(self.config) if p.key.startswith(connection_files)]
        if blocked:
            self.faults.report("uplink", f"not started: fix {', '.join(blocked)} (tried again every minute); "
                                         "events wait in the outbox")
            return
        try:
            uplink = Uplink(self.config.mqtt, self.config.node, self.store, self, self.emit, faults=self.faults,
                            recorder=self.recorder)
        except Exception as exc:
            self.faults.report("uplink", f"the uplink could not start, events wait on the node: "
                                         f"{type(exc).__name__}: {exc}")
            return
        for component in self.faults.active():
            if component == "uplink" or component.startswith(tuple(f"config/{key}" for key in connection_files)):
                self.faults.clear(component)  # its files were mended since
        self.uplink = uplink
        self.on_state_change(uplink.publish_state)
        uplink.start()

    def _build_hardware(self, config: HardwareConfig) -> Hardware:
        return build_hardware(config, self.pin_factory, self.fire, self.emit,
                              vehicle_passed=self.parking.vehicle_passed,
                              vehicle_waiting=self.unread_exits.vehicle_waiting)

    def _access(self) -> AccessController:
        from models.plate_match import match_plate

        plates = self.config.plates
        # A high-security barrier may allow fewer edits than the site (0: only an exact read).
        edits = {barrier.name: plates.max_edit_distance if barrier.max_edit_distance is None else
                 barrier.max_edit_distance for barrier in self.config.hardware.barriers}
        return AccessController(
            self.hardware, lambda: self.whitelist.current(), self.emit,  # the watch is replaced on reload
            plate_match=lambda read, known, barrier: match_plate(
                read.text, known, edits.get(barrier, plates.max_edit_distance), read.alternatives),
            upstream_plate=plates.upstream_plate, plate_key=self._plate_key(), parking=self.parking,
        )

    def _plate_key(self) -> bytes | None:
        store = self.whitelist.store
        return store.derived_key("plate pseudonyms") if store is not None else None

    def run(self) -> int:
        """Supervise until stopped. Call from the main thread after :meth:`start`."""
        watchdog = self.notifier.watchdog_interval
        last_ping = last_purge = last_state = last_uplink_try = last_storage_try = 0.0
        while not self.stopping.wait(TICK_SECONDS):
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self._step("reload", self._reload_now)
            now = time.monotonic()
            self._step("whitelist-refresh", self.whitelist.refresh)
            if watchdog and now - last_ping >= watchdog and self.healthy():
                self.notifier.notify(WATCHDOG=1)
                last_ping = now
            if now - last_state >= STATE_EVERY_SECONDS:
                last_state = now
                self._step("state", self._publish_changed_state)
            if self.uplink is None and now - last_uplink_try >= UPLINK_RETRY_SECONDS:
                last_uplink_try = now
                self._step("uplink-start", self._start_uplink)
            if now - last_storage_try >= STORAGE_RETRY_SECONDS:
                last_storage_try = now
                self._step("storage", self._retry_storage)
            if now - last_purge >= PURGE_EVERY_SECONDS:
                last_purge = now
                self._step("purge", self._purge)
        self.shutdown()
        return 0

    def _retry_storage(self) -> None:
        """What the disk refused is written once it takes it: the events log reopened, car-park counts."""
        self.store.retry_file()
        self.parking.flush()

    def _step(self, name: str, step: Callable[[], object]) -> None:
        """One supervisor step. An exception is a fault (traceback logged once), never the end of the
        loop: the loop is what reloads, pings the watchdog and shuts the node down cleanly."""
        component = f"supervisor/{name}"
        try:
            step()
        except Exception as exc:
            if self.faults.report(component, f"{type(exc).__name__}: {exc}"):
                log.exception("supervisor step %s failed", name)
        else:
            self.faults.clear(component)  # nothing when it was not failing

    def stop(self) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        self.notifier.notify(STOPPING=1, STATUS="stopping")
        for worker in self.workers:
            worker.stop(timeout=1.0)
        for gate in self.hardware.gates.values():
            if self.fire.latched and gate.config.fire_mode == "release":
                log.warning("gate %s stays released: the fire alarm is latched", gate.name)
                continue
            gate.to_safe_state()
        self.unread_exits.close()
        self.hardware.close()
        self.parking.close()
        self.control.stop()
        self.emit("agent.stopped", None, {})
        if not self.recorder.stop(timeout=2.0):
            log.error("%d events could not be written before exit", self.recorder.backlog)
        if self.uplink is not None:
            self.uplink.stop(timeout=1.5)  # what it could not send waits in the outbox for next time
        self.store.close()
        self.notifier.close()

    def reload(self) -> None:
        """Ask the main loop to re-read the config file (SIGHUP, the platform's ``reload`` command)."""
        self.reload_requested.set()

    def _reload_now(self) -> bool:
        """Re-read the config file. An invalid file keeps the running config and says why."""
        if self.config_path is None:
            return False
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration:\n%s", exc.report())
            self.notifier.notify(STATUS="reload refused: invalid config (see journal)")
            return False
        if new.storage != self.config.storage or new.node != self.config.node or new.mqtt != self.config.mqtt or \
                new.hardware.pin_factory != self.config.hardware.pin_factory:
            log.warning("node, storage, mqtt and pin_factory changes take effect after a restart")
            new = new.model_copy(update={"node": self.config.node, "storage": self.config.storage,
                                         "mqtt": self.config.mqtt})
        self.notifier.notify(RELOADING=1, STATUS="reloading")
        old_config = self.config
        for worker in self.workers:
            worker.stop(timeout=1.0)
        # In place: devices whose settings did not change (smoke detectors, released exits) keep
        # running through the reload; see Hardware.reconfigure.
        try:
            self.hardware.reconfigure(new.hardware)
            self.config = new
        except Exception:
            log.exception("reload failed while opening devices; going back to the previous configuration")
            try:
                self.hardware.reconfigure(old_config.hardware)
            except Exception as exc:  # keep what runs: the fire controller is bound to every gate built
                self.faults.report("hardware", f"reload could not rebuild every device: {exc}")
        self.parking.configure(self.config.parking)
        self.whitelist = WhitelistWatch(self.config, self.config_path, self.faults)  # before _access(): hashes plates
        self._start_workers()
        self.hardware.start_cameras()
        self.emit("agent.reloaded", None, {"ok": self.config is new})
        self.notifier.notify(READY=1, STATUS=self.status_line())
        return self.config is new

    # -- health and state -------------------------------------------------------------------------
    def healthy(self) -> bool:
        return self.recorder.healthy() and not self.stopping.is_set()

    def status_line(self) -> str:
        if self.fire.latched:
            return "FIRE ALARM latched: exits released"
        parts = [f"{len(self.hardware.gates)} gate(s)", f"{len(self.hardware.smoke_detectors)} smoke detector(s)",
                 f"{len(self.hardware.cameras)} camera(s)"]
        faults = self.faults.active()
        if faults:
            parts.append(f"FAULT: {', '.join(faults)}")
        return "running: " + ", ".join(parts)

    def state(self) -> dict[str, dict[str, Any]]:
        return {**self.hardware.state(), **self.parking.state(), "fire": self.fire.state(),
                "node": {"ok": not self.faults.active(), "faults": self.faults.active()}}

    def on_state_change(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        self._state_listeners.append(listener)

    def _publish_changed_state(self) -> None:
        state = self.state()
        for key, value in state.items():
            if self._last_state.get(key) != value:
                for listener in list(self._state_listeners):
                    try:
                        listener(key, value)
                    except Exception:
                        log.exception("state listener failed")
        self._last_state = state

    def _purge(self) -> None:
        """A failure (a full disk) is the supervisor step's fault, tried again in an hour."""
        removed = self.store.purge(self.config.storage.retention_days, keep_undelivered=self.config.mqtt is not None)
        if removed:
            log.info("purged %d events older than %d days", removed, self.config.storage.retention_days)

    # -- platform commands (the uplink's CommandTarget) --------------------------------------------
    def open_gate(self, gate: str, seconds: float | None) -> None:
        """A signed remote open, e.g. for an elderly resident who pressed the assist button."""
        if gate in self.hardware.gates:
            if seconds is not None and not 0 < seconds <= 60:
                raise ValueError("seconds must be between 0 and 60")
            opened = self.hardware.gates[gate].unlock(seconds)
            self.hardware.signal("granted", gate)
            self.emit("gate.granted", gate, {"method": "remote", "seconds": opened})
        elif gate in self.hardware.barriers:
            self.hardware.barriers[gate].raise_arm()
            self.emit("gate.granted", gate, {"method": "remote"})
        else:
            raise ValueError(f"no gate or barrier named {gate!r}")

    def apply_whitelist_bundle(self, payload: dict[str, Any]) -> None:
        summary = self.whitelist.apply_bundle(payload, f"{self.config.node.site}/{self.config.node.building}/"
                                                       f"{self.config.node.node_id}")
        self.emit("whitelist.updated", None, {"source": "bundle", "summary": summary[:200]})

    def telemetry(self) -> dict[str, Any]:
        cameras: dict[str, dict[str, Any]] = {name: {"fps": round(camera.health().fps, 1)}
                                               for name, camera in self.hardware.cameras.items()}
        for worker in self.workers:  # is recognition keeping up, and what does an idle lane cost?
            cameras.setdefault(worker.name, {}).update(worker.figures())
        return {"cameras": cameras, "whitelist_people": len(self.whitelist.current()),
                "fire_latched": self.fire.latched}

    # -- technician commands ----------------------------------------------------------------------
    def alarm_reset(self, source: str) -> list[str]:
        in_alarm = [name for name, d in self.hardware.smoke_detectors.items() if d.input_active]
        detectors = self.fire.reset(in_alarm)
        self.notifier.notify(STATUS=self.status_line())
        self.emit("alarm.reset", None, {"source": source, "detectors": detectors})
        return detectors

    def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        """One control-socket request. A reply that acknowledges an event comes after its commit, with
        ``recorded: true``; if the disk cannot take it yet, ``recorded: false`` and a message saying so."""
        if request.get("cmd") == "status":
            return self._control(request)
        mark = self.recorder.mark()
        reply = self._control(request)
        recorded = self.recorder.written_since(mark, ACK_TIMEOUT_SECONDS)
        if recorded is not None:
            reply["recorded"] = recorded
            if not recorded:
                reason = self.recorder.failing or f"the write took over {ACK_TIMEOUT_SECONDS:.0f} s"
                note = NOT_RECORDED.format(reason=reason)
                reply["message"] = f"{reply.get('message', '')} ({note})".strip()
        return reply

    def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("cmd")
        if command == "status":
            uplink = None
            if self.uplink is not None:
                health = self.uplink.health()
                uplink = {key: health.get(key) for key in ("connected", "pending", "in_flight", "last_error",
                                                           "backlog_full")}
            return {"ok": True, "status": self.status_line(), "state": self.state(), "uplink": uplink,
                    "whitelist": {"people": len(self.whitelist.current()), "problem": self.whitelist.problem},
                    "faces": face_gate_lines(self.config, self.whitelist.current()),
                    "recognition": {worker.name: worker.figures() for worker in self.workers},
                    "events_waiting_for_disk": self.recorder.backlog, "faults": self.faults.active()}
        if command == "alarm_reset":
            try:
                detectors = self.alarm_reset(str(request.get("source", "cli")))
            except ResetRefused as exc:
                return {"ok": False, "message": str(exc)}
            return {"ok": True, "message": f"fire alarm reset ({', '.join(detectors) or 'no detector'})"}
        if command == "parking_set":
            try:
                state = self.parking.correct(str(request.get("name")), int(request.get("occupied", -1)),
                                             str(request.get("source", "cli")))
            except (TypeError, ValueError) as exc:
                return {"ok": False, "message": str(exc)}
            except sqlite3.Error as exc:  # parking.db refuses the write (a full disk): the count is unchanged
                return {"ok": False, "message": f"could not save the count ({exc}); it is unchanged: free space "
                                                f"in {self.config.storage.state_dir} and try again"}
            return {"ok": True, "message": f"{request.get('name')}: {state['occupied']} of {state['capacity']} "
                                           f"spaces taken, {state['spaces_left']} left"}
        return {"ok": False, "message": f"unknown command {command!r}"}


def run_daemon(config: AgentConfig, config_path: Path | None) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP reloads. Returns the process exit code."""
    agent = Agent(config, config_path=config_path)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    signal.signal(signal.SIGINT, lambda *_: agent.stop())
    signal.signal(signal.SIGHUP, lambda *_: agent.reload())
    agent.start()
    return agent.run()
