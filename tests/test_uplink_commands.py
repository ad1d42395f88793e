"""Signed commands: canonical form, good/bad/expired/replayed/malformed/unknown, and a payload flood."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.signing import (
    ReplayCache,
    canonical_json,
    load_private_key,
    load_public_key,
    sign_command,
    write_keypair,
)
from agent.uplink_commands import CommandHandler
from tests.mqtt_broker import Collector, Mosquitto, RecordingTarget
from tests.test_uplink_publish import ROOT, Node, make_config, result_for, wait_until

NODE_PATH = "s1/b7/n1"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return write_keypair(tmp_path / "platform")


def make_handler(tmp_path: Path, keys: tuple[Path, Path], target: RecordingTarget | None = None,
                 refusals: list[tuple[str, str | None, str]] | None = None) -> CommandHandler:
    return CommandHandler(
        target or RecordingTarget(), node=NODE_PATH, public_key=load_public_key(keys[1]),
        replay=ReplayCache(tmp_path / "seen.sqlite", 90), max_age=60, clock_skew=30,
        allow_unsigned=frozenset({"ping"}),
        on_refused=(lambda *args: refusals.append(args)) if refusals is not None else None,
    )


def encode(payload: dict[str, object]) -> bytes:
    return json.dumps(payload).encode()


def test_canonical_form_is_key_order_and_whitespace_independent() -> None:
    a = {"b": 1, "a": [1.0, "é", {"y": True, "x": None}], "sig": "ignored"}
    b = json.loads('{ "a" : [1, "é", {"x": null, "y": true}], "b": 1.0 }')
    assert canonical_json(a) == canonical_json(b) == '{"a":[1,"é",{"x":null,"y":true}],"b":1}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"a": float("nan")})


def test_keygen_refuses_to_overwrite_and_keeps_the_private_key_private(keys: tuple[Path, Path]) -> None:
    assert keys[0].stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_keypair(keys[0].with_suffix(""))


def test_good_bad_expired_replayed_malformed_unknown(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    target, refusals = RecordingTarget(), []
    handler = make_handler(tmp_path, keys, target, refusals)
    key = load_private_key(keys[0])

    good = sign_command(key, "open", NODE_PATH, {"gate": "main", "seconds": 4})
    result = handler.handle("open", encode(good))
    assert result["ok"] is True and result["id"] == good["id"] and target.opened == [("main", 4.0)]

    assert handler.handle("open", encode(good)) | {"ts": None} == {
        "id": good["id"], "name": "open", "ok": False, "reason": "replayed command id", "ts": None}

    def refused(name: str, payload: bytes) -> str:
        outcome = handler.handle(name, payload)
        assert outcome["ok"] is False
        return str(outcome["reason"])

    tampered = sign_command(key, "open", NODE_PATH, {"gate": "main"}) | {"args": {"gate": "side"}}
    assert refused("open", encode(tampered)) == "bad signature"
    other_key = load_private_key(write_keypair(tmp_path / "attacker")[0])
    assert refused("open", encode(sign_command(other_key, "open", NODE_PATH, {"gate": "main"}))) == "bad signature"
    old = sign_command(key, "open", NODE_PATH, {"gate": "main"}, issued_at=datetime.now(UTC) - timedelta(minutes=5))
    assert refused("open", encode(old)) == "expired"
    future = sign_command(key, "open", NODE_PATH, {"gate": "main"}, issued_at=datetime.now(UTC) + timedelta(hours=1))
    assert "future" in refused("open", encode(future))
    elsewhere = sign_command(key, "open", "s1/b7/n2", {"gate": "main"})
    assert refused("open", encode(elsewhere)) == "command is for another node"
    # A signed open re-sent to the alarm_reset topic is not an alarm reset.
    moved = sign_command(key, "open", NODE_PATH, {"gate": "main"})
    assert refused("alarm_reset", encode(moved)).startswith("command name")
    unsigned = {k: v for k, v in sign_command(key, "open", NODE_PATH, {"gate": "main"}).items() if k != "sig"}
    assert refused("open", encode(unsigned)) == "missing signature"
    assert refused("open", b"{not json").startswith("malformed")
    assert refused("open", b"\xff\xfe").startswith("malformed")
    assert refused("open", b"[1, 2]").startswith("malformed")
    assert refused("open", b'{"args": NaN}').startswith("malformed")
    assert refused("open", encode(sign_command(key, "open", NODE_PATH, {"seconds": 3}))).startswith("malformed")
    assert refused("open", encode(sign_command(key, "open", NODE_PATH, {"gate": "main", "seconds": -1})))
    assert refused("self_destruct", encode(sign_command(key, "self_destruct", NODE_PATH))) == "unknown command"
    garage = sign_command(key, "open", NODE_PATH, {"gate": "garage"})
    assert refused("open", encode(garage)) == "refused: no gate garage"
    assert refused("reload", b"{}") == "missing signature"  # reload is not in allow_unsigned here
    assert target.opened == [("main", 4.0)]  # nothing else ever reached the gate
    assert refusals and all(name in {"open", "alarm_reset"} for name, _, _ in refusals)

    ping = handler.handle("ping", b"{}")
    assert ping["ok"] is True and "pong" in ping["reply"]
    target.in_alarm = True
    assert refused("alarm_reset", encode(sign_command(key, "alarm_reset", NODE_PATH))).startswith("refused: smoke")
    target.in_alarm = False
    assert handler.handle("alarm_reset", encode(sign_command(key, "alarm_reset", NODE_PATH)))["ok"] is True
    bundle = sign_command(key, "sync", NODE_PATH, {"version": 7, "residents": []})
    assert handler.handle("sync", encode(bundle))["ok"] is True and target.bundles[0]["version"] == 7


def test_replay_memory_survives_a_restart_and_forgets_only_expired_ids(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    key = load_private_key(keys[0])
    command = encode(sign_command(key, "open", NODE_PATH, {"gate": "main"}))
    assert make_handler(tmp_path, keys).handle("open", command)["ok"] is True
    restarted = make_handler(tmp_path, keys)  # same replay file, as after an agent restart
    assert restarted.handle("open", command)["reason"] == "replayed command id"
    cache = ReplayCache(tmp_path / "bounded.sqlite", keep_seconds=90)
    now = time.time()
    for index in range(50):
        assert cache.remember(f"old-{index}", now - 200, now - 150)
    assert cache.remember("fresh", now, now) and len(cache) == 1  # the old ones could never be accepted again


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
COMMAND_LIKE = st.fixed_dictionaries(
    {}, optional={"id": st.text(max_size=70), "name": st.sampled_from(["open", "ping", "sync", "x"]),
                  "node": st.sampled_from([NODE_PATH, "x"]), "issued_at": st.text(max_size=30),
                  "args": JSON_VALUES, "sig": st.text(max_size=90)})
PAYLOADS = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    COMMAND_LIKE.map(lambda value: json.dumps(value).encode()),
)
NAMES = st.sampled_from(["open", "alarm_reset", "reload", "ping", "sync", "result2", "", "ÖPEN", "a/b"])


def test_ten_thousand_arbitrary_payloads_in_process(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """8,000 hypothesis payloads straight into the handler; 2,000 seeded ones go over mosquitto below."""
    target = RecordingTarget()
    handler = make_handler(tmp_path, keys, target)

    @settings(max_examples=8_000, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(name=NAMES, payload=PAYLOADS)
    def one(name: str, payload: bytes) -> None:
        result = handler.handle(name, payload)
        assert set(result) >= {"id", "name", "ok", "reason", "ts"}
        assert result["ok"] is (name == "ping" and result["reason"] is None)
        json.dumps(result)  # always publishable

    one()
    assert target.opened == [] and target.resets == [] and target.bundles == []
    assert handler.handle("ping", b"{}")["ok"] is True


def test_commands_over_the_broker_including_garbage(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    platform = Collector(broker.port, [f"{ROOT}/cmd/result"])
    try:
        config = make_config(broker.port, command_public_key=str(keys[1]), protocol="3.1.1")
        with Node(tmp_path, config) as node:
            wait_until(lambda: node.uplink.health()["connected"])
            key = load_private_key(keys[0])
            good = sign_command(key, "open", NODE_PATH, {"gate": "main"})
            platform.publish(f"{ROOT}/cmd/open", json.dumps(good))
            platform.publish(f"{ROOT}/cmd/open", json.dumps(good))  # replayed through the broker
            samples = garbage_samples(2_000, key)
            for payload in samples:
                platform.client.publish(f"{ROOT}/cmd/open", payload, qos=1)
            ping = {"id": "ping-after-garbage"}
            platform.publish(f"{ROOT}/cmd/ping", json.dumps(ping))
            wait_until(lambda: result_for(platform, "ping-after-garbage") is not None)
            results = [json.loads(payload) for payload in platform.on(f"{ROOT}/cmd/result")]
            assert len(results) == 2 + len(samples) + 1  # one result per command, none for our own results
            assert [r["ok"] for r in results if r["id"] == good["id"]] == [True, False]
            assert node.target.opened == [("main", None)]
            assert node.uplink.health()["commands"] == len(results)
    finally:
        platform.close()
        broker.kill()


def garbage_samples(count: int, key: object) -> list[bytes]:
    """Seeded junk for the broker path: random bytes, broken JSON, wrong types, mangled signed commands."""
    rng = random.Random(3)
    valid = json.dumps(sign_command(key, "open", NODE_PATH, {"gate": "main"})).encode()  # type: ignore[arg-type]
    makers = [
        lambda: rng.randbytes(rng.randrange(0, 200)),
        lambda: valid[: rng.randrange(len(valid))],
        lambda: valid.replace(b'"main"', b'"' + bytes([rng.randrange(97, 123)]) * 3 + b'"'),
        lambda: json.dumps(rng.choice([None, 1, 1.5, "x", [], [1, {}], {"args": []}, {"id": 7}])).encode(),
        lambda: b"{" * rng.randrange(1, 5000),
    ]
    return [rng.choice(makers)() for _ in range(count)]
