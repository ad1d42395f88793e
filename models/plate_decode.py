"""CTC decoding of a recogniser's output constrained to the configured plate formats.

A Viterbi search over every format template at once (per position, the characters the template
allows there), so look-alikes are settled by position while decoding (0 where a digit must stand, D
where a letter must), not patched afterwards.  Regex-only formats fall back to a greedy read that
:func:`models.plate_formats.normalise` fits.  No I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.plate_formats import PlateFormat, normalise

# Below this a character's probability is not kept as something the recogniser saw at a place.
_KEPT = 0.001


@dataclass
class DecodedPath:
    text: str
    char_confidences: tuple[float, ...]
    log_score: float
    # Per character of ``text``: the characters the recogniser gave at least _KEPT there (the most
    # over that character's frames), its own among them.  Whitelist matching takes a misread
    # character for another only where the other was seen (models.plate_match.match_plate).
    alternatives: tuple[dict[str, float], ...] = ()


class FormatDecoder:
    """CTC decoding restricted to what the plate formats allow at each position."""

    def __init__(self, charset: list[str], formats: list[PlateFormat], favoured: dict[str, float] | None = None):
        self.charset = charset
        index = {c: i for i, c in enumerate(charset)}
        # A prior: each favoured character's probability is multiplied by its weight in every frame,
        # and the frame renormalised (a site's own province, see models.plate.LOCAL_PROVINCE_WEIGHT).
        self.favoured = [(index[c], weight) for c, weight in (favoured or {}).items() if c in index]
        # Plates are written in letters, digits and (Chinese) characters.  Whatever else the
        # recogniser reads is a separator or decoration: a dash, a middle dot, the star, heart or
        # state outline between a plate's groups, a bolt.  It counts as a gap, not as evidence the
        # format cannot explain, which would sink the read's confidence below a state name's
        # (a star between the groups read "*" took a plate from 0.96 to 0.43).
        self.blank_like = np.array([0] + [i for i, c in enumerate(charset) if i and not c.isalnum()])
        self.alphanumeric = np.array([i for i, c in enumerate(charset) if i and c.isalnum()])
        self.templates: list[list[np.ndarray]] = []
        for fmt in formats:
            for template in fmt.templates:
                cols = [np.array([index[c] for c in allowed if c in index]) for allowed in template]
                if all(len(c) for c in cols):
                    self.templates.append(cols)
        # The recogniser also knows lowercase; plates are uppercase, so lowercase evidence counts
        # for the capital (mass split between "s" and "S" would otherwise lose to "5").
        self.fold = [(index[c.lower()], index[c]) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c.lower() in index]
        self.formats = formats
        self.regex_only = [f for f in formats if not f.templates]
        self._build_tables()

    def decode(self, probs: np.ndarray) -> DecodedPath | None:
        best: DecodedPath | None = None
        probs = probs.copy()
        lower, upper = zip(*self.fold, strict=True)
        probs[:, list(upper)] += probs[:, list(lower)]
        probs[:, list(lower)] = 0.0
        if self.favoured:
            for column, weight in self.favoured:
                probs[:, column] *= weight
            probs /= probs.sum(axis=1, keepdims=True)
        blank = probs[:, self.blank_like].sum(axis=1)
        log_blank = np.log(blank + 1e-9)
        best = self._viterbi_all(probs, log_blank)
        if best is not None and best.text:
            # Evidence the format could not explain (a date stamp's extra digits, a state name
            # squeezed into blanks) lowers every character's confidence: the gap between the
            # unconstrained best path and the format's, per character.
            other = probs.copy()
            other[:, self.blank_like] = 0.0
            free = float(np.log(np.maximum(blank, other.max(axis=1)) + 1e-9).sum())
            factor = math.exp(min(0.0, best.log_score - free) / len(best.text))
            best.char_confidences = tuple(c * factor for c in best.char_confidences)
        if self.regex_only:
            greedy = self._greedy(probs)
            text = normalise(greedy.text, self.regex_only)
            if text is not None and len(text) == len(greedy.text):
                greedy.text = text
                if best is None or greedy.log_score >= best.log_score:
                    best = greedy
        return best

    def _greedy(self, probs: np.ndarray) -> DecodedPath:
        idx = probs.argmax(axis=1)
        chars, confs, alternatives, previous = [], [], [], 0
        for t, i in enumerate(idx):
            if i != 0 and i != previous and self.charset[i].isalnum():
                chars.append(self.charset[i].upper())
                confs.append(float(probs[t, i]))
                alternatives.append(self._seen(probs[t, self.alphanumeric], self.alphanumeric))
            previous = i
        score = float(np.log(probs.max(axis=1) + 1e-9).sum())
        return DecodedPath("".join(chars), tuple(confs), score, tuple(alternatives))

    def _build_tables(self) -> None:
        """Templates stacked as (template, position, slot) -> charset index, padded with -1."""
        n = len(self.templates)
        self.lengths = np.array([len(t) for t in self.templates])
        k_max = int(self.lengths.max()) if n else 0
        c_max = max((len(c) for t in self.templates for c in t), default=0)
        self.table = np.full((n, k_max, c_max), -1, dtype=np.int64)
        for i, cols in enumerate(self.templates):
            for k, col in enumerate(cols):
                self.table[i, k, : len(col)] = col

    def _viterbi_all(self, probs: np.ndarray, log_blank: np.ndarray) -> DecodedPath | None:
        """Best CTC path of every template at once; each character state keeps one identity.

        States per template: blanks b_0..b_K and characters s_{k,c} (position k, allowed char c).
        A character may follow the previous position's character directly only if it differs
        (CTC needs a blank between repeats).  Returns the best template's path.
        """
        if not len(self.templates):
            return None
        steps = probs.shape[0]
        table = self.table
        n, k_max, c_max = table.shape
        valid = table >= 0
        # Only the characters some template allows are ever emitted: their logs alone, not the
        # recogniser's whole alphabet (18,000 characters for the Latin one).
        emit = np.where(valid[None], np.log(probs[:, np.maximum(table, 0)] + 1e-9), -np.inf)  # T x N x K x C
        neg = -np.inf
        blank = np.full((n, k_max + 1), neg)
        char = np.full((n, k_max, c_max), neg)
        blank[:, 0] = log_blank[0]
        char[:, 0] = emit[0, :, 0]
        # back pointers: for char states 0 stay, 1 from blank, 2 from previous char (which slot);
        # for blanks False stay, True from char (which slot)
        char_from = np.zeros((steps, n, k_max, c_max), dtype=np.int8)
        char_prev_slot = np.zeros((steps, n, k_max, c_max), dtype=np.int16)
        blank_from = np.zeros((steps, n, k_max + 1), dtype=np.bool_)
        blank_slot = np.zeros((steps, n, k_max + 1), dtype=np.int16)
        # A step is a few whole-array operations, since it runs for every frame of every read:
        # the flat index of each (template, position)'s first slot, and buffers whose edges stay -inf.
        first_slot = (np.arange(n)[:, None] * k_max + np.arange(k_max)[None]) * c_max
        flat_table = table.reshape(-1)
        slots = np.arange(c_max)
        from_char = np.full((n, k_max + 1), neg)
        prev_best = np.full((n, k_max, c_max), neg)
        for t in range(1, steps):
            best_slot = char.argmax(axis=2)  # N x K
            best_val = char.max(axis=2)
            masked = np.where(slots == best_slot[..., None], neg, char)
            second_slot = masked.argmax(axis=2)
            second_val = masked.max(axis=2)
            # blanks: stay, or come from the character of the same count
            from_char[:, 1:] = best_val
            blank_from[t] = from_char > blank
            blank_slot[t, :, 1:] = best_slot
            new_blank = np.maximum(blank, from_char) + log_blank[t]
            # characters: stay, from the blank before, or from the previous position's best other
            # character (CTC needs a blank between repeats)
            same = table[:, 1:] == flat_table[first_slot + best_slot][:, :-1, None]
            prev_best[:, 1:] = np.where(same, second_val[:, :-1, None], best_val[:, :-1, None])
            char_prev_slot[t, :, 1:] = np.where(same, second_slot[:, :-1, None], best_slot[:, :-1, None])
            from_blank = blank[:, :k_max, None]
            stay_or_blank = np.maximum(char, from_blank)
            # the first of (stay, from blank, from previous char) that scores best, as argmax picks
            char_from[t] = np.where(prev_best > stay_or_blank, 2, from_blank > char)
            char = np.maximum(stay_or_blank, prev_best) + emit[t]
            blank = new_blank
        end_blank = blank[np.arange(n), self.lengths]
        last_char = char[np.arange(n), self.lengths - 1]
        end_char = last_char.max(axis=1)
        totals = np.maximum(end_blank, end_char)
        best = int(totals.argmax())
        if not np.isfinite(totals[best]):
            return None
        k = int(self.lengths[best])
        # backtrack
        if end_char[best] >= end_blank[best]:
            state: tuple[str, int, int] = ("c", k - 1, int(last_char[best].argmax()))
        else:
            state = ("b", k, 0)
        frames: list[list[int]] = [[] for _ in range(k)]
        slots = [0] * k
        for t in range(steps - 1, -1, -1):
            kind, pos, slot = state
            if kind == "c":
                frames[pos].append(t)
                slots[pos] = slot
                if t == 0:
                    break
                origin = int(char_from[t, best, pos, slot])
                if origin == 1:
                    state = ("b", pos, 0)
                elif origin == 2:
                    state = ("c", pos - 1, int(char_prev_slot[t, best, pos, slot]))
            else:
                if t == 0:
                    break
                if blank_from[t, best, pos]:
                    state = ("c", pos - 1, int(blank_slot[t, best, pos]))
        text, confs, alternatives = [], [], []
        for position in range(k):
            if not frames[position]:
                return None
            index = int(table[best, position, slots[position]])
            text.append(self.charset[index])
            confs.append(float(probs[frames[position], index].max()))
            allowed = table[best, position][valid[best, position]]  # what the format allows here
            alternatives.append(self._seen(probs[frames[position]][:, allowed].max(axis=0), allowed))
        return DecodedPath("".join(text), tuple(confs), float(totals[best]), tuple(alternatives))

    def _seen(self, probabilities: np.ndarray, indices: np.ndarray) -> dict[str, float]:
        kept = probabilities >= _KEPT
        return {self.charset[i].upper(): float(p) for i, p in zip(indices[kept], probabilities[kept], strict=True)}
