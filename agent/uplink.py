"""The MQTT uplink: one thread that owns the broker connection.

Each connection attempt gets a fresh paho client driven by our own loop, so that reconnects follow
our backoff (exponential with full jitter) and nothing paho buffered for a dead connection is
replayed behind our back: the outbox in SQLite is the only queue.  On every CONNACK the thread
resubscribes to ``{root}/cmd/+`` (the persistent session may have survived, a restarted broker
has not), publishes ``online`` and every retained state again, and resumes the outbox from the
oldest undelivered event.  Topics and payloads: docs/mqtt.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import sqlite3
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.config import NodeConfig
from agent.config_files import FileCheckError, read_public_key_file
from agent.config_mqtt import MqttConfig
from agent.event_store import EventStore
from agent.events import check_details
from agent.node_faults import NodeFaults
from agent.recorder import Recorder
from agent.signing import ReplayCache
from agent.uplink_commands import CommandHandler, CommandTarget
from agent.uplink_discovery import discovery_messages
from agent.uplink_publisher import BacklogGuard, Emit, OutboxPublisher
from agent.uplink_telemetry import outbox_telemetry, system_telemetry

__all__ = ["CommandTarget", "Uplink", "full_jitter_delay"]

log = logging.getLogger(__name__)

LOOP_SECONDS = 0.05  # network poll; also the worst-case latency of a new event
CONNACK_TIMEOUT = 10.0
STABLE_SECONDS = 10.0  # a connection that lasted this long resets the backoff
BACKLOG_CHECK_SECONDS = 10.0
REFUSAL_EVENTS_PER_MINUTE = 10  # audit events for refused signed commands; a flood must not fill the outbox
STORAGE_CHECK_SECONDS = 1.0  # how often delivery marks and command ids the disk refused are retried
OUTBOX_FAULT, REPLAY_FAULT = "storage/outbox", "storage/replay"  # NodeFaults components


def full_jitter_delay(attempt: int, initial: float, maximum: float, rng: Callable[[], float] = random.random) -> float:
    """delay = random(0, min(maximum, initial * 2**attempt)): spreads a fleet over the whole window."""
    return rng() * min(maximum, initial * 2 ** min(attempt, 32))


def check_no_personal_data(value: dict[str, Any]) -> None:
    """State and telemetry follow the event rules: no names, images or templates (ValueError)."""
    check_details(value)


class Uplink:
    def __init__(self, config: MqttConfig, node: NodeConfig, store: EventStore, target: CommandTarget,
                 emit: Emit, *, faults: NodeFaults | None = None, recorder: Recorder | None = None) -> None:
        self.config = config
        self.root = config.root(node)
        self.client_id = config.effective_client_id(node)
        self._store = store
        self._target = target
        self._emit = emit
        self._v5 = config.protocol == "5"
        self._publisher = OutboxPublisher(store, self.root, config.outbox.max_in_flight)
        store.add_listener(lambda _stored: self._publisher.notify())
        self._backlog = BacklogGuard(store, config.outbox, emit, lambda value: self.publish_state("uplink", value))
        self._replay = ReplayCache(store.path.parent / "seen_commands.sqlite",
                                   config.command_max_age + config.command_clock_skew, store.reports)
        public_key = None
        if config.command_public_key is not None:
            try:  # the rule check-config applies; without the key the uplink runs and refuses signed commands
                public_key = read_public_key_file(config.command_public_key, "command public key")
            except FileCheckError as exc:
                reason = f"{exc}; signed commands are refused until it is fixed"
                if faults is not None:
                    faults.report("config/mqtt.command_public_key", reason)
                else:
                    log.error("%s", reason)
        self._commands = CommandHandler(
            target, node=f"{node.site}/{node.building}/{node.node_id}", public_key=public_key,
            replay=self._replay, max_age=config.command_max_age, clock_skew=config.command_clock_skew,
            allow_unsigned=frozenset(config.allow_unsigned), on_refused=self._command_refused, recorder=recorder,
        )
        self._faults = faults or NodeFaults(emit)
        self._outbox_write_error: str | None = None  # the outbox check SQLite refused; None once it works
        self._lock = threading.Lock()
        self._states: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()
        self._refusals: deque[float] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = False
        self._connected_since = 0.0
        self._session_failed = False
        self.connects = 0
        self.last_connected_at: float | None = None  # time.time() of the last CONNACK
        self.last_error: str | None = None

    # --- public API -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("uplink already started")
        self._thread = threading.Thread(target=self._run, name="mqtt-uplink", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Publish ``offline``, disconnect cleanly (no Last Will) and stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._replay.persist_unsaved() is not None:  # a restart forgets them: docs/durability.md
            log.error("%d accepted command id(s) could not be saved before exit", self._replay.unsaved)
        self._replay.close()

    def publish_state(self, key: str, value: dict[str, Any]) -> None:
        """Retained ``{root}/state/{key}``; latest value wins; re-published on every connect."""
        parts = key.split("/")
        if not all(part and all(c.isalnum() or c in "_-" for c in part) for part in parts):
            raise ValueError(f"state key {key!r}: use names like gate/main (letters, digits, _ and -)")
        check_no_personal_data(value)
        with self._lock:
            self._states[key] = dict(value)
            self._dirty.add(key)

    def health(self) -> dict[str, Any]:
        return {
            "connected": self._connected, "in_flight": self._publisher.in_flight,
            "pending": self._store.pending_count(), "last_error": self.last_error, "connects": self.connects,
            "last_connected_at": self.last_connected_at, "backlog_full": self._backlog.full,
            "published": self._publisher.published, "delivered": self._publisher.delivered,
            "commands": self._commands.handled,
        }

    def handle_command(self, name: str, payload: bytes) -> dict[str, Any]:
        """The command path without the broker (used by tests and ``edge-agent cmd`` tooling)."""
        return self._commands.handle(name, payload)

    # --- the connection thread --------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        next_check = 0.0
        while not self._stop.is_set():
            self._check_storage()
            try:
                stable = self._one_connection()
            except Exception as exc:  # a paho or SQLite surprise must not end the uplink thread for good
                log.exception("uplink connection failed")
                self.last_error, stable = f"internal: {type(exc).__name__}: {exc}", False
            if self._stop.is_set():
                break
            failures = 0 if stable else failures + 1
            delay = full_jitter_delay(failures, self.config.backoff.initial, self.config.backoff.max)
            deadline = time.monotonic() + delay
            while not self._stop.is_set() and time.monotonic() < deadline:
                if time.monotonic() >= next_check:  # the outbox fills fastest while we are offline
                    next_check = time.monotonic() + BACKLOG_CHECK_SECONDS
                    self._check_backlog()
                self._check_storage()
                self._stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))

    def _one_connection(self) -> bool:
        """Connect, serve until the connection is lost or we stop; True if it was up long enough."""
        self._publisher.reset()
        self._session_failed = False
        try:
            client = self._new_client()
            client.connect(self.config.host, self.config.port, self.config.keepalive, **self._connect_args())
        except Exception as exc:  # DNS, refused, TLS verification, unreadable password file, ...
            self.last_error = f"connect: {type(exc).__name__}: {exc}"
            log.warning("MQTT %s", self.last_error)
            return False
        started = time.monotonic()
        next_telemetry = next_check = next_storage_check = 0.0
        try:
            while not self._stop.is_set():
                rc = client.loop(timeout=LOOP_SECONDS)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    self.last_error = f"connection lost: {mqtt.error_string(rc)}"
                    break
                if self._session_failed:
                    break
                if not self._connected:
                    if time.monotonic() - started > CONNACK_TIMEOUT:
                        self.last_error = "no CONNACK from the broker"
                        break
                    continue
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + BACKLOG_CHECK_SECONDS
                    self._check_backlog()
                self._publisher.flush()
                if now >= next_storage_check:
                    next_storage_check = now + STORAGE_CHECK_SECONDS
                    self._check_storage()
                self._publish_dirty_states(client)
                self._publisher.pump(client)
                if now >= next_telemetry:
                    next_telemetry = now + self.config.telemetry_seconds
                    self._publish_telemetry(client)
            if self._stop.is_set() and self._connected:
                with contextlib.suppress(Exception):  # the broker may be gone already: no goodbye then
                    self._say_goodbye(client)
        finally:
            was_connected = self._connected
            lasted = time.monotonic() - self._connected_since if was_connected else 0.0
            self._publisher.reset()  # flushes the PUBACKs that did arrive before we say "disconnected"
            self._connected = False
            window = self.config.outbox.resend_window
            if was_connected and not self._stop.is_set() and window > 0:
                self._resend_recent(window)
            with contextlib.suppress(Exception):  # the socket may already be gone
                client.disconnect()
        return lasted >= STABLE_SECONDS

    def _new_client(self) -> mqtt.Client:
        config = self.config
        if self._v5:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        else:  # 3.1.1: a persistent session is clean_session=False
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 protocol=mqtt.MQTTv311, clean_session=False)
        client.max_inflight_messages_set(config.outbox.max_in_flight + 100)  # room for state and results
        client.max_queued_messages_set(0)
        client.will_set(f"{self.root}/status", "offline", qos=1, retain=True)
        if config.username is not None:
            password = config.password.read_bytes().decode().strip() if config.password else None
            client.username_pw_set(config.username, password)
        if config.tls is not None:
            tls = config.tls
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
            client.tls_insecure_set(not tls.verify)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _connect_args(self) -> dict[str, Any]:
        if not self._v5:
            return {}
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.config.session_expiry
        return {"clean_start": False, "properties": properties}

    # --- paho callbacks (all in the connection thread) ------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.warning("MQTT %s", self.last_error)
            self._session_failed = True
            return
        self._connected, self._connected_since = True, time.monotonic()
        self.connects += 1
        self.last_connected_at = time.time()
        topic = f"{self.root}/cmd/+"
        if self._v5:  # no_local: our own cmd/result does not come back to us
            client.subscribe((topic, SubscribeOptions(qos=1, noLocal=True)))
        else:
            client.subscribe(topic, qos=1)
        client.publish(f"{self.root}/status", "online", qos=1, retain=True)
        try:
            snapshot = self._target.state()
        except Exception as exc:
            log.exception("target.state() failed")
            snapshot, self.last_error = {}, f"state: {exc}"
        with self._lock:
            for key, value in snapshot.items():
                try:
                    check_no_personal_data(value)
                except ValueError:
                    log.exception("state %s refused", key)
                    continue
                self._states[key] = dict(value)  # the target knows best
            self._dirty = set(self._states)  # a restarted broker lost every retained message
        if self.config.home_assistant:
            for key in list(self._states):
                for message in discovery_messages(key, root=self.root, unique=self.client_id,
                                                  prefix=self.config.discovery_prefix):
                    client.publish(message.topic, message.payload, qos=1, retain=True)
        log.info("MQTT connected to %s:%d as %s", self.config.host, self.config.port, self.client_id)

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        prefix = f"{self.root}/cmd/"
        if not message.topic.startswith(prefix):
            return
        name = message.topic[len(prefix):]
        if name == "result":  # MQTT 3.1.1 has no no_local: our own results arrive here
            return
        result = self._commands.handle(name, bytes(message.payload))
        client.publish(f"{self.root}/cmd/result", json.dumps(result, separators=(",", ":")), qos=1)
        if self._replay.unsaved:
            self._check_storage()  # the fault is said with the command that met it, not a second later

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason: Any, _props: Any) -> None:
        if not self._publisher.acknowledged(mid, failed=bool(reason.is_failure)):
            self.last_error = f"broker refused an event: {reason}"
            self._session_failed = True

    # --- periodic work -------------------------------------------------------------------------

    def _publish_dirty_states(self, client: mqtt.Client) -> None:
        with self._lock:
            if not self._dirty:
                return
            batch = {key: self._states[key] for key in self._dirty}
            self._dirty = set()
        for key, value in batch.items():
            client.publish(f"{self.root}/state/{key}", json.dumps(value, separators=(",", ":")), qos=1, retain=True)

    def _publish_telemetry(self, client: mqtt.Client) -> None:
        try:
            payload: dict[str, Any] = dict(self._target.telemetry())
            check_no_personal_data(payload)
        except Exception as exc:
            log.exception("target.telemetry() failed")
            payload = {"target_error": type(exc).__name__}
        payload.update(system_telemetry(self._store.path.parent))
        payload["outbox"] = outbox_telemetry(self._store.pending_count(), self._store.oldest_pending_ts(),
                                             self._publisher.in_flight)
        client.publish(f"{self.root}/telemetry", json.dumps(payload, separators=(",", ":")), qos=0)

    def _check_backlog(self) -> None:
        try:
            self._backlog.check()
            self._outbox_write_error = None
        except (sqlite3.Error, OSError) as exc:  # a locked or full disk: a fault, not a traceback every 10 s
            self.last_error = f"outbox check: {exc}"
            self._outbox_write_error = f"cannot bound the outbox in {self._store.path}: {exc}"
            self._check_storage()
        except Exception as exc:  # nothing may stop the uplink thread
            log.exception("outbox check failed")
            self.last_error = f"outbox check: {exc}"

    def _resend_recent(self, window: float) -> None:
        """After an unexpected disconnect, events acknowledged in the last ``window`` seconds go out again."""
        requeued = self._publisher.resend_acknowledged_since(time.time() - window)
        try:
            requeued += self._store.requeue_delivered_since(datetime.now(UTC) - timedelta(seconds=window))
        except (sqlite3.Error, OSError) as exc:  # a full disk: those marked already stay marked
            log.warning("cannot requeue the events acknowledged in the last %.0f s: %s", window, exc)
        if requeued:
            log.info("connection lost: sending the last %d acknowledged events again", requeued)

    def _check_storage(self) -> None:
        """Retry what the disk refused (delivery marks, command ids) and report or clear the faults."""
        self._publisher.flush()
        if self._publisher.mark_error is not None:
            self._faults.report(OUTBOX_FAULT, f"cannot mark {self._publisher.unmarked} delivered event(s) in "
                                              f"{self._store.path}: {self._publisher.mark_error}; kept in memory, "
                                              "not sent again (full disk? df -h)")
        elif self._outbox_write_error is not None:
            self._faults.report(OUTBOX_FAULT, self._outbox_write_error)
        elif self._publisher.unmarked == 0 and self._faults.failing(OUTBOX_FAULT):
            self._faults.clear(OUTBOX_FAULT)
        error = self._replay.persist_unsaved()
        if error is not None:
            self._faults.report(REPLAY_FAULT, f"cannot save {self._replay.unsaved} command id(s) beside "
                                              f"{self._store.path}: {error}; replays are refused from memory "
                                              "until it works (full disk? df -h)")
        elif self._faults.failing(REPLAY_FAULT):
            self._faults.clear(REPLAY_FAULT)

    def _command_refused(self, name: str, command_id: str | None, reason: str) -> None:
        now = time.monotonic()
        while self._refusals and now - self._refusals[0] > 60:
            self._refusals.popleft()
        if len(self._refusals) < REFUSAL_EVENTS_PER_MINUTE:
            self._refusals.append(now)
            self._emit("uplink.command_refused", None, {"command": name, "command_id": command_id, "reason": reason})

    def _say_goodbye(self, client: mqtt.Client) -> None:
        """Clean shutdown: retained ``offline`` and a normal DISCONNECT, so the broker drops the Will."""
        info = client.publish(f"{self.root}/status", "offline", qos=1, retain=True)
        deadline = time.monotonic() + 1.0
        while not info.is_published() and time.monotonic() < deadline:
            if client.loop(timeout=LOOP_SECONDS) != mqtt.MQTT_ERR_SUCCESS:
                return
            self._publisher.flush()
        self._publisher.flush()
        client.disconnect()
        client.loop(timeout=LOOP_SECONDS)
