"""Salvage: every readable row of a damaged SQLite file copied into a fresh one (see agent.sqlite_files).

Method, measured: the sqlite3 shell's ``.recover`` cannot be used with Debian's package (bookworm,
3.40.1, as on Raspberry Pi OS): it fails on every file, intact ones too, with "sql error: SQL logic
error (1)", because that build lacks the sqlite_dbpage table ``.recover`` needs (``sqlite3 x.db "select
* from sqlite_dbpage"`` says "no such table").  So rows are read back through SQLite itself, in rowid
order; a range that fails to read is skipped by galloping to the next readable rowid and bisecting
back; a header SQLite refuses is rebuilt on a scratch copy first.  ``../shared/tools/at-pi-speed python
bench/bench_salvage.py 100000`` prints the rows salvaged of rows written and the time to heal: two
pages overwritten in the middle 99,972 of 100,000 (28 counted lost) in 1.7 s, truncated to 60%
60,304 (39,696 counted lost) in 1.1 s, the header overwritten 100,000 in 1.8 s (docs/storage.md).
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("edge_agent.storage")

MAX_ROWID = 2**63 - 1
SALVAGE_BATCH = 1000
_PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)


def salvage(source: Path, target: sqlite3.Connection, max_rowid: int = MAX_ROWID) -> tuple[int, int, bool]:
    """Copy every readable row of ``source``'s tables into the same tables of ``target``.

    Returns (rows copied, rowids skipped between readable rows, whether each table was read to its
    end).  For a table whose rowids are dense (the event log's seq) the second is the number of rows
    lost in the middle; past an unreadable end only the event store's high-water mark can count.
    ``max_rowid``: no row can be above it (the event log's mark); a cell saying so is garbled.
    """
    tables = [str(row[0]) for row in target.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    opened = _open_readable(source)
    if opened is None:
        return 0, 0, False
    reader, scratch = opened
    copied, skipped = 0, Skipped(max_rowid=max_rowid)
    try:
        target.execute("BEGIN")
        for table in tables:
            copied += _copy_table(reader, target, table, skipped)
        target.execute("COMMIT")
    finally:
        reader.close()
        if scratch is not None:
            remove_database(scratch)
    return copied, skipped.rowids, all(end is not None for _, end in skipped.ranges)


def _open_readable(source: Path) -> tuple[sqlite3.Connection, Path | None] | None:
    """A read-only connection whose schema can be read: the file itself, or a copy with its header rebuilt."""
    reader = _read_only(source)
    if reader is not None:
        return reader, None
    if not source.exists() or source.stat().st_size < 512:
        return None
    scratch = source.with_name(source.name + ".header-rebuilt")
    try:
        shutil.copyfile(source, scratch)
        if Path(f"{source}-wal").exists():
            shutil.copyfile(f"{source}-wal", f"{scratch}-wal")
    except BaseException:  # no room for the copy (a full disk): the heal fails and is tried at the next start
        remove_database(scratch)
        raise
    for page_size in _candidate_page_sizes(scratch):
        _write_header(scratch, page_size)
        reader = _read_only(scratch)
        if reader is not None:
            log.warning("%s: its header was unreadable; read with a rebuilt header (page size %d)",
                        source.name, page_size)
            return reader, scratch
    remove_database(scratch)
    return None


def _read_only(path: Path) -> sqlite3.Connection | None:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    conn.text_factory = lambda raw: raw.decode("utf-8", "replace")  # a garbled row is kept, not its range lost
    try:
        # As `.recover` does: a file shorter than its header says is read as far as it goes instead of
        # being refused whole (SQLite's btree.c, lockBtree), and a damaged schema row does not hide the others.
        conn.execute("PRAGMA writable_schema=ON")  # harmless on a read-only connection
        conn.execute("PRAGMA trusted_schema=OFF")  # a crafted file's views and triggers run no functions
        conn.execute("SELECT name, sql FROM sqlite_schema").fetchall()
        return conn
    except sqlite3.DatabaseError:
        conn.close()
        return None


def _candidate_page_sizes(path: Path) -> list[int]:
    with path.open("rb") as handle:
        header = handle.read(100)
    size = path.stat().st_size
    stored = struct.unpack(">H", header[16:18])[0] if len(header) >= 18 else 0
    stored = 65536 if stored == 1 else stored
    first = [stored] if stored in _PAGE_SIZES and size % stored == 0 else []
    return first + [page for page in _PAGE_SIZES if page not in first and size % page == 0]


def _write_header(path: Path, page_size: int) -> None:
    """The 100-byte database header (sqlite.org/fileformat.html §1.3) as a fresh UTF-8 file has it."""
    header = bytearray(100)
    header[0:16] = b"SQLite format 3\x00"
    struct.pack_into(">H", header, 16, 1 if page_size == 65536 else page_size)
    header[18] = header[19] = 2 if Path(f"{path}-wal").exists() else 1  # 2: read the WAL too
    header[21:24] = bytes((64, 32, 32))  # payload fractions, fixed by the format
    size_in_pages = path.stat().st_size // page_size
    for offset, value in ((24, 1), (28, size_in_pages), (40, 1), (44, 4), (56, 1), (92, 1),
                          (96, sqlite3.sqlite_version_info[0] * 1_000_000 + sqlite3.sqlite_version_info[1] * 1000)):
        struct.pack_into(">I", header, offset, value)
    with path.open("r+b") as handle:
        handle.write(header)


def _copy_table(reader: sqlite3.Connection, target: sqlite3.Connection, table: str, skipped: Skipped) -> int:
    target_info = list(target.execute(f"PRAGMA table_info({_quote(table)})"))
    target_columns = [str(row[1]) for row in target_info]
    source = _source_table(reader, table, len(target_columns))
    if source is None:
        skipped.ranges.append((1, None))
        return 0
    source_table, source_columns = source
    if len(source_columns) == len(target_columns):
        pairs = list(zip(source_columns, target_columns, strict=True))  # by position: a flipped byte in a name
    else:
        pairs = [(name, name) for name in target_columns if name in source_columns]
    primary = [row for row in target_info if row[5]]
    rowid_alias = str(primary[0][1]) if len(primary) == 1 and str(primary[0][2]).upper() == "INTEGER" else None
    with_rowid = rowid_alias not in [target_name for _, target_name in pairs]
    insert_names = (["rowid"] if with_rowid else []) + [target_name for _, target_name in pairs]
    insert = (f"INSERT OR IGNORE INTO {_quote(table)} ({', '.join(map(_quote, insert_names))}) "
              f"VALUES ({', '.join('?' for _ in insert_names)})")
    select = f"SELECT rowid, {', '.join(_quote(name) for name, _ in pairs)} FROM {_quote(source_table)}"
    copied = 0
    batch: list[tuple[Any, ...]] = []
    for row in readable_rows(reader, select, skipped):
        batch.append(row if with_rowid else row[1:])
        if len(batch) >= SALVAGE_BATCH:
            copied += _insert(target, insert, batch)
    copied += _insert(target, insert, batch)
    return copied


def _source_table(reader: sqlite3.Connection, table: str, column_count: int) -> tuple[str, list[str]] | None:
    """``table`` in the damaged file with its columns; if a flipped byte renamed it, the one table of that width."""
    try:
        columns = [str(row[1]) for row in reader.execute(f"PRAGMA table_info({_quote(table)})")]
        if columns:
            return table, columns
        names = [str(row[0]) for row in reader.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        candidates = [(name, [str(row[1]) for row in reader.execute(f"PRAGMA table_info({_quote(name)})")])
                      for name in names]
    except sqlite3.DatabaseError:
        return None
    same_width = [candidate for candidate in candidates if len(candidate[1]) == column_count]
    return same_width[0] if len(same_width) == 1 else None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _insert(target: sqlite3.Connection, insert: str, batch: list[tuple[Any, ...]]) -> int:
    before = target.total_changes
    target.executemany(insert, batch)  # OR IGNORE: a row breaking NOT NULL or UNIQUE is left out, not fatal
    batch.clear()
    return target.total_changes - before


@dataclass
class Skipped:
    rowids: int = 0  # rowids between readable rows that could not be read
    max_rowid: int = MAX_ROWID  # a cell with a rowid above it is garbled (a flipped bit would end the scan)
    ranges: list[tuple[int, int | None]] = field(default_factory=list)  # [first, end); None: to the end


def readable_rows(reader: sqlite3.Connection, select: str, skipped: Skipped) -> Iterator[tuple[Any, ...]]:
    """Rows of ``select`` (whose first column is the rowid) in rowid order, going round unreadable ranges.

    Cells of a half-overwritten page come back out of order or above ``skipped.max_rowid``: they are
    left out, and the rowids between the readable rows around them counted as lost.  A row whose own
    rowid was flipped upwards is told by the rows after it, which fall back between it and the row
    before: the scan goes on from them rather than skip everything up to the flipped value.
    """
    scan = f"{select} WHERE rowid > ? ORDER BY rowid"
    probe = f"{select} WHERE rowid >= ? ORDER BY rowid LIMIT 1"
    after, last_start, counted_to = 0, -1, 0  # SQLite gives rowids from 1 up; the agent never writes others
    while True:
        garbled, before = False, after  # ``before``: the row read before ``after`` in this pass
        try:
            for row in reader.execute(scan, [after]):
                rowid = row[0]
                if not isinstance(rowid, int) or not before < rowid <= skipped.max_rowid:
                    garbled = True
                    continue
                if rowid <= after:  # between the two rows before: ``after`` was the flipped one
                    after = rowid
                    yield row
                    continue
                if garbled and after > 0:  # the rows that page held in between are the ones lost
                    skipped.rowids += rowid - after - 1
                garbled, before, after = False, after, rowid
                yield row
            if garbled:
                skipped.ranges.append((after + 1, None))
            return
        except sqlite3.DatabaseError:
            start = max(after, last_start + 1)  # every restart further on: the salvage always ends
            last_start = start
            resume = _next_readable(reader, probe, start)
            if resume is None:
                skipped.ranges.append((after + 1, None))
                return
            lost_from = max(after + 1, counted_to)
            if after > 0 and resume > lost_from:  # before the first readable row nothing tells how many
                skipped.rowids += resume - lost_from
            counted_to = max(counted_to, resume)
            skipped.ranges.append((after + 1, resume))
            after = resume - 1


def _next_readable(reader: sqlite3.Connection, probe: str, after: int) -> int | None:
    """The smallest rowid r > ``after`` from which a read succeeds: gallop forward, then bisect back."""

    def readable(rowid: int) -> bool:
        try:
            reader.execute(probe, [rowid]).fetchall()
            return True
        except sqlite3.DatabaseError:
            return False

    bad, step = after, 1
    while True:
        candidate = after + step
        if candidate > MAX_ROWID:
            return None
        if readable(candidate):
            break
        bad, step = candidate, step * 2
    good = candidate
    while good - bad > 1:
        middle = (bad + good) // 2
        if readable(middle):
            good = middle
        else:
            bad = middle
    return good


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
