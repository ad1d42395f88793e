"""A local control socket, so the technician CLI can talk to the running daemon.

JSON lines over a unix stream socket in the state directory (only root and the service user can
reach it).  The daemon answers ``status`` and ``alarm_reset``; nothing here is reachable from the
network.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("edge_agent.control")

Handler = Callable[[dict[str, Any]], dict[str, Any]]
SOCKET_NAME = "agent.sock"


class ControlUnavailable(Exception):
    """No daemon answers on the socket."""


class AgentNotRunning(ControlUnavailable):
    """Nothing listens on the socket: the agent is stopped, so its files are the CLI's to use."""


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    handler: Handler


class _Request(socketserver.StreamRequestHandler):
    timeout = 10

    def handle(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        for line in self.rfile:
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("request must be a JSON object")
                reply = server.handler(request)
            except Exception as exc:  # answer every request; never let a bad one kill the server
                reply = {"ok": False, "message": f"bad request: {exc}"}
            self.wfile.write(json.dumps(reply).encode() + b"\n")
            self.wfile.flush()


class ControlServer:
    def __init__(self, state_dir: Path, handler: Handler) -> None:
        self.path = state_dir / SOCKET_NAME
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._handler = handler

    def start(self) -> None:
        self.path.unlink(missing_ok=True)  # a stale socket from a crash
        server = _Server(str(self.path), _Request)
        server.handler = self._handler
        os.chmod(self.path, 0o660)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.2,), name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self.path.unlink(missing_ok=True)
            self._server = None


def call(state_dir: Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the running daemon and return its reply."""
    path = state_dir / SOCKET_NAME
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise AgentNotRunning(f"the agent is not running (no answer on {path})") from exc
    except PermissionError as exc:
        raise ControlUnavailable(f"no permission to talk to the agent on {path}: run with sudo") from exc
    except OSError as exc:
        raise ControlUnavailable(f"the agent did not answer on {path}: {exc}") from exc
    return json.loads(data)
