"""The ``whitelist:`` section: where the encrypted whitelist, its key, the audit log and the platform's
bundle-signing key are. The key itself is never in the YAML, only where to find it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from agent.config import SecretRef, Section

if TYPE_CHECKING:
    from agent.whitelist_store import WhitelistStore

DEFAULT_KEY_FILE = Path("$CREDENTIALS_DIRECTORY/whitelist.key")


class WhitelistConfig(Section):
    """Every path may be left out; relative paths are relative to the config file."""

    file: Path | None = Field(None, description="encrypted whitelist (default: {state_dir}/whitelist.bin)")
    key: SecretRef = Field(
        default_factory=lambda: SecretRef(file=DEFAULT_KEY_FILE),
        description="AES-256 key (32 raw bytes, hex or base64) from a file of mode 0600 or an environment "
        "variable; default $CREDENTIALS_DIRECTORY/whitelist.key (systemd LoadCredential=), which outside "
        "the service means /etc/edge-agent/whitelist.key",
    )
    audit_log: Path | None = Field(
        None, description="JSON lines of every change (default: {state_dir}/whitelist-audit.log)"
    )
    bundle_public_key: Path | None = Field(
        None, description="the platform's Ed25519 public key (PEM); without it signed bundles are refused"
    )


@dataclass(frozen=True)
class WhitelistPaths:
    file: Path
    audit_log: Path
    bundle_public_key: Path | None


def whitelist_paths(config: WhitelistConfig, state_dir: Path, base_dir: Path | None = None) -> WhitelistPaths:
    """Defaults filled in from the state directory; relative paths resolved against ``base_dir``
    (the config file's folder) when given."""

    def resolve(path: Path | None) -> Path | None:
        if path is None or path.is_absolute() or base_dir is None:
            return path
        return (base_dir / path).resolve()

    return WhitelistPaths(
        file=resolve(config.file) or state_dir / "whitelist.bin",
        audit_log=resolve(config.audit_log) or state_dir / "whitelist-audit.log",
        bundle_public_key=resolve(config.bundle_public_key),
    )


def read_whitelist_key(config: WhitelistConfig, base_dir: Path | None = None) -> bytes:
    """The 32-byte key, or :class:`agent.whitelist_store.WhitelistError` saying what is wrong."""
    from agent.whitelist_store import WhitelistError, parse_key, read_key_file

    ref = config.key
    if ref.env is not None:
        try:
            return parse_key(ref.read_bytes(), f"environment variable {ref.env}")
        except FileNotFoundError as exc:
            raise WhitelistError(str(exc)) from None
    assert ref.file is not None
    path = ref.file
    if base_dir is not None and not str(path).startswith("$") and not path.is_absolute():
        path = base_dir / path
    return read_key_file(path)


def open_whitelist_store(config: WhitelistConfig, state_dir: Path, base_dir: Path | None = None) -> WhitelistStore:
    """The store the daemon and the CLI use: key read (and its mode checked) now, file loaded on ``load()``."""
    from agent.whitelist_store import WhitelistStore

    paths = whitelist_paths(config, state_dir, base_dir)
    return WhitelistStore(paths.file, read_whitelist_key(config, base_dir), paths.audit_log)
