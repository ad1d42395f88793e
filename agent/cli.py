"""``edge-agent``: the daemon and the technician's tools, in plain language.

Exit codes: 0 success, 1 a check failed or the command was refused, 2 usage error,
78 (EX_CONFIG) the configuration is invalid — systemd does not restart on 78.
``check-config`` exits 78 when a file the config names is missing or unusable too; ``run`` keeps
running then, and reports it as a node fault (docs/configuration.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from agent.agent_config import AgentConfig
from agent.config import DEFAULT_CONFIG_PATH
from agent.config_loader import EX_CONFIG, ConfigError, json_schema, load_config
from agent.events import parse_time
from models.plate_settings import RELIABLE_PLATE_WIDTH

EX_FAILED = 1


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, default=DEFAULT_CONFIG_PATH,
                        help=f"agent configuration (default {DEFAULT_CONFIG_PATH})")


# -- commands -------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    """The daemon. Files the config names are checked at start (Agent.start): a missing one is a node
    fault, not an exit, so that the gates and the fire release keep working while it is fixed."""
    from agent.daemon import run_daemon
    from agent.logs import setup_logging

    config = load_config(args.config)
    setup_logging(config.logging.level, config.logging.format)
    return run_daemon(config, args.config)


def cmd_check_config(args: argparse.Namespace) -> int:
    from agent.config_loader import check_config_file

    source = args.file or args.config
    config = check_config_file(source)  # the YAML, and every file it names (docs/configuration.md)
    hw = config.hardware
    print(f"{source}: OK — node {config.node.site}/{config.node.building}/{config.node.node_id}, "
          f"{len(hw.gates)} gate(s), {len(hw.barriers)} barrier(s), {len(hw.smoke_detectors)} smoke detector(s), "
          f"{len(hw.indicators)} indicator(s), {len(hw.cameras)} camera(s), pins: {hw.pin_factory}, "
          f"uplink: {config.mqtt.host if config.mqtt else 'none (offline)'}")
    for line in face_security_lines(config, source):
        print(f"  faces: {line}")
    return 0


def face_security_lines(config: AgentConfig, source: Path) -> list[str]:
    """What each face gate's security level means with the whitelist as it is (if it can be read here)."""
    from agent.access import face_gate_lines
    from agent.cli_whitelist import load_context

    try:
        whitelist = load_context(Path(source)).store().load()
    except Exception as error:  # any reason: the config itself is fine, say so and go on
        return [*face_gate_lines(config, None), f"(whitelist not read here: {error}; figures for an empty one)"]
    return face_gate_lines(config, whitelist)


def cmd_config_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from agent.event_store import EventStore, StoredEvent

    config = load_config(args.config)
    path = config.storage.state_dir / "events.db"
    if not path.exists():
        print(f"no events yet: {path} does not exist (has the agent run with this config?)", file=sys.stderr)
        return EX_FAILED
    store = EventStore(path, readonly=True)
    since = parse_time(args.since) if args.since else None
    types = args.type or None

    def show(stored: StoredEvent) -> None:
        event = stored.event
        if args.json:
            print(event.model_dump_json(), flush=True)
        else:
            when = event.ts.astimezone().strftime("%Y-%m-%d %H:%M:%S")
            details = " ".join(f"{k}={v}" for k, v in event.details.items())
            print(f"{when}  {event.type:<18} {event.device or '-':<12} {details}", flush=True)

    recent = store.query(types=types, since=since, limit=args.limit, newest_first=True)
    if not args.json and not args.follow and not recent:
        print("no matching events")
    for stored in reversed(recent):
        show(stored)
    if args.follow:
        try:
            for stored in store.follow(store.last_seq(), types=types):
                show(stored)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from agent.control import ControlUnavailable, call

    config = load_config(args.config)
    try:
        reply = call(config.storage.state_dir, {"cmd": "status"})
    except ControlUnavailable as exc:
        print(exc, file=sys.stderr)
        return EX_FAILED
    print("\n".join(status_lines(reply)))
    return 0


def status_lines(reply: dict) -> list[str]:
    """What ``edge-agent status`` prints from the daemon's status reply."""
    lines = [reply["status"]]
    for component, reason in sorted((reply.get("faults") or {}).items()):
        lines.append(f"  FAULT {component}: {reason}")
    for key, value in sorted(reply["state"].items()):
        if key == "node":
            continue  # its faults are listed above, each with its reason
        line = f"  {key:<24} " + ", ".join(f"{k}={v}" for k, v in value.items())
        if value.get("stuck_loops"):
            line += f" (LOOP STUCK: {' and '.join(value['stuck_loops'])} occupied too long; check the loop detector)"
        lines.append(line)
    # Per camera since start: is recognition keeping up, and what an idle barrier lane skipped.
    # A barrier camera's plate_width_px: the median of its last passes' widest plates.
    for camera, figures in sorted((reply.get("recognition") or {}).items()):
        line = f"  {'recognition/' + camera:<24} " + ", ".join(f"{k}={v}" for k, v in figures.items())
        if figures.get("plate_width_px", RELIABLE_PLATE_WIDTH) < RELIABLE_PLATE_WIDTH:
            line += f" (PLATES TOO SMALL: reliable from {RELIABLE_PLATE_WIDTH} px; zoom in or move the camera nearer)"
        lines.append(line)
    whitelist = reply.get("whitelist") or {}
    lines.append(f"  {'whitelist':<24} {whitelist.get('problem') or str(whitelist.get('people', 0)) + ' people'}")
    lines.extend(f"  {'faces':<24} {line}" for line in reply.get("faces") or [])
    uplink = reply.get("uplink")
    if uplink is None:
        lines.append(f"  {'uplink':<24} none configured (events are kept locally)")
    else:
        link = "connected" if uplink["connected"] else f"NOT connected ({uplink['last_error'] or 'connecting'})"
        lines.append(f"  {'uplink':<24} {link}, {uplink['pending']} event(s) waiting"
                     f"{', OUTBOX FULL' if uplink['backlog_full'] else ''}")
    return lines


