"""Matching a read plate against the whitelist's, allowing for what the recogniser may have misread.

The match is an edit distance in which a letter or digit is taken for another only where the
recogniser saw the other there (:data:`SEEN`), so a stranger's plate read clearly one character off
a resident's stays out while a resident's misread plate still gets in.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

from models.plate_formats import fold


def edit_distance(a: str, b: str) -> int:
    return int(_edits(a, b, None))


# A misread letter or digit is taken for a whitelisted plate's only where the recogniser gave that
# one at least this probability at that place.  On the shared data (eval plates' gate figures, every
# label whitelisted) the true character of a one-character misread had 0.017-0.49 (one 0.0008),
# while strangers read exactly gave the resident's character one edit away at most 0.0015: 14 of
# 500 Chinese crops let in with any edit counted, none with this.  A province (any non-Latin
# character) is exempt: it is what small plates lose first, often unseen (rendered plates 80-100 px
# wide, 16 of 186 misread there, 8 of them unseen), while a stranger whose plate is a resident's
# but for the province is all but unknown in one community.
SEEN = 0.01


def match_plate(read: str, whitelist: Iterable[str], max_distance: int,
                alternatives: Sequence[Mapping[str, float]] = ()) -> str | None:
    """The whitelisted plate within ``max_distance`` edits of ``read``; None if none or a tie.

    A tie means the read cannot tell two residents' cars apart, so neither is matched.  O and 0
    are one character here (:func:`models.plate_formats.fold`, as in ``same_plate``), so two
    whitelisted plates that differ only there (ABO123, AB0123) always tie: no read tells them
    apart.  With ``alternatives`` (per character of ``read``, what the recogniser saw there:
    :attr:`models.plate_vote.PlateRead.alternatives`), a letter or digit counts as misread for
    another only if the recogniser saw the other there (SEEN), so a stranger's plate read clearly
    does not match a resident's one character off.  A character read in or left out (an emblem read
    as one, one lost at the plate's edge) is one edit as before.
    """
    return _matcher(tuple(dict.fromkeys(whitelist)), max_distance).match(read, alternatives)


@functools.lru_cache(maxsize=4)
def _matcher(plates: tuple[str, ...], max_distance: int) -> PlateMatcher:
    # The gate matches every pass against a whitelist that changes only when it is reloaded.
    return PlateMatcher(plates, max_distance)


class PlateMatcher:
    """A whitelist indexed so that a read is compared only with the plates it could be.

    Two strings within ``max_distance`` edits become equal once at most that many characters are
    deleted from each (a substitution is a deletion from both, an insertion one from the other), so
    each plate is filed under its deletions and a read looks up its own: with 1,700 plates a match
    counts edits against a handful, not all of them.  :meth:`match` is :func:`match_plate`.
    """

    def __init__(self, plates: Iterable[str], max_distance: int) -> None:
        self.plates = list(dict.fromkeys(plates))
        self.max_distance = max_distance
        self._folded = [fold(plate) for plate in self.plates]
        self._index: dict[str, list[int]] = {}
        for number, plate in enumerate(self._folded):
            for key in _deletions(plate, max_distance):
                self._index.setdefault(key, []).append(number)

    def match(self, read: str, alternatives: Sequence[Mapping[str, float]] = (),
              skip: Callable[[str], bool] | None = None) -> str | None:
        """As :func:`match_plate`, over the plates ``skip`` does not rule out."""
        key = fold(read)
        seen = _seen_at_each_place(alternatives) if len(alternatives) == len(read) else None
        candidates = sorted({n for deleted in _deletions(key, self.max_distance) for n in self._index.get(deleted, ())})
        best: int | None = None
        best_distance = self.max_distance + 1
        tied = False
        for number in candidates:  # in the whitelist's order, as a tie is judged against the first
            if skip is not None and skip(self.plates[number]):
                continue
            distance = _edits(key, self._folded[number], seen, limit=best_distance)
            if distance < best_distance:
                best, best_distance, tied = number, distance, False
            elif distance == best_distance and best is not None:
                # Another whitelisted plate as near: a tie, even if the two fold to one text
                # (ABO123 and AB0123 are two entries, possibly two residents: taking the first
                # listed let one car in as the other).  Plates are distinct (deduplicated above).
                # The seen rule cannot part them either: it compares folded characters too.
                tied = True
        return None if best is None or tied else self.plates[best]


def _deletions(text: str, most: int) -> set[str]:
    """``text`` with up to ``most`` of its characters deleted, in every way."""
    found, frontier = {text}, {text}
    for _ in range(most):
        frontier = {part[:i] + part[i + 1:] for part in frontier for i in range(len(part))}
        found |= frontier
    return found


def _edits(read: str, plate: str, seen: Sequence[frozenset[str]] | None, limit: float = math.inf) -> float:
    """Edit distance from ``read`` to ``plate``; with ``seen`` (per place of ``read``), a
    substitution the recogniser did not see costs more than any allowed distance.  Past ``limit``
    the count stops early: the result is then only known to exceed it."""
    previous = list(range(len(plate) + 1))
    for i, ca in enumerate(read, 1):
        current = [i]
        for j, cb in enumerate(plate, 1):
            if ca == cb:
                swap = 0.0
            elif seen is None or not cb.isascii() or cb in seen[i - 1]:
                swap = 1.0
            else:
                swap = math.inf
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + swap))
        if min(current) > limit:  # every way on from this row costs more
            return math.inf
        previous = current
    return previous[-1]


def _seen_at_each_place(alternatives: Sequence[Mapping[str, float]]) -> list[frozenset[str]]:
    """The characters the recogniser gave at least SEEN at each place, O spelled 0 as in the match."""
    return [frozenset(fold(c) for c, p in place.items() if p >= SEEN) for place in alternatives]
