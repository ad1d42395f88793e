"""Salvage figures: rows salvaged of rows written and the time to heal, for each kind of damage to an
events.db of N events; the cost of the check at every open (``PRAGMA quick_check``); and whether the
sqlite3 shell's ``.recover`` works with the installed package (agent/sqlite_salvage.py says why not).

    python bench/bench_salvage.py [EVENTS]            # default 100,000 events
    ../shared/tools/at-pi-speed python bench/bench_salvage.py 100000
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.event_store import EventStore  # noqa: E402
from agent.sqlite_files import connect  # noqa: E402

PAGE = 4096


def build(path: Path, count: int) -> None:
    """``count`` events as the agent writes them (bulk-inserted: the figures are about reading them back)."""
    EventStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (id, ts, node, type, device, details) VALUES (?, ?, 'n1', 'door.opened', 'main', ?)",
        ((f"0192{index:028x}", f"2026-12-08T01:{index // 60000 % 60:02d}:{index // 1000 % 60:02d}.{index % 1000:03d}Z",
          f'{{"index":{index},"person":"R-0203-1","method":"face","distance":0.41}}') for index in range(count)))
    conn.execute("COMMIT")
    conn.close()
    Path(f"{path}.seq").write_text(f"{count} 1 1\n")  # newest, oldest, closed cleanly: as the store writes it


def two_middle_pages(path: Path) -> None:
    pages = path.stat().st_size // PAGE
    with path.open("r+b") as handle:
        handle.seek(pages // 2 * PAGE)
        handle.write(random.Random(1).randbytes(2 * PAGE))


def truncated(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size * 3 // 5)


def header(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.write(random.Random(2).randbytes(100))


def pages_every_tenth_of_the_file(path: Path) -> None:
    pages = path.stat().st_size // PAGE
    with path.open("r+b") as handle:
        for tenth in range(1, 10):
            handle.seek(pages * tenth // 10 * PAGE)
            handle.write(random.Random(tenth).randbytes(PAGE))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "two pages in the middle": two_middle_pages,
    "truncated to 60%": truncated,
    "header (first 100 bytes)": header,
    "nine pages, one every tenth": pages_every_tenth_of_the_file,
}


def recover_works(directory: Path) -> str:
    shell = shutil.which("sqlite3")
    if shell is None:
        return "no sqlite3 shell installed"
    probe = directory / "probe.db"
    sqlite3.connect(probe).executescript("CREATE TABLE t(a); INSERT INTO t VALUES (1);")
    result = subprocess.run([shell, str(probe), ".recover"], capture_output=True, text=True, timeout=60)
    works = result.returncode == 0 and "INSERT INTO" in result.stdout
    return "works" if works else f"fails on an intact file: {result.stderr.strip()[:80]!r} (exit {result.returncode})"


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        print(f"sqlite3 shell .recover: {recover_works(directory)}")
        pristine = directory / "pristine.db"
        build(pristine, count)
        size = pristine.stat().st_size
        started = time.perf_counter()
        connect(pristine, (), check=True).close()
        print(f"events.db of {count:,} events, {size / 1e6:.1f} MB: open with quick_check "
              f"{time.perf_counter() - started:.2f} s")
        for name, damage in DAMAGE.items():
            case = directory / name.replace(" ", "_").replace("%", "").replace("(", "").replace(")", "")
            case.mkdir()
            db = case / "events.db"
            shutil.copyfile(pristine, db)
            shutil.copyfile(f"{pristine}.seq", f"{db}.seq")
            damage(db)
            started = time.perf_counter()
            store = EventStore(db)
            seconds = time.perf_counter() - started
            [healed] = store.reports.healed_files or [None]
            kept = int(store.db.execute("SELECT count(*) FROM events").fetchone()[0])
            store.close()
            lost = "?" if healed is None or healed.lost is None else f"{healed.lost:,}"
            print(f"  {name:<28} salvaged {kept:>9,} of {count:,} ({100 * kept / count:5.1f}%), "
                  f"counted lost {lost:>7}, open+heal {seconds:.2f} s")


if __name__ == "__main__":
    main()
