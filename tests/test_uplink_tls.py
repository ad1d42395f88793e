"""TLS with a CA and certificates generated here: mutual authentication both ways."""

from __future__ import annotations

import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.mqtt_broker import BrokerTls, Mosquitto, Pki, make_pki
from tests.test_uplink_publish import Node, make_config, record, wait_until


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_config(pki: Pki, port: int, *, ca: Path | None = None, client_cert: bool = True) -> dict[str, object]:
    tls: dict[str, object] = {"ca_file": str(ca or pki.ca_file)}
    if client_cert:
        tls |= {"cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
    return {"tls": tls}


def test_agent_delivers_over_mutual_tls(tmp_path: Path, pki: Pki) -> None:
    tls = BrokerTls(pki.ca_file, pki.server_cert, pki.server_key)
    with (Mosquitto(tmp_path / "broker", tls=tls) as broker,
          Node(tmp_path, make_config(broker.port, **tls_config(pki, broker.port))) as node):
        record(node.store, "gate.granted", method="exit_button")
        wait_until(lambda: node.store.pending_count() == 0)
        assert node.uplink.health()["connected"]


def test_broker_refuses_a_client_without_certificate(tmp_path: Path, pki: Pki) -> None:
    with Mosquitto(tmp_path / "broker", tls=BrokerTls(pki.ca_file, pki.server_cert, pki.server_key)) as broker:
        with Node(tmp_path, make_config(broker.port, **tls_config(pki, broker.port, client_cert=False))) as node:
            record(node.store)
            wait_until(lambda: node.uplink.last_error is not None, timeout=10)
            assert not node.uplink.health()["connected"] and node.store.pending_count() == 1
        # The same with a bare paho client: the handshake (or the first read after it) fails.
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.tls_set(ca_certs=str(pki.ca_file))
        with pytest.raises((ssl.SSLError, OSError)):
            client.connect("127.0.0.1", broker.port)
            for _ in range(20):
                if client.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:
                    raise OSError("connection closed by the broker")


def test_agent_refuses_a_broker_with_an_untrusted_certificate(tmp_path: Path, pki: Pki) -> None:
    impostor = BrokerTls(pki.other_ca_file, pki.other_server_cert, pki.other_server_key, require_certificate=False)
    with (Mosquitto(tmp_path / "broker", tls=impostor) as broker,
          Node(tmp_path, make_config(broker.port, **tls_config(pki, broker.port))) as node):
        record(node.store)
        wait_until(lambda: node.uplink.last_error is not None, timeout=10)
        assert "CERTIFICATE_VERIFY_FAILED" in str(node.uplink.last_error)
        assert node.uplink.connects == 0 and node.store.pending_count() == 1
