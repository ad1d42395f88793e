"""Build ``models/face_calibration.json`` (the security levels' impostor table) from the lfw-dev cache.

    python bench/face_calibration.py [var/cache/face-encodings-lfw-dev.npz] [--png var/face-calibration.png]

Data: LFW deep-funneled, development half (../shared/data/faces/lfw-dev, 2,877 people, 6,175 photos),
encoded once by ``bench/face_encodings.py`` as the gate (probe, no jitter) and the enrolment (template,
5 jitters) would.  People are split in two, seeded (``agent/eval_scale.py``): the table is fitted on
the calibration half only; the figures printed afterwards are the report half's.

Method:
1. Impostor pairs: every calibration probe against every calibration template of another person
   (~9.4 million pairs).  log10 F(d), the fraction of pairs within d, on a grid of distances.
2. Below F = 1e-5 (fewer than ~94 pairs) the measured tail is replaced by a straight line in
   log10 F fitted to the grid points with 1e-5 ≤ F ≤ 1e-3: the few pairs left there are mostly the
   same person under two names or duplicated photos, and a gate needs rates down to 1e-9 per pair.
3. Genuine: calibration people with 3+ photos enrol their first two; each other photo's distance to
   the nearer of the two gives the fraction of residents' attempts within d.
4. ``models.face_calibration.threshold(rate, M)`` inverts 1 - (1 - F(t))**M: conservative (strangers
   differ, one person's templates are alike), checked below against held-out galleries of 130 and
   1,000 residents.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.eval_scale import Encodings, gallery_attempts, half  # noqa: E402
from models import face_calibration  # noqa: E402

GRID = np.round(np.arange(0.20, 0.7001, 0.005), 3)
FIT_RANGE = (1e-5, 1e-3)
CACHE = ROOT / "var" / "cache" / "face-encodings-lfw-dev.npz"


def impostor_distances(cal: Encodings) -> np.ndarray:
    """Sorted distances of every probe to every template of another person."""
    out = []
    t = cal.enrol.astype(np.float64)
    t2 = (t**2).sum(1)
    for start in range(0, len(cal.people), 512):
        p = cal.probe[start:start + 512].astype(np.float64)
        d = np.sqrt(np.maximum(0.0, t2[None, :] - 2.0 * p @ t.T + (p**2).sum(1)[:, None]))
        out.append(d[cal.people[start:start + 512, None] != cal.people[None, :]])
    return np.sort(np.concatenate(out))


def genuine_distances(cal: Encodings) -> np.ndarray:
    rows: dict[str, list[int]] = {}
    for row, person in enumerate(cal.people.tolist()):
        rows.setdefault(person, []).append(row)
    out = []
    for person_rows in rows.values():
        if len(person_rows) >= 3:
            templates = cal.enrol[person_rows[:2]].astype(np.float64)
            for r in person_rows[2:]:
                out.append(np.linalg.norm(templates - cal.probe[r], axis=1).min())
    return np.sort(np.array(out))


def build(cache: Path) -> dict:
    cal = half(Encodings.load(cache), "calibration")
    impostor = impostor_distances(cal)
    genuine = genuine_distances(cal)
    cdf = np.searchsorted(impostor, GRID, side="right") / len(impostor)
    fit = (cdf >= FIT_RANGE[0]) & (cdf <= FIT_RANGE[1])
    slope, intercept = np.polyfit(GRID[fit], np.log10(cdf[fit]), 1)
    log_cdf = np.where(cdf >= FIT_RANGE[0], np.log10(np.maximum(cdf, 1e-300)), slope * GRID + intercept)
    log_cdf = np.maximum.accumulate(log_cdf)  # the seam between fit and measurement must not fall
    return {
        "about": "dlib 128-d impostor distance CDF (gate encoding vs one template of another person) and "
                 "residents' nearest-of-2-templates distance; built by bench/face_calibration.py",
        "data": f"lfw-dev calibration half: {len(set(cal.people.tolist()))} people, {len(cal.people)} photos, "
                f"{len(impostor)} impostor pairs, {len(genuine)} genuine attempts",
        "tail_fit": {"range": list(FIT_RANGE), "slope_per_unit": round(float(slope), 4),
                     "intercept": round(float(intercept), 4)},
        "distance": GRID.tolist(),
        "log10_impostor_cdf": [round(float(v), 4) for v in log_cdf],
        "genuine_within": [round(float(v), 4) for v in np.searchsorted(genuine, GRID, side="right") / len(genuine)],
    }


def report(cache: Path, sizes: tuple[int, ...], png: Path | None, seed: int = 1) -> None:
    encodings = Encodings.load(cache)
    rep, cal = half(encodings, "report"), half(encodings, "calibration")
    curves = {}
    for residents, more in [(n, extra) for n in sizes for extra in (None, cal)]:
        attempts = gallery_attempts(rep, residents, seed=seed, more_strangers=more)
        where = "report half" if more is None else "report half + the calibration half's photos as strangers"
        curves[residents] = attempts  # plotted with the added strangers (more of them: finer steps)
        print(f"\n{residents} residents ({attempts.templates} templates), {where}, seed {seed}:")
        today = attempts.figures(0.5, 0.06)
        print(f"  today (0.50, margin 0.06): strangers {today['strangers_admitted']}/{today['strangers']}, "
              f"residents {today['residents_admitted']}/{today['residents']}")
        for level, rate in face_calibration.LEVEL_RATES.items():
            t = face_calibration.threshold(rate, attempts.templates)
            f = attempts.figures(t, 0.06)
            print(f"  {level:<7} target {rate:g}: threshold {t:.3f}, strangers {f['strangers_admitted']}/"
                  f"{f['strangers']}, residents {f['residents_admitted']}/{f['residents']} "
                  f"({f['residents_admitted'] / max(1, f['residents']):.0%}; table says "
                  f"{face_calibration.residents_within(t):.0%})")
    if png:
        plot(curves, png)


def plot(curves: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for residents, a in curves.items():
        ts = np.linspace(0.25, 0.6, 141)
        xs = [max(a.figures(t, 0.06)["strangers_admitted"], 0.5) / a.figures(t, 0.06)["strangers"] for t in ts]
        ys = [a.figures(t, 0.06)["residents_admitted"] / a.figures(t, 0.06)["residents"] for t in ts]
        line, = ax.plot(xs, ys, label=f"{residents} residents, {a.figures(0.5, 0.06)['strangers']} stranger photos")
        f = a.figures(0.5, 0.06)
        ax.plot(max(f["strangers_admitted"], 0.5) / f["strangers"], f["residents_admitted"] / f["residents"], "x",
                color=line.get_color(), markersize=10, label=f"today's rule 0.50 ({residents})")
        for level, rate in face_calibration.LEVEL_RATES.items():
            f = a.figures(face_calibration.threshold(rate, a.templates), 0.06)
            ax.plot(max(f["strangers_admitted"], 0.5) / f["strangers"], f["residents_admitted"] / f["residents"],
                    "o", color=line.get_color())
            ax.annotate(level, (max(f["strangers_admitted"], 0.5) / f["strangers"],
                                f["residents_admitted"] / f["residents"]), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("strangers admitted (fraction of stranger photos; 0 drawn at half a photo)")
    ax.set_ylabel("residents admitted")
    ax.set_title("lfw-dev report half: residents vs strangers admitted")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100, bbox_inches="tight")
    print(f"\nplot: {png}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", nargs="?", type=Path, default=CACHE)
    parser.add_argument("--out", type=Path, default=face_calibration.TABLE)
    parser.add_argument("--png", type=Path, default=ROOT / "var" / "face-calibration.png")
    parser.add_argument("--report-only", action="store_true", help="keep the table, print the held-out figures")
    args = parser.parse_args()
    if not args.report_only:
        table = build(args.cache)
        args.out.write_text(json.dumps(table, separators=(",", ":")) + "\n", encoding="utf-8")
        face_calibration.load_table.cache_clear()
        print(f"{args.out}: {args.out.stat().st_size} bytes; {table['data']}")
    report(args.cache, (130, 1000), args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
