"""The format-constrained CTC decoder against the definition of CTC, on a toy alphabet small enough
to try every alignment."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from models.plate_decode import FormatDecoder
from models.plate_formats import PlateFormat

# "a" folds into "A" and "-" counts as a gap, as in the real alphabets; "<blank>" is CTC's blank.
CHARSET = ["<blank>", "A", "B", "1", "2", "a", "-"]
TOY = PlateFormat("toy", "[AB][AB][12]|[AB1]2", (("AB", "AB", "12"), ("AB1", "2")))


def _fits(text: str) -> bool:
    return any(len(text) == len(t) and all(c in allowed for c, allowed in zip(text, t, strict=True))
               for t in TOY.templates)


def _best_alignment(probs: np.ndarray) -> tuple[str, float]:
    """Every alignment of blank, A, B, 1, 2 over the frames; the best whose collapse (repeats merged,
    then blanks dropped) fits the format."""
    folded = probs.copy()
    folded[:, 1] += folded[:, 5]
    symbols = {"_": np.log(folded[:, 0] + folded[:, 6] + 1e-9)}
    symbols |= {c: np.log(folded[:, i] + 1e-9) for i, c in enumerate(CHARSET) if c in "AB12"}
    best = ("", -math.inf)
    for path in itertools.product(symbols, repeat=len(probs)):
        text = "".join(c for c, _ in itertools.groupby(path) if c != "_")
        if _fits(text):
            score = sum(float(symbols[c][t]) for t, c in enumerate(path))
            if score > best[1]:
                best = (text, score)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_constrained_viterbi_finds_the_best_alignment_the_formats_allow(seed: int) -> None:
    rng = np.random.default_rng(seed)
    steps = int(rng.integers(3, 8))
    # Peaked rows, as a recogniser's are, so repeats, blanks and look-alikes all compete.
    probs = rng.dirichlet(np.full(len(CHARSET), 0.4), size=steps).astype(np.float32)
    path = FormatDecoder(CHARSET, [TOY]).decode(probs)
    text, score = _best_alignment(probs)
    assert path is not None and path.text == text
    assert path.log_score == pytest.approx(score, abs=1e-4)


def test_each_character_keeps_what_the_recogniser_saw_at_its_place() -> None:
    # Frames: A (lowercase a folding in) over B; a blank; B; a blank; 1 over 2.
    probs = np.array([
        [0.005, 0.85, 0.09, 0.0, 0.0, 0.05, 0.005],
        [0.99, 0.005, 0.0, 0.0, 0.0, 0.0, 0.005],
        [0.0, 0.0, 0.9995, 0.0, 0.0, 0.0, 0.0005],
        [0.99, 0.0, 0.0, 0.0, 0.0, 0.0, 0.01],
        [0.0, 0.0, 0.0, 0.7, 0.3, 0.0, 0.0],
    ], dtype=np.float32)
    path = FormatDecoder(CHARSET, [TOY]).decode(probs)
    assert path is not None and path.text == "AB1"
    assert path.alternatives[0] == pytest.approx({"A": 0.9, "B": 0.09})
    assert path.alternatives[1] == pytest.approx({"B": 0.9995})  # A's 0.0005 is under what is kept
    assert path.alternatives[2] == pytest.approx({"1": 0.7, "2": 0.3})  # only what the format allows there


def test_a_favoured_character_wins_where_it_was_in_doubt_and_only_there() -> None:
    """A site's own province: 8 to 1 turns a doubtful first character, not a clear one."""
    def probs(first: list[float]) -> np.ndarray:
        return np.array([
            first,  # blank, A, B
            [0.99, 0.0, 0.0, 0.0, 0.0, 0.0, 0.01],
            [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0],  # 2
        ], dtype=np.float32)

    plain = FormatDecoder(CHARSET, [TOY])
    favouring_a = FormatDecoder(CHARSET, [TOY], {"A": 8.0})
    doubtful = probs([0.05, 0.25, 0.7, 0.0, 0.0, 0.0, 0.0])
    clear = probs([0.01, 0.02, 0.97, 0.0, 0.0, 0.0, 0.0])
    assert plain.decode(doubtful).text == "B2"
    read = favouring_a.decode(doubtful)
    assert read.text == "A2" and read.char_confidences[0] == pytest.approx(2.0 / 2.75, abs=1e-3)
    assert favouring_a.decode(clear).text == "B2"
    assert FormatDecoder(CHARSET, [TOY], {"京": 8.0}).decode(doubtful).text == "B2"  # not in the alphabet