def cmd_alarm_reset(args: argparse.Namespace) -> int:
    from agent.control import ControlUnavailable, call

    config = load_config(args.config)
    try:
        reply = call(config.storage.state_dir, {"cmd": "alarm_reset", "source": "cli"})
    except ControlUnavailable as exc:
        print(f"{exc}; start it first: the reset must be done by the running agent", file=sys.stderr)
        return EX_FAILED
    print(reply["message"], file=sys.stdout if reply["ok"] else sys.stderr)
    return 0 if reply["ok"] else EX_FAILED


def cmd_parking(args: argparse.Namespace) -> int:
    """Show or correct car-park counts: through the running agent, or on its files when it is stopped."""
    from agent.control import AgentNotRunning, ControlUnavailable, call

    config = load_config(args.config)
    if not config.parking:
        print("no car parks configured (see the parking: section)", file=sys.stderr)
        return EX_FAILED
    request = {"cmd": "status"} if args.parking_command == "show" else \
        {"cmd": "parking_set", "name": args.name, "occupied": args.occupied, "source": "cli"}
    try:
        reply = call(config.storage.state_dir, request)
    except AgentNotRunning:
        reply = _parking_offline(config, request)
    except ControlUnavailable as exc:
        # Running but not answering us (no permission, busy): writing its count behind its back
        # would race its own passes, and the platform would not hear of the correction.
        print(exc, file=sys.stderr)
        return EX_FAILED
    if not reply["ok"]:
        print(reply["message"], file=sys.stderr)
        return EX_FAILED
    if args.parking_command == "set":
        print(reply["message"])
    for key, value in sorted(reply.get("state", {}).items()):
        if key.startswith("parking/"):
            print(f"{key.removeprefix('parking/'):<16} {value['occupied']:>5} / {value['capacity']:<5} "
                  f"{value['spaces_left']} spaces left{'  FULL' if value['full'] else ''}")
    return 0


def _parking_offline(config: AgentConfig, request: dict) -> dict:
    from agent.event_store import EventStore
    from agent.events import Event
    from agent.parking import Parking

    state_dir = config.storage.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    store = EventStore(state_dir / "events.db")  # the correction is recorded and sent up when the agent runs
    parking = Parking(config.parking, state_dir / "parking.db", lambda kind, device, details: store.append(
        Event(node=config.node.node_id, type=kind, device=device, details=details)))
    try:
        if request["cmd"] == "status":
            return {"ok": True, "state": parking.state()}
        state = parking.correct(request["name"], request["occupied"], "cli")
        return {"ok": True, "message": f"{request['name']}: {state['occupied']} of {state['capacity']} spaces taken, "
                                       f"{state['spaces_left']} left (agent not running; it reads this at start)"}
    except ValueError as exc:
        return {"ok": False, "message": str(exc)}
    finally:
        parking.close()
        store.close()


def cmd_hw_test(args: argparse.Namespace) -> int:
    from agent.control import AgentNotRunning, ControlUnavailable, call
    from agent.hwtest import run_checks
    from drivers.pins import PinFactoryError, make_pin_factory

    config = load_config(args.config)
    try:
        call(config.storage.state_dir, {"cmd": "status"}, timeout=1.0)
        print("the agent is running and owns the pins: stop it first (sudo systemctl stop edge-agent)",
              file=sys.stderr)
        return EX_FAILED
    except AgentNotRunning:
        pass
    except ControlUnavailable as exc:  # something holds the socket: the agent may be driving the pins
        print(f"{exc}; if the agent is running, stop it first (sudo systemctl stop edge-agent)", file=sys.stderr)
        return EX_FAILED
    try:
        factory = make_pin_factory(config.hardware.pin_factory)
    except PinFactoryError as exc:
        print(f"FAIL  pin factory {config.hardware.pin_factory}: {exc}")
        return EX_FAILED
    checks = run_checks(config, factory, pulse=args.pulse, snapshots=args.snapshots)
    for check in checks:
        print(check)
    failed = sum(not c.ok for c in checks)
    print(f"{len(checks) - failed} OK, {failed} FAIL")
    factory.close()
    return EX_FAILED if failed else 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from agent.logs import setup_logging
    from agent.simulation import enrol_resident, prepare_media, run_simulation

    for note in prepare_media(args.config):
        print(note)
    config = load_config(args.config)
    print(enrol_resident(config, args.config))
    setup_logging(config.logging.level, "text")
    return run_simulation(config, args.config, keep_running=args.keep_running)


