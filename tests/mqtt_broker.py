"""A real mosquitto (Debian's /usr/sbin/mosquitto) for tests and benches, on a free loopback port.

The broker runs with ``persistence false`` (a restart loses every session and retained message,
which is exactly what the uplink must survive).  Each broker is started with PR_SET_PDEATHSIG so it
dies with the test process even if pytest is SIGKILLed, and every broker still running at exit is
killed: the suite never leaves mosquitto processes behind.
"""

from __future__ import annotations

import atexit
import ctypes
import datetime as dt
import ipaddress
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = Path("/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = Path("/usr/bin/mosquitto_passwd")
_RUNNING: set[subprocess.Popen[bytes]] = set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass(frozen=True)
class BrokerTls:
    ca_file: Path
    cert_file: Path
    key_file: Path
    require_certificate: bool = True


class Mosquitto:
    """One broker process; ``kill()`` + ``start()`` is a broker restart that loses all state."""

    def __init__(self, workdir: Path, *, port: int | None = None, tls: BrokerTls | None = None,
                 passwords: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        self.passwords = passwords
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"mosquitto-{self.port}.log"

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            "max_queued_messages 0",  # no limit: a slow test subscriber must not lose QoS 1 messages
            "max_inflight_messages 0",
            "user root" if os.geteuid() == 0 else "",  # stay root in a container (no 'mosquitto' user files)
            f"log_dest file {self.log_path}",
            "log_type error", "log_type warning", "log_type notice",
        ]
        if self.passwords is not None:
            lines += ["allow_anonymous false", f"password_file {self._write_password_file()}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls is not None:
            lines += [f"cafile {self.tls.ca_file}", f"certfile {self.tls.cert_file}",
                      f"keyfile {self.tls.key_file}",
                      f"require_certificate {'true' if self.tls.require_certificate else 'false'}"]
        path = self.workdir / f"mosquitto-{self.port}.conf"
        path.write_text("\n".join(line for line in lines if line) + "\n")
        return path

    def _write_password_file(self) -> Path:
        password_file = self.workdir / f"passwords-{self.port}"
        password_file.write_text("")
        for user, password in (self.passwords or {}).items():
            subprocess.run([str(MOSQUITTO_PASSWD), "-b", str(password_file), user, password], check=True,
                           capture_output=True)
        return password_file

    def set_passwords(self, passwords: dict[str, str]) -> None:
        """Replace the users; a running broker rereads the file on SIGHUP (new logins only)."""
        self.passwords = passwords
        self._write_password_file()
        if self.process is not None:
            self.process.send_signal(signal.SIGHUP)

    def start(self, timeout: float = 10.0) -> Mosquitto:
        if not MOSQUITTO.exists():
            import pytest

            pytest.skip(f"{MOSQUITTO} not installed (apt-get install mosquitto)")
        config = self._write_config()
        self.process = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        _RUNNING.add(self.process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited: {error} {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout}s")

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, nothing saved."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            if self.process.stderr:
                self.process.stderr.close()
            _RUNNING.discard(self.process)
            self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.kill()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_RUNNING):
        process.kill()


# --- a throw-away PKI for TLS tests ---------------------------------------------------------------

@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_file: Path  # a CA that signed nothing the broker uses: "untrusted"
    other_server_cert: Path
    other_server_key: Path


def make_pki(directory: Path) -> Pki:
    """CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a second, foreign CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)
        return path

    def write_cert(cert: x509.Certificate, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def make_ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(common)).issuer_name(name(common))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    def issue(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], common: str,
              server: bool) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(common)).issuer_name(ca[1].subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return key, builder.sign(ca[0], hashes.SHA256())

    ca, other_ca = make_ca("test community CA"), make_ca("some other CA")
    server, client = issue(ca, "broker", True), issue(ca, "node-1", False)
    other_server = issue(other_ca, "impostor broker", True)
    return Pki(
        ca_file=write_cert(ca[1], directory / "ca.pem"),
        server_cert=write_cert(server[1], directory / "server.pem"),
        server_key=write_key(server[0], directory / "server.key"),
        client_cert=write_cert(client[1], directory / "client.pem"),
        client_key=write_key(client[0], directory / "client.key"),
        other_ca_file=write_cert(other_ca[1], directory / "other-ca.pem"),
        other_server_cert=write_cert(other_server[1], directory / "other-server.pem"),
        other_server_key=write_key(other_server[0], directory / "other-server.key"),
    )


# --- the platform side, for tests -----------------------------------------------------------------

class Collector:
    """A platform-side subscriber: records every (topic, payload, retain) it receives, in order."""

    def __init__(self, port: int, topics: list[str], *, username: str | None = None, password: str | None = None,
                 tls: tuple[Path, Path, Path] | None = None, client_id: str = "") -> None:
        import threading

        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        if username:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set(ca_certs=str(tls[0]), certfile=str(tls[1]), keyfile=str(tls[2]))
        self.client.on_connect = lambda c, *_: c.subscribe([(topic, 1) for topic in topics])
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise RuntimeError("collector could not subscribe")

    def _on_message(self, _client: object, _userdata: object, message: object) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))  # type: ignore[attr-defined]

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def on(self, topic: str) -> list[bytes]:
        return [payload for name, payload, _ in self.snapshot() if name == topic]

    def wait_for(self, predicate: object, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return True
            time.sleep(0.02)
        return False

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class RecordingTarget:
    """A CommandTarget that records what it was asked to do: stands in for the daemon's gates and latch."""

    def __init__(self, gates: tuple[str, ...] = ("main",)) -> None:
        self.gates = gates
        self.opened: list[tuple[str, float | None]] = []
        self.resets: list[str] = []
        self.reloads = 0
        self.bundles: list[dict[str, object]] = []
        self.in_alarm = False

    def open_gate(self, gate: str, seconds: float | None) -> None:
        if gate not in self.gates:
            raise ValueError(f"no gate {gate}")
        self.opened.append((gate, seconds))

    def alarm_reset(self, source: str) -> None:
        if self.in_alarm:
            raise ValueError("smoke/hall is still in alarm")
        self.resets.append(source)

    def reload(self) -> None:
        self.reloads += 1

    def apply_whitelist_bundle(self, payload: dict[str, object]) -> None:
        if "version" not in payload:
            raise ValueError("bundle without version")
        self.bundles.append(payload)

    def state(self) -> dict[str, dict[str, object]]:
        states: dict[str, dict[str, object]] = {f"gate/{gate}": {"lock": "locked", "door": "closed"}
                                                for gate in self.gates}
        states["smoke/hall"] = {"alarm": self.in_alarm, "fault": False}
        states["camera/c1"] = {"ok": True, "fps": 14.8}
        states["fire"] = {"latched": self.in_alarm}
        return states

    def telemetry(self) -> dict[str, object]:
        return {"cameras": {"c1": {"fps": 14.8}}}
