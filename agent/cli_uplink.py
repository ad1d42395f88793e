"""``edge-agent keygen`` and ``edge-agent cmd sign|send``: the platform's side of signed commands.

``keygen --ed25519`` makes the platform key pair (the node only ever gets the ``.pub``);
``cmd sign`` prints a signed command payload for ``{root}/cmd/NAME``; ``cmd send`` signs, publishes
it through the broker in the node's configuration and prints the node's result.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

from agent.signing import load_private_key, sign_command, write_keypair


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keygen`` and ``cmd`` to the ``edge-agent`` parser (``commands`` from add_subparsers)."""
    keygen = commands.add_parser(
        "keygen", help="make a key: the node's AES-256 whitelist key, or with --ed25519 the platform's signing pair")
    keygen.add_argument("--ed25519", action="store_true",
                        help="an Ed25519 key pair for signed commands and bundles (OUT.key and OUT.pub)")
    keygen.add_argument("--out", help="key file (default /etc/edge-agent/whitelist.key), or with --ed25519 the "
                        "prefix of OUT.key and OUT.pub (default: platform)")
    keygen.set_defaults(func=cmd_keygen)

    cmd = commands.add_parser("cmd", help="signed commands for a node")
    sub = cmd.add_subparsers(dest="cmd_command", required=True, metavar="SUBCOMMAND")
    sign = sub.add_parser("sign", help="print a signed command payload (JSON)")
    _command_arguments(sign)
    sign.set_defaults(func=cmd_sign)
    send = sub.add_parser("send", help="sign, publish to the node's broker and print the node's result")
    _command_arguments(send)
    send.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the result")
    send.set_defaults(func=cmd_send)


def _command_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="open | alarm_reset | sync | reload | ping")
    parser.add_argument("--key", type=Path, help="the platform's private key (from keygen)")
    parser.add_argument("--node", help="SITE/BUILDING/NODE the command is for (default: from --config)")
    parser.add_argument("--config", type=Path, default=Path("/etc/edge-agent/agent.yaml"), help="node config")
    parser.add_argument("--arg", action="append", default=[], metavar="K=V",
                        help="an argument; V is read as JSON when it parses (seconds=5), else as text")
    parser.add_argument("--json", dest="json_args", help="arguments as one JSON object (merged with --arg)")
    parser.add_argument("--id", dest="command_id", help="command id (default: a new UUIDv7)")


def parse_args_option(pairs: list[str], json_args: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if json_args:
        loaded = json.loads(json_args)
        if not isinstance(loaded, dict):
            raise ValueError("--json must be a JSON object")
        args.update(loaded)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--arg {pair!r}: use KEY=VALUE")
        try:
            args[key] = json.loads(text)
        except ValueError:
            args[key] = text
    return args


def build_command(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """The payload to publish, and the loaded config when one was needed for --node."""
    config = None
    node = args.node
    if node is None:
        from agent.config_loader import load_config

        config = load_config(args.config)
        node = f"{config.node.site}/{config.node.building}/{config.node.node_id}"
    command_args = parse_args_option(args.arg, args.json_args)
    if args.key is None:
        if args.name not in ("ping", "reload"):
            raise ValueError(f"{args.name} must be signed: give --key")
        payload = {"id": args.command_id or f"cli-{time.time_ns()}", "name": args.name, "args": command_args}
        return payload, config
    return sign_command(load_private_key(args.key), args.name, node, command_args,
                        command_id=args.command_id), config


def cmd_keygen(args: argparse.Namespace) -> int:
    if not args.ed25519:
        from agent.whitelist_store import write_new_key

        path = Path(args.out or "/etc/edge-agent/whitelist.key")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_new_key(path)
        print(f"whitelist key: {path} (mode 0600; whitelist.key in the config, or systemd LoadCredential=)")
        return 0
    key_path, pub_path = write_keypair(Path(args.out or "platform"))
    print(f"private key: {key_path} (keep it on the platform, mode 0600)")
    print(f"public key:  {pub_path} (mqtt.command_public_key on each node)")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    payload, _ = build_command(args)
    print(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt

    payload, config = build_command(args)
    if config is None:
        from agent.config_loader import load_config

        config = load_config(args.config)
    mqtt_config = getattr(config, "mqtt", None)
    if mqtt_config is None:
        print(f"{args.config}: no mqtt section", file=sys.stderr)
        return 78
    root = mqtt_config.root(config.node)
    got: dict[str, Any] = {}
    done, subscribed = threading.Event(), threading.Event()

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        try:
            result = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(result, dict) and result.get("id") == payload["id"]:
            got.update(result)
            done.set()

    client_id = f"{mqtt_config.effective_client_id(config.node)[:60]}-cli"  # never kick the node itself off
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5 if mqtt_config.protocol == "5" else mqtt.MQTTv311)
    if mqtt_config.username is not None:
        password = mqtt_config.password.read_bytes().decode().strip() if mqtt_config.password else None
        client.username_pw_set(mqtt_config.username, password)
    if mqtt_config.tls is not None:
        tls = mqtt_config.tls
        client.tls_set(ca_certs=str(tls.ca_file) if tls.ca_file else None,
                       certfile=str(tls.cert_file) if tls.cert_file else None,
                       keyfile=str(tls.key_file) if tls.key_file else None,
                       cert_reqs=ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE)
    client.on_connect = lambda c, *_: c.subscribe(f"{root}/cmd/result", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect(mqtt_config.host, mqtt_config.port, keepalive=30)
    client.loop_start()
    try:
        if not subscribed.wait(args.timeout):
            print("could not subscribe to the result topic", file=sys.stderr)
            return 1
        client.publish(f"{root}/cmd/{args.name}", json.dumps(payload), qos=1)
        if not done.wait(args.timeout):
            print(f"no result from the node within {args.timeout}s", file=sys.stderr)
            return 1
    finally:
        client.disconnect()
        client.loop_stop()
    print(json.dumps(got, ensure_ascii=False))
    return 0 if got.get("ok") else 1