# -- parser ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon (what systemd starts)")
    _add_config(run)
    run.set_defaults(func=cmd_run, native_threads=True)

    check = commands.add_parser("check-config", help="validate a configuration file (exit 78 if invalid)")
    check.add_argument("file", nargs="?", type=Path, help="file to check (default: --config)")
    _add_config(check)
    check.set_defaults(func=cmd_check_config)

    config = commands.add_parser("config", help="configuration helpers")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    config_commands.add_parser("schema", help="print the JSON Schema of the YAML file").set_defaults(
        func=cmd_config_schema)

    events = commands.add_parser("events", help="show recorded events")
    _add_config(events)
    events.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    events.add_argument("--type", "-t", action="append", help="event type or family (door, smoke.alarm); repeatable")
    events.add_argument("--since", help="RFC 3339 time, a date, or an age like 10m, 2h, 7d")
    events.add_argument("--limit", "-n", type=int, default=50, help="how many recent events (default 50)")
    events.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    events.set_defaults(func=cmd_events)

    status = commands.add_parser("status", help="what the running agent reports about each device")
    _add_config(status)
    status.set_defaults(func=cmd_status)

    alarm = commands.add_parser("alarm", help="fire-alarm latch")
    alarm_commands = alarm.add_subparsers(dest="alarm_command", required=True, metavar="SUBCOMMAND")
    reset = alarm_commands.add_parser("reset", help="end the fire-alarm latch once every detector is quiet")
    _add_config(reset)
    reset.set_defaults(func=cmd_alarm_reset)

    parking = commands.add_parser("parking", help="car-park occupancy")
    parking_commands = parking.add_subparsers(dest="parking_command", required=True, metavar="SUBCOMMAND")
    show = parking_commands.add_parser("show", help="spaces taken and left in each car park")
    _add_config(show)
    correct = parking_commands.add_parser("set", help="correct a car park's count (cars actually parked)")
    correct.add_argument("name")
    correct.add_argument("occupied", type=int)
    _add_config(correct)
    parking.set_defaults(func=cmd_parking)

    hw = commands.add_parser("hw", help="hardware checks")
    hw_commands = hw.add_subparsers(dest="hw_command", required=True, metavar="SUBCOMMAND")
    hw_test = hw_commands.add_parser("test", help="check every configured device (OK/FAIL)")
    _add_config(hw_test)
    hw_test.add_argument("--pulse", action="store_true", help="also click relays and sound indicators")
    hw_test.add_argument("--snapshots", type=Path, metavar="DIR",
                         help="save each camera's frame as DIR/<camera>.jpg, a barrier camera's lane drawn on it")
    hw_test.set_defaults(func=cmd_hw_test)

    evaluate = commands.add_parser("eval", help="measure recognition on a labelled data set")
    eval_commands = evaluate.add_subparsers(dest="eval_command", required=True, metavar="SUBCOMMAND")
    from agent import eval_faces, eval_plates  # light: the models load only when a command runs

    eval_faces.register(eval_commands)
    eval_plates.register(eval_commands)

    from agent import cli_uplink, cli_whitelist

    cli_uplink.add_commands(commands)
    cli_whitelist.add_commands(commands)

    simulate = commands.add_parser("simulate", help="run the agent on mock pins with a scripted scenario")
    simulate.add_argument("config", nargs="?", type=Path, default=Path("config/simulation.yaml"))
    simulate.add_argument("--keep-running", action="store_true", help="keep running after the scenario")
    simulate.set_defaults(func=cmd_simulate, native_threads=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "native_threads", False):
        return _dispatch(args)
    try:
        code = _dispatch(args)
    except BaseException:  # what Python would print and exit 1 with, without its teardown
        traceback.print_exc()
        code = EX_FAILED
    _exit_now(code)
    return code  # not reached


def _exit_now(code: int) -> None:
    """End a daemon process without the interpreter's teardown.

    By the time a daemon command returns, the agent has stopped its devices and closed its databases;
    what may still run are recognition threads inside onnxruntime or dlib (a plate read takes ~1 s on a
    Pi core, longer than the 1 s each worker is given to stop).  Letting the interpreter finalise under
    them aborts the process in C++ ("terminate called without an active exception", exit 134, which
    systemd restarts for ever) instead of returning our exit code: with the example config and a
    barrier camera on main, `edge-agent run` with a missing mqtt.command_public_key did so 2 times in 3.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return EX_CONFIG
    except PermissionError as exc:
        print(f"permission denied: {exc.filename or exc}; run as the service user or with sudo", file=sys.stderr)
        return EX_CONFIG
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        # Bad arguments or files named on the command line: say what, not where in our code.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
