"""The daemon's view of the encrypted whitelist: loaded at start, re-loaded when the file changes.

The CLI (``edge-agent whitelist add …``) and signed bundles write the file atomically; the daemon
notices the new modification time on its next tick and swaps in the new whitelist whole, so a
decision never sees half a change.
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
    from agent.whitelist_store import WhitelistStore

log = logging.getLogger("edge_agent.whitelist")


class WhitelistWatch:
    def __init__(self, config: AgentConfig, config_path: Path | None) -> None:
        from agent.whitelist_store import WhitelistError, WhitelistStore

        base = config_path.resolve().parent if config_path else None
        self.paths = whitelist_paths(config.whitelist, config.storage.state_dir, base)
        self._current = Whitelist()
        self._mtime: object = None
        self._lock = threading.Lock()
        self.store: WhitelistStore | None = None
        self.problem: str | None = None
        try:
            key = read_whitelist_key(config.whitelist, base)
            self.store = WhitelistStore(self.paths.file, key, self.paths.audit_log)
        except (WhitelistError, OSError) as exc:
            # Without the key nobody is recognised: every face and plate is refused as a stranger,
            # while exit buttons, doors and fire safety work as ever.
            self.problem = f"whitelist unavailable, everyone is refused: {exc}"
            log.error(self.problem)
        self.refresh()

    def current(self) -> Whitelist:
        return self._current

    def refresh(self) -> None:
        if self.store is None:
            return
        mtime = self.store.change_token()
        if mtime == self._mtime:
            return
        from agent.whitelist_store import WhitelistError

        try:
            loaded = self.store.load()
        except WhitelistError as exc:
            self.problem = f"whitelist not loaded, keeping the previous one: {exc}"
            log.error(self.problem)
            self._mtime = mtime  # say it once per change, not every tick
            return
        with self._lock:
            self._current, self._mtime, self.problem = loaded, mtime, None
        log.info("whitelist loaded: %d people, bundle version %d", len(loaded), loaded.bundle_version)

    def apply_bundle(self, payload: dict[str, Any], node: str) -> str:
        from agent.signing import load_public_key
        from agent.whitelist_bundle import apply_bundle_payload

        if self.store is None:
            raise ValueError(self.problem or "no whitelist store")
        if self.paths.bundle_public_key is None:
            raise ValueError("no whitelist.bundle_public_key configured: bundles cannot be verified")
        summary = apply_bundle_payload(self.store, payload, load_public_key(self.paths.bundle_public_key), node=node)
        self.refresh()
        return summary
