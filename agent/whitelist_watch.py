"""The daemon's view of the encrypted whitelist: loaded at start, re-loaded when the file changes.

The CLI (``edge-agent whitelist add …``) and signed bundles write the file atomically; the daemon
notices the new file on its next tick and swaps in the new whitelist whole, so a decision never sees
half a change.

A file the node may not use (an older copy put back, a damaged file, the wrong key, a file gone where
there was one) is never loaded: the daemon keeps the whitelist it has in memory, so nobody removed
since is let in, and reports the fault (``node.fault``, ``edge-agent status``, the log) until a good
file is back. Gates, exit buttons and fire release do not depend on any of this.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config_whitelist import read_whitelist_key, whitelist_paths
from agent.whitelist import Whitelist

if TYPE_CHECKING:
    from agent.agent_config import AgentConfig
    from agent.node_faults import NodeFaults
    from agent.whitelist_store import WhitelistStore

log = logging.getLogger("edge_agent.whitelist")

COMPONENT = "whitelist"

# The whitelist this process last accepted, per file: a reload builds a new watch, and if the file has
# meanwhile become unusable (an older copy put back), the node keeps admitting whom it admitted.
_last_accepted: dict[str, Whitelist] = {}


class WhitelistWatch:
    def __init__(self, config: AgentConfig, config_path: Path | None, faults: NodeFaults | None = None) -> None:
        from agent.whitelist_store import WhitelistError, WhitelistStore

        base = config_path.resolve().parent if config_path else None
        self.paths = whitelist_paths(config.whitelist, config.storage.state_dir, base)
        self.faults = faults
        self._current = Whitelist()
        self._token: object = None
        self._lock = threading.Lock()
        self.store: WhitelistStore | None = None
        self.problem: str | None = None  # what ``edge-agent status`` shows instead of "N people"
        self._fault: str | None = None  # the part of it that is a fault of the node
        try:
            key = read_whitelist_key(config.whitelist, base)
            self.store = WhitelistStore(self.paths.file, key, self.paths.audit_log)
        except (WhitelistError, OSError) as exc:
            # Without the key nobody is recognised: every face and plate is refused as a stranger,
            # while exit buttons, doors and fire safety work as ever.
            self._failed(f"whitelist unavailable, everyone is refused: {exc}")
        if self.store is not None:
            self._current = _last_accepted.get(str(self.paths.file), self._current)  # a reload keeps it
            self._token = self.store.change_token()
            self._load()

    def current(self) -> Whitelist:
        return self._current

    def refresh(self) -> None:
        """Load the file if it changed since the last look, and report the fault while there is one.
        Never raises: the run loop calls it every tick. (The first report waits for the first tick, so
        ``node.fault`` follows ``agent.started``.)"""
        if self.store is not None:
            token = self.store.change_token()
            if token != self._token:
                self._token = token  # load again at the next change, not at every tick
                self._load()
        if self.faults is None:
            return
        if self._fault is not None:
            self.faults.report(COMPONENT, self._fault)  # an event once, a log line at most once a minute
        else:
            self.faults.clear(COMPONENT)  # node.recovered once, when it had failed

    def _load(self) -> None:
        assert self.store is not None
        try:
            loaded = self.store.load()
        except Exception as exc:  # WhitelistError above all; anything else must not stop the run loop
            from agent.whitelist_store import WhitelistError

            detail = str(exc) if isinstance(exc, WhitelistError) else f"{type(exc).__name__}: {exc}"
            kept = f"keeping the {len(self._current)} people loaded before" if len(self._current) else \
                "nobody is recognised"
            self._failed(f"whitelist not loaded, {kept}: {detail}")
            return
        with self._lock:
            self._current = loaded
        _last_accepted[str(self.paths.file)] = loaded
        self._fault = None
        if self.store.stamp.generation == 0 and not self.store.exists():
            # A new node: no file and no sign there ever was one. Empty, and saying so.
            self.problem = (f"0 people: no whitelist yet at {self.paths.file} (new node); add people with "
                            "`edge-agent whitelist add` or a platform bundle")
            log.info(self.problem)
        else:
            self.problem = None
            log.info("whitelist loaded: %d people, %s, bundle version %d", len(loaded),
                     self.store.stamp.describe(), loaded.bundle_version)

    def _failed(self, problem: str) -> None:
        self.problem = self._fault = problem
        if self.faults is None:  # else NodeFaults logs it at the next tick, and once a minute after
            log.error(problem)

    def apply_bundle(self, payload: dict[str, Any], node: str) -> str:
        from agent.whitelist_bundle import apply_bundle_payload, load_bundle_public_key

        if self.store is None:
            raise ValueError(self.problem or "no whitelist store")
        if self.paths.bundle_public_key is None:
            raise ValueError("no whitelist.bundle_public_key configured: bundles cannot be verified")
        public_key = load_bundle_public_key(self.paths.bundle_public_key)
        summary = apply_bundle_payload(self.store, payload, public_key, node=node)
        self.refresh()
        return summary
