"""Gallery-scale evaluation on cached encodings (``bench/face_encodings.py``): N residents, the rest strangers.

Residents enrol their first two usable photos (the enrolment's jittered templates); their other photos
are probes (the gate's encodings).  The first usable photo of each person who is not a resident is a
stranger attempt (one per person: strangers are a sample of people).  People are split once, seeded,
into a calibration half (what ``bench/face_calibration.py`` fits the shipped table on) and a report
half: figures are reported on the report half only, so the thresholds are never judged on the people
they were chosen from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLIT_SEED = 33


@dataclass(frozen=True)
class Encodings:
    people: np.ndarray  # str (n,)
    probe: np.ndarray  # float32 (n,128), the gate's encoding
    enrol: np.ndarray  # float32 (n,128), the enrolment template
    enrolable: np.ndarray  # bool (n,): one face in the photo (enrolment refuses two); all True without counts

    @classmethod
    def load(cls, path: Path, counts: Path | None = None) -> Encodings:
        """The cache's usable rows (a face both as a probe and as a template), in path order.  ``counts``:
        ``bench/face_counts.py``'s file (default: beside the project's var/, if there)."""
        data = np.load(path, allow_pickle=False)
        probe, enrol = data["probe"].astype(np.float32), data["enrol"].astype(np.float32)
        usable = ~np.isnan(probe).any(axis=1) & ~np.isnan(enrol).any(axis=1)
        paths = data["paths"][usable]
        order = np.argsort(paths, kind="stable")
        enrolable = np.ones(len(paths), dtype=bool)
        folder = path.stem.split("encodings-")[-1]  # face-encodings-lfw-dev.npz -> lfw-dev
        counts = counts or Path(__file__).resolve().parents[1] / "var" / f"face-counts-{folder}.npz"
        if counts.exists():
            found = np.load(counts, allow_pickle=False)
            faces = dict(zip(found["paths"].tolist(), found["faces"].tolist(), strict=True))
            enrolable = np.array([faces.get(p, 1) == 1 for p in paths.tolist()])
        return cls(data["people"][usable][order], probe[usable][order], enrol[usable][order], enrolable[order])

    def subset(self, mask: np.ndarray) -> Encodings:
        return Encodings(self.people[mask], self.probe[mask], self.enrol[mask], self.enrolable[mask])


def split_people(names: np.ndarray, seed: int = SPLIT_SEED) -> tuple[set[str], set[str]]:
    """(calibration, report): each person in exactly one half, the same every run."""
    unique = sorted(set(names.tolist()))
    order = np.random.default_rng(seed).permutation(len(unique))
    half = len(unique) // 2
    return {unique[i] for i in order[:half]}, {unique[i] for i in order[half:]}


def half(encodings: Encodings, which: str) -> Encodings:
    calibration, report = split_people(encodings.people)
    chosen = calibration if which == "calibration" else report
    return encodings.subset(np.array([p in chosen for p in encodings.people.tolist()]))


@dataclass(frozen=True)
class Attempts:
    """Every probe's nearest resident, its distance and the margin to the next resident."""

    resident: np.ndarray  # bool: the probe's person is enrolled
    right: np.ndarray  # bool: the nearest resident is the probe's own person
    distance: np.ndarray
    margin: np.ndarray
    templates: int
    residents: int

    def admitted(self, tolerance: float, margin: float) -> np.ndarray:
        return (self.distance <= tolerance) & (self.margin >= margin)

    def figures(self, tolerance: float, margin: float) -> dict[str, int]:
        yes = self.admitted(tolerance, margin)
        return {"residents": int(self.resident.sum()),
                "residents_admitted": int((yes & self.resident & self.right).sum()),
                "wrong_person": int((yes & self.resident & ~self.right).sum()),
                "strangers": int((~self.resident).sum()), "strangers_admitted": int((yes & ~self.resident).sum())}


def first_photos(people: np.ndarray, exclude: dict[str, int]) -> list[int]:
    """One attempt per stranger: the first photo of each person not in ``exclude``.  Strangers are a
    sample of people, not of photos: LFW has 71 photos of Hugo Chavez and one of Elena de Chavez that
    shows him, and counting each of his photos would make one labelling error 17 "strangers admitted"."""
    seen: set[str] = set()
    rows = []
    for row, person in enumerate(people.tolist()):
        if person not in exclude and person not in seen:
            seen.add(person)
            rows.append(row)
    return rows


def gallery_attempts(encodings: Encodings, residents: int, seed: int = 0,
                     more_strangers: Encodings | None = None) -> Attempts:
    """Enrol ``residents`` people (those with two or more photos first, drawn at random, seeded; a person
    with one usable photo enrols that one; a photo with two faces is never enrolled, as at enrolment),
    and match their other photos and one photo of every other person (a stranger) against them.  ``more_strangers``:
    photos of other people (none of them may be a resident), added as stranger attempts."""
    people = encodings.people.tolist()
    rows: dict[str, list[int]] = {}  # a person's enrolable photos, which are also all of their probes
    for row, person in enumerate(people):
        if encodings.enrolable[row]:
            rows.setdefault(person, []).append(row)
    rng = np.random.default_rng(seed)
    names = sorted(rows)
    several = [names[i] for i in rng.permutation(len(names)) if len(rows[names[i]]) >= 2]
    single = [names[i] for i in rng.permutation(len(names)) if len(rows[names[i]]) < 2]
    enrolled = (several + single)[:residents]
    if len(enrolled) < residents:
        raise ValueError(f"only {len(enrolled)} people in the set, {residents} residents asked")
    template_rows = [r for person in enrolled for r in rows[person][:2]]
    index = {person: i for i, person in enumerate(enrolled)}
    owner = np.array([index[people[r]] for r in template_rows])
    used = set(template_rows)
    probe_rows = np.array([r for r in range(len(people)) if r not in used and people[r] in index]
                          + first_photos(encodings.people, exclude=index))
    gallery = encodings.enrol[template_rows].astype(np.float64)
    probes = encodings.probe[probe_rows].astype(np.float64)
    truth = np.array([index.get(people[r], -1) for r in probe_rows])
    if more_strangers is not None:
        if set(more_strangers.people.tolist()) & set(enrolled):
            raise ValueError("more_strangers holds a resident")
        extra = first_photos(more_strangers.people, exclude={})
        probes = np.vstack([probes, more_strangers.probe[extra].astype(np.float64)])
        truth = np.r_[truth, np.full(len(extra), -1)]
        probe_rows = np.r_[probe_rows, np.full(len(extra), -1)]
    best_distance = np.empty(len(probe_rows))
    best_person = np.empty(len(probe_rows), dtype=int)
    second = np.empty(len(probe_rows))
    g2 = (gallery**2).sum(1)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    for start in range(0, len(probe_rows), 512):  # a few MB at a time
        chunk = probes[start:start + 512]
        d = np.sqrt(np.maximum(0.0, g2[None, :] - 2.0 * chunk @ gallery.T + (chunk**2).sum(1)[:, None]))
        per_person = np.minimum.reduceat(d, starts, axis=1)  # templates are grouped by resident
        if len(enrolled) < 2:  # one resident: no second-best, the margin is infinite
            per_person = np.c_[per_person, np.full(len(chunk), np.inf)]
        two = np.partition(per_person, 1, axis=1)[:, :2]
        best_distance[start:start + len(chunk)] = two.min(axis=1)
        second[start:start + len(chunk)] = two.max(axis=1)
        best_person[start:start + len(chunk)] = per_person.argmin(axis=1)
    return Attempts(truth >= 0, best_person == truth, best_distance, second - best_distance,
                    len(template_rows), len(enrolled))
