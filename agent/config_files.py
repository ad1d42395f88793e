"""The files a configuration names: read them safely, and check each is what its key says it is.

One rule for every file the agent reads (its config, keys, certificates, password files, videos):
:func:`check_regular_file`, and :func:`read_regular_file` which reads what it let through.  It opens
without blocking and looks at what it opened before reading, because ``open()`` of a FIFO with no
writer waits for ever (``mkfifo k; cat k`` hangs) and a directory, a device or a 2 GB "key" is never
what a technician meant.  Secret files (the whitelist key, the TLS client key, a password file) must
not be readable by group or other, except in systemd's credentials directory, which only the
service's user can open whatever the mode bits show.

``edge-agent check-config`` lists :func:`named_file_problems`; ``edge-agent run`` reports the same
problems as node faults and keeps the gates and the fire release running (see docs/configuration.md).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agent.agent_config import AgentConfig

MAX_NAMED_FILE_BYTES = 1 << 20  # a key, certificate bundle or password; a CA bundle is ~200 KiB

FileKind = Literal["whitelist_key", "whitelist", "audit_log", "ed25519_public_key", "ca_bundle", "certificate",
                   "private_key", "password"]


class FileCheckError(ValueError):
    """A named file that cannot be used; the message names the file and says what to do.
    ``missing``: the file does not exist (some callers explain that in words of their own)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def in_credentials_directory(path: Path) -> bool:
    """systemd's $CREDENTIALS_DIRECTORY (LoadCredential=) is private to the service whatever its modes."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    return credentials is not None and Path(path).parent == Path(credentials)


def _open_regular(path: Path, what: str, secret: bool, max_bytes: int | None) -> int:
    """An O_RDONLY descriptor of a regular file that passes the rules, or FileCheckError. Never blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileCheckError(f"{what} {path} does not exist", missing=True) from None
    except PermissionError:
        raise FileCheckError(f"{what} {path}: permission denied (the agent runs as the edge-agent user; "
                             f"check the file's owner and mode, and its folder's)") from None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise FileCheckError(f"{what} {path}: a folder in the path is a file") from None
        raise FileCheckError(f"{what} {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileCheckError(f"{what} {path} is {_kind_of(info.st_mode)}, not a regular file")
        if secret and info.st_mode & 0o077 and not in_credentials_directory(path):
            raise FileCheckError(f"{what} {path} is readable by group or other (mode {info.st_mode & 0o777:04o}); "
                                 f"run `chmod 600 {path}`: it is a secret")
        if max_bytes is not None and info.st_size > max_bytes:
            raise FileCheckError(f"{what} {path} is {info.st_size} bytes; at most {max_bytes} are expected")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_regular_file(path: Path, what: str, *, secret: bool = False, max_bytes: int | None = None) -> None:
    """:class:`FileCheckError` unless ``path`` is a regular file this user can open for reading, of at most
    ``max_bytes`` and, when ``secret``, not open to group or other.  Reads nothing; never blocks."""
    os.close(_open_regular(Path(path), what, secret, max_bytes))


def read_regular_file(path: Path, what: str, *, secret: bool = False,
                      max_bytes: int = MAX_NAMED_FILE_BYTES) -> bytes:
    """The bytes of ``path`` after :func:`check_regular_file`'s rules; :class:`FileCheckError` otherwise."""
    path = Path(path)
    fd = _open_regular(path, what, secret, max_bytes)
    try:
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:  # grew after fstat
            raise FileCheckError(f"{what} {path} is over {max_bytes} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise FileCheckError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def read_public_key_file(path: Path, what: str) -> Ed25519PublicKey:
    """An Ed25519 public key (PEM, or the raw key in base64 on one line), read with :func:`read_regular_file`."""
    import base64
    import binascii

    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = read_regular_file(path, what)
    wrong = FileCheckError(f"{what} {path} is not an Ed25519 public key (PEM, from the platform's "
                           "`edge-agent keygen --ed25519`)")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(data.strip(), validate=True))
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm):
        raise wrong from None
    if not isinstance(key, Ed25519PublicKey):
        raise wrong
    return key


# -- what a config names --------------------------------------------------------------------------
@dataclass(frozen=True)
class NamedFile:
    key: str  # the YAML key path, e.g. mqtt.tls.ca_file
    path: Path
    kind: FileKind
    required: bool = True  # False: may not exist yet (the agent creates it)


@dataclass(frozen=True)
class FileProblem:
    key: str
    message: str

    @property
    def component(self) -> str:
        """The node-fault component it is reported under by ``run``."""
        return f"config/{self.key}"

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


WHAT = {
    "whitelist_key": "whitelist key file", "whitelist": "whitelist file", "audit_log": "whitelist audit log",
    "ed25519_public_key": "public key file", "ca_bundle": "CA file", "certificate": "certificate file",
    "private_key": "TLS key file", "password": "password file",
}
SECRET_KINDS = frozenset({"whitelist_key", "private_key", "password"})
FIXES = {
    "whitelist_key": "make one with `edge-agent whitelist keygen --out FILE` (systemd/install.sh makes "
                     "/etc/edge-agent/whitelist.key), or point whitelist.key at it",
    "ed25519_public_key": "copy the platform's public key (PEM) there, or remove the key to refuse what it signs",
    "ca_bundle": "copy the CA certificate(s) of the broker there (PEM)",
    "certificate": "copy this node's client certificate there (PEM)",
    "private_key": "copy this node's private key there (PEM, mode 0600)",
    "password": "write the broker password there (mode 0600), or use password: {env: NAME}",
}


