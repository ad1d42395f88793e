"""Combining several reads of one plate into one decision.

Used twice: inside :class:`models.plate.PlateReader` over the variants of one crop, and by the
gate over the frames of one vehicle pass (approach and stop).  Each character position is voted
separately, weighted by that character's confidence, so a frame that blurred one character still
contributes the others.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from models.plate_formats import PlateFormat, normalise


@dataclass(frozen=True)
class PlateRead:
    """One reading of a plate: canonical text, mean confidence, box (x, y, w, h) in the frame."""

    text: str
    confidence: float
    box: tuple[int, int, int, int] | None = None
    char_confidences: tuple[float, ...] = ()
    # Per character: the characters the recogniser saw at that place and how likely it found each
    # (models.plate_decode.DecodedPath.alternatives); empty when not known.
    alternatives: tuple[Mapping[str, float], ...] = ()


@dataclass(frozen=True)
class PlateDecision:
    """The plate a pass was decided as, how sure, and how many reads agreed."""

    text: str
    confidence: float
    reads: int
    agreeing: int
    alternatives: tuple[Mapping[str, float], ...] = ()  # seen at each place by any read of its length


class PlateVoter:
    """Collects reads of one vehicle pass; ``decide()`` gives at most one decision per pass."""

    def __init__(self, formats: Iterable[PlateFormat], min_reads: int = 1, min_confidence: float = 0.0):
        self.formats = list(formats)
        self.min_reads = min_reads
        self.min_confidence = min_confidence
        self._reads: list[PlateRead] = []
        self._decided = False

    @property
    def reads(self) -> list[PlateRead]:
        return list(self._reads)

    def recent(self, count: int) -> list[PlateRead]:
        """The last ``count`` reads, without copying the rest (asked on every read of a waiting car)."""
        return self._reads[-count:]

    def __len__(self) -> int:
        """Reads in this pass, without copying them (asked on every frame)."""
        return len(self._reads)

    @property
    def decided(self) -> bool:
        """This pass's decision has been given: ``decide()`` gives nothing more until ``reset()``."""
        return self._decided

    def add(self, read: PlateRead | None) -> None:
        if read is not None and read.text:
            self._reads.append(read)

    def reset(self) -> None:
        """Start a new pass (vehicle left, or the barrier decision was taken)."""
        self._reads.clear()
        self._decided = False

    def decide(self) -> PlateDecision | None:
        """The voted plate once enough reads are in; None before that and after it was given once."""
        if self._decided or len(self._reads) < self.min_reads:
            return None
        decision = vote(self._reads, self.formats)
        if decision is None or decision.confidence < self.min_confidence:
            return None
        self._decided = True
        return decision


def _weights(read: PlateRead) -> tuple[float, ...]:
    if len(read.char_confidences) == len(read.text):
        return read.char_confidences
    return (read.confidence,) * len(read.text)


def _read_once(text: str, shorter: str) -> bool:
    """Whether ``shorter`` is ``text`` with one of its doubled characters read once."""
    return len(text) == len(shorter) + 1 and any(
        text[i] == text[i + 1] and text[:i] + text[i + 1:] == shorter for i in range(len(shorter)))


def vote(reads: list[PlateRead], formats: Iterable[PlateFormat]) -> PlateDecision | None:
    """Per-character confidence-weighted vote among the reads of the winning length."""
    if not reads:
        return None
    by_length: dict[int, float] = defaultdict(float)
    for read in reads:
        # A read that is another with a doubled character read once counts half for its length:
        # the recogniser often merges a repeat it sees no gap between (the 99 of Y919AP99 read
        # as 9) and seldom splits one character in two, so one read of the repeat outweighs one
        # without it, but not several.
        merged = any(_read_once(other.text, read.text) for other in reads)
        by_length[len(read.text)] += read.confidence * (0.5 if merged else 1.0)
    length = max(by_length, key=lambda n: (by_length[n], n))
    same = [r for r in reads if len(r.text) == length]
    chars: list[str] = []
    shares: list[float] = []
    for position in range(length):
        tally: dict[str, float] = defaultdict(float)
        for read in same:
            tally[read.text[position]] += _weights(read)[position]
        winner = max(tally, key=lambda c: tally[c])
        chars.append(winner)
        total = sum(tally.values())
        shares.append(tally[winner] / total if total else 0.0)
    text = normalise("".join(chars), formats)
    if text is None:
        # The per-position mix fits no format (e.g. two templates disagree): fall back to the
        # single strongest whole read, which fitted one when it was made.
        text = max(same, key=lambda r: r.confidence).text
    agreeing = [r for r in same if r.text == text]
    # Confidence: how sure the agreeing reads were, scaled by how unanimous each position was.
    base = max((r.confidence for r in agreeing), default=max(r.confidence for r in same))
    confidence = base * min(shares) if shares else 0.0
    return PlateDecision(text, round(confidence, 4), len(reads), len(agreeing), merged_alternatives(same))


def merged_alternatives(reads: list[PlateRead]) -> tuple[dict[str, float], ...]:
    """Per place, each character's highest probability over ``reads`` (all of one length); empty
    if any read does not know its alternatives."""
    if not reads or any(len(r.alternatives) != len(r.text) for r in reads):
        return ()
    merged: list[dict[str, float]] = [{} for _ in reads[0].text]
    for read in reads:
        for place, seen in zip(merged, read.alternatives, strict=True):
            for char, probability in seen.items():
                place[char] = max(place.get(char, 0.0), probability)
    return tuple(merged)