def named_files(config: AgentConfig) -> list[NamedFile]:
    """Every file the config names, with the path the agent will open (``$CREDENTIALS_DIRECTORY`` expanded)."""
    from agent.config_whitelist import whitelist_paths
    from agent.whitelist_store import resolve_key_path

    files: list[NamedFile] = []
    whitelist = config.whitelist
    if whitelist.key.file is not None:
        files.append(NamedFile("whitelist.key.file", resolve_key_path(whitelist.key.file), "whitelist_key"))
    paths = whitelist_paths(whitelist, config.storage.state_dir)
    files.append(NamedFile("whitelist.file", paths.file, "whitelist", required=False))
    files.append(NamedFile("whitelist.audit_log", paths.audit_log, "audit_log", required=False))
    if paths.bundle_public_key is not None:
        files.append(NamedFile("whitelist.bundle_public_key", paths.bundle_public_key, "ed25519_public_key"))
    mqtt = config.mqtt
    if mqtt is not None:
        if mqtt.command_public_key is not None:
            files.append(NamedFile("mqtt.command_public_key", mqtt.command_public_key, "ed25519_public_key"))
        if mqtt.tls is not None:
            for key, kind in (("ca_file", "ca_bundle"), ("cert_file", "certificate"), ("key_file", "private_key")):
                path = getattr(mqtt.tls, key)
                if path is not None:
                    files.append(NamedFile(f"mqtt.tls.{key}", path, kind))  # type: ignore[arg-type]
        if mqtt.password is not None and mqtt.password.file is not None:
            files.append(NamedFile("mqtt.password.file", Path(os.path.expandvars(str(mqtt.password.file))),
                                   "password"))
    return files


def check_named_file(named: NamedFile) -> None:
    """:class:`FileCheckError` unless the file is there, readable and of its kind."""
    what = WHAT[named.kind]
    if not named.required and not os.path.lexists(named.path):
        return
    if named.kind == "whitelist_key":
        check_regular_file(named.path, what, secret=True)  # never hand a FIFO to the key reader
        from agent.whitelist_store import WhitelistError, read_key_file

        try:
            read_key_file(named.path)
        except WhitelistError as exc:
            raise FileCheckError(str(exc)) from None
    elif named.kind == "ed25519_public_key":
        read_public_key_file(named.path, what)
    elif named.kind in ("ca_bundle", "certificate"):
        _check_certificates(named.path, what)
    elif named.kind == "private_key":
        _check_private_key(named.path, what)
    elif named.kind == "password":
        if not read_regular_file(named.path, what, secret=True).strip():
            raise FileCheckError(f"{what} {named.path} is empty")
    else:  # the whitelist and its audit log: the agent's own files, read and appended by it
        check_regular_file(named.path, what)


def _check_certificates(path: Path, what: str) -> None:
    from cryptography import x509

    data = read_regular_file(path, what)
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise FileCheckError(f"{what} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)") from None


def _check_private_key(path: Path, what: str) -> None:
    from cryptography.hazmat.primitives import serialization

    data = read_regular_file(path, what, secret=True)
    try:
        serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise FileCheckError(f"{what} {path} is encrypted with a passphrase; the agent needs it unencrypted "
                             "(mode 0600)") from None
    except Exception:  # ValueError, UnsupportedAlgorithm: whatever it is, it is not a usable key
        raise FileCheckError(f"{what} {path} is not a PEM private key") from None


def named_file_problems(config: AgentConfig) -> list[FileProblem]:
    """What is wrong with the files the config names, one problem per key; [] when all are usable."""
    problems: list[FileProblem] = []
    for named in named_files(config):
        try:
            check_named_file(named)
        except FileCheckError as exc:
            message = str(exc)
            fix = FIXES.get(named.kind)
            if fix and "does not exist" in message:
                message += f": {fix}"
            problems.append(FileProblem(named.key, message))
        except Exception as exc:  # a check must never be what stops the agent from starting
            problems.append(FileProblem(named.key, f"{named.path}: cannot be checked ({type(exc).__name__}: {exc})"))
    problems += _tls_pair_problems(config, {p.key for p in problems})
    state_dir = config.storage.state_dir
    if os.path.lexists(state_dir) and not state_dir.is_dir():
        problems.append(FileProblem("storage.state_dir", f"{state_dir} exists but is not a folder"))
    return problems


def _tls_pair_problems(config: AgentConfig, failed: set[str]) -> list[FileProblem]:
    """A client certificate and key that are each fine but do not belong together."""
    import ssl

    tls = config.mqtt.tls if config.mqtt is not None else None
    if tls is None or tls.cert_file is None or tls.key_file is None or failed & {"mqtt.tls.cert_file",
                                                                                   "mqtt.tls.key_file"}:
        return []
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (ssl.SSLError, OSError) as exc:
        return [FileProblem("mqtt.tls.key_file", f"{tls.key_file} is not the key of {tls.cert_file} ({exc})")]
    return []
