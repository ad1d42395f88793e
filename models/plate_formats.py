"""Licence-plate formats: what a plate may look like, position by position.

A :class:`PlateFormat` is a regular expression plus, when the expression is simple enough, its
expansion into *templates*: one tuple per possible length, giving the characters allowed at each
position.  Templates let the recogniser decode only strings that can be plates (a province
character first, a letter second, ...) and let :func:`normalise` repair look-alike characters
(``O``/``0``, ``B``/``8``) by where they stand.  Formats given as arbitrary regexes that cannot be
expanded still work, matched after the read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

try:  # the regex parser is private but stable; without it custom regexes are matched only
    from re import _parser as sre_parse  # type: ignore[attr-defined]
    from re._constants import IN, LITERAL, MAX_REPEAT, MIN_REPEAT, RANGE, SUBPATTERN
except ImportError:  # pragma: no cover - other Pythons
    sre_parse = None

DIGITS = "0123456789"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ALNUM = LETTERS + DIGITS
# Mainland letters exclude I and O (GA 36-2018) so they are never confused with 1 and 0.
CN_LETTERS = LETTERS.replace("I", "").replace("O", "")
CN_ALNUM = CN_LETTERS + DIGITS
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
CN_SUFFIXES = "挂学警港澳"
SEPARATORS = "·•・-–—_ .。,:'\"|/\\"
# Cyrillic and Greek plates (Russia, Ukraine, Bulgaria, Greece, ...) use only the letters that look
# like Latin ones, so that plates read abroad; the recogniser reads them as Latin.  A label, a
# whitelist entry or a format written in either script means the same plate.
_LOOKALIKE_LETTERS = str.maketrans(
    "АВЕКМНОРСТУХІавекмнорстухі" "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧαβεζηικμνορτυχ",
    "ABEKMHOPCTYXIABEKMHOPCTYXI" "ABEZHIKMNOPTYXABEZHIKMNOPTYX",
)

# Look-alike pairs the recogniser mixes up; a character outside a position's class is replaced
# by its look-alike when that one fits.  Both directions: 8 on a letter position is a B.
CONFUSABLES: dict[str, str] = {
    "O": "0", "Q": "0", "D": "0", "I": "1", "B": "8", "S": "5", "Z": "2", "G": "6",
    "0": "O", "1": "I", "8": "B", "5": "S", "2": "Z", "6": "G",
}
# Second choice when the first look-alike is not allowed either (0 on a CN letter slot is a D).
# O is deliberately absent: an O where a CN letter must stand is not read as anything.
CONFUSABLES_2: dict[str, str] = {"0": "D"}

_MAX_TEMPLATES = 64


@dataclass(frozen=True)
class PlateFormat:
    """One kind of plate. ``templates`` is empty when ``regex`` is too complex to expand."""

    name: str
    regex: str
    templates: tuple[tuple[str, ...], ...] = field(default=())

    def matches(self, text: str) -> bool:
        # Plate text is uppercase (see clean); a technician's "[a-z]{3}" or "(?i)" means the same.
        return re.fullmatch(self.regex, text, re.IGNORECASE) is not None


def _cn_standard() -> PlateFormat:
    templates = (
        (PROVINCES, CN_LETTERS, *([CN_ALNUM] * 5)),
        (PROVINCES, CN_LETTERS, *([CN_ALNUM] * 4), CN_SUFFIXES),
    )
    return PlateFormat("cn", f"[{PROVINCES}][{CN_LETTERS}]([{CN_ALNUM}]{{5}}|[{CN_ALNUM}]{{4}}[{CN_SUFFIXES}])",
                       templates)


def _cn_new_energy() -> PlateFormat:
    # GA 36-2018: small cars D/F then a letter or digit then 4 digits; large vehicles 5 digits then D/F.
    templates = (
        (PROVINCES, CN_LETTERS, "DF", CN_ALNUM, *([DIGITS] * 4)),
        (PROVINCES, CN_LETTERS, *([DIGITS] * 5), "DF"),
    )
    return PlateFormat("cn-ne", f"[{PROVINCES}][{CN_LETTERS}]([DF][{CN_ALNUM}][0-9]{{4}}|[0-9]{{5}}[DF])",
                       templates)


def _latin(name: str, low: int, high: int) -> PlateFormat:
    templates = tuple(tuple([ALNUM] * n) for n in range(low, high + 1))
    return PlateFormat(name, f"[A-Z0-9]{{{low},{high}}}", templates)


NAMED_FORMATS: dict[str, list[PlateFormat]] = {
    "cn": [_cn_standard(), _cn_new_energy()],
    "us": [_latin("us", 2, 8)],
    # Generic Latin plates (EU, UK, ...) after separators are dropped.
    "latin": [_latin("latin", 2, 10)],
}


def has_chinese(formats: list[PlateFormat]) -> bool:
    """Whether a format reads Chinese characters (mainland plates)."""
    return any(not ch.isascii() for fmt in formats for ch in fmt.regex)


def _expand(pattern: str) -> tuple[tuple[str, ...], ...]:
    """Templates of a simple regex (classes, literals, bounded repeats, groups, alternation)."""
    if sre_parse is None:
        return ()

    def chars_of(op: object, arg: object) -> str | None:
        if op is LITERAL:
            return _upper(chr(arg))  # type: ignore[arg-type]
        if op is IN:
            out: list[str] = []
            for sub_op, sub_arg in arg:  # type: ignore[attr-defined]
                if sub_op is LITERAL:
                    out.append(chr(sub_arg))
                elif sub_op is RANGE:
                    out.extend(chr(c) for c in range(sub_arg[0], sub_arg[1] + 1))
                else:
                    return None
            return _upper("".join(out))
        return None

    def seq(items: Iterable) -> list[tuple[str, ...]] | None:
        results: list[tuple[str, ...]] = [()]
        for op, arg in items:
            options = one(op, arg)
            if options is None:
                return None
            results = [r + o for r in results for o in options]
            if len(results) > _MAX_TEMPLATES:
                return None
        return results

    def one(op: object, arg: object) -> list[tuple[str, ...]] | None:
        single = chars_of(op, arg)
        if single is not None:
            return [(single,)]
        if op in (MAX_REPEAT, MIN_REPEAT):
            low, high, body = arg  # type: ignore[misc]
            if high > 16:
                return None
            inner = seq(body)
            if inner is None:
                return None
            out: list[tuple[str, ...]] = []
            for count in range(low, high + 1):
                combos: list[tuple[str, ...]] = [()]
                for _ in range(count):
                    combos = [c + i for c in combos for i in inner]
                    if len(combos) > _MAX_TEMPLATES:
                        return None
                out.extend(combos)
            return out
        if op is SUBPATTERN:
            return seq(arg[-1])  # type: ignore[index]
        if str(op) == "BRANCH":
            out = []
            for branch in arg[1]:  # type: ignore[index]
                part = seq(branch)
                if part is None:
                    return None
                out.extend(part)
            return out
        return None

    try:
        parsed = sre_parse.parse(pattern)
    except re.error:
        return ()
    templates = seq(parsed)
    if not templates or len(templates) > _MAX_TEMPLATES:
        return ()
    return tuple(dict.fromkeys(t for t in templates if t))


def _upper(chars: str) -> str:
    """A position's allowed characters as plate text has them: uppercase, each once."""
    return "".join(dict.fromkeys(c.upper() if len(c.upper()) == 1 else c for c in chars))


_QUANTIFIER = re.compile(r"(?:[?*+]|\{\d*(?:,\d*)?\})[?+]?")
_GROUP_OPENER = re.compile(r"\(\?(?:P<\w+>|<[=!]|[:=!]|[aiLmsux-]+[:)])")  # (?:  (?P<name>  (?i) ...
_SHORTHANDS = {"d": "0-9", "w": "A-Z0-9"}  # over normalised text: uppercase, no "_"
_NAME = re.compile(r"[A-Za-z]{2,8}")
_SCRIPT_RANGE = re.compile(r"(?<!\\)([^\x00-\x7f])-([^\x00-\x7f])")


def _class_end(pattern: str, start: int) -> int:
    """Index just past the character class that opens at ``pattern[start] == "["``."""
    i = start + 1
    if pattern[i: i + 1] == "^":
        i += 1
    if pattern[i: i + 1] == "]":  # a "]" first in the class is a literal
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1


def _class_body(body: str) -> str:
    """A class's members with shorthands spelled out and whitespace (``\\s``) dropped."""
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            letter = body[i + 1]
            out.append(_SHORTHANDS.get(letter, "" if letter == "s" else body[i: i + 2]))
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def plate_regex(pattern: str) -> str:
    """A technician's regex for plates as printed, made to match the normalised text.

    Normalised text has no separators, so separators written in the regex (``AB-123-CD`` as
    ``[A-Z]{2}-[0-9]{3}-[A-Z]{2}``, ``\\s``, ``[- ]?``) are dropped with their quantifiers, anchors
    are dropped (plates are matched whole anyway), and ``\\d`` and ``\\w`` become classes, so the
    format still expands into per-position templates for constrained decoding.
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char, separator = pattern[i], False
        if char == "[":
            end = _class_end(pattern, i)
            negated = pattern[i + 1: i + 2] == "^"
            body = pattern[i + 2: end - 1] if negated else _class_body(pattern[i + 1: end - 1])
            kept = "".join(c for c in body if c not in SEPARATORS and not c.isspace())
            separator = not negated and not kept.replace("\\", "")
            token, i = f"[{'^' if negated else ''}{body}]", end
        elif char == "\\" and i + 1 < len(pattern):
            letter = pattern[i + 1]
            separator = letter in SEPARATORS or letter == "s" or letter.isspace()
            token = pattern[i: i + 2]
            if letter in _SHORTHANDS:
                token = f"[{_SHORTHANDS[letter]}]"
            elif letter in "AZbB":  # anchors
                token = ""
            i += 2
        elif char in "^$":
            token, i = "", i + 1
        elif char == "{" and (quantifier := _QUANTIFIER.match(pattern, i)):  # its "," is no separator
            token, i = quantifier.group(), quantifier.end()
        elif char == "(" and (opener := _GROUP_OPENER.match(pattern, i)):  # nor is the ":" of "(?:"
            token, i = opener.group(), opener.end()
        else:
            separator = char not in ".|" and (char in SEPARATORS or char.isspace())  # unescaped: regex syntax
            token, i = char, i + 1
        if separator:
            quantifier = _QUANTIFIER.match(pattern, i)
            i = quantifier.end() if quantifier else i
            continue
        out.append(token)
    return "".join(out)


def _spelled(letters: re.Match[str]) -> str:
    first, last = ord(letters[1]), ord(letters[2])
    if not 0 <= last - first < 256:  # a range of Chinese characters (一-龥) has no look-alikes to fold
        return letters[0]
    return "".join(map(chr, range(first, last + 1)))


def _spell_script_ranges(pattern: str) -> str:
    """Ranges between two non-ASCII characters in a class spelled out (``[А-Я]`` as its 32 letters).
    Folding look-alike letters to Latin would otherwise fold only the range's ends: ``[A-Я]`` runs
    from Latin A to Cyrillic Я, over every Latin letter and some seven hundred others."""
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "\\":
            out.append(pattern[i: i + 2])
            i += 2
        elif pattern[i] == "[":
            end = _class_end(pattern, i)
            out.append(_SCRIPT_RANGE.sub(_spelled, pattern[i:end]))
            i = end
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out)


def formats_from_spec(spec: str | Iterable[str]) -> list[PlateFormat]:
    """``"cn"``, ``"us"``, ``"cn,us"``, a regex, or a list of these -> formats.

    Anything that is not a known name is a regular expression for the plate's text, e.g.
    ``[A-Z]{2}[0-9]{2}[A-Z]{3}`` for UK plates or ``[A-Z]{2}-[0-9]{3}-[A-Z]{2}`` for French ones;
    it is matched against the normalised text (uppercase, separators removed): see :func:`plate_regex`.
    """
    parts = [spec] if isinstance(spec, str) else list(spec)
    formats: list[PlateFormat] = []
    for part in parts:
        # "cn,us" is a list of names; a regex may hold commas too ("[A-Z]{1,3}").
        items = part.split(",") if all(_NAME.fullmatch(name.strip()) for name in part.split(",")) else [part]
        for item in items:
            key = _spell_script_ranges(item.strip()).translate(_LOOKALIKE_LETTERS)
            if key.lower() in NAMED_FORMATS:
                formats.extend(NAMED_FORMATS[key.lower()])
            elif _NAME.fullmatch(key):  # a name, not a pattern: as a regex it would match one plate
                raise ValueError(f"{key!r} is not a named plate format ({', '.join(NAMED_FORMATS)}); give "
                                 "other regions as a regex, e.g. '[A-Z]{2}[0-9]{2}[A-Z]{3}' for UK plates")
            elif key:
                re.compile(key)  # raises re.error for a technician's typo
                regex = plate_regex(key)
                re.compile(regex)
                formats.append(PlateFormat(f"regex:{key}", regex, _expand(regex)))
    if not formats:
        raise ValueError(f"no plate format in {spec!r}")
    return formats


def clean(raw: str) -> str:
    """Uppercase with separators and whitespace removed (full-width letters, and Cyrillic and Greek
    letters that look Latin, folded to Latin)."""
    folded = "".join(chr(ord(c) - 0xFEE0) if "！" <= c <= "～" else c for c in raw)
    return "".join(c for c in folded.upper().translate(_LOOKALIKE_LETTERS) if c not in SEPARATORS and not c.isspace())


def _fit(text: str, template: tuple[str, ...]) -> tuple[str, int] | None:
    """``text`` bent onto ``template`` with look-alike swaps, and how many swaps it took."""
    if len(text) != len(template):
        return None
    out, swaps = [], 0
    for char, allowed in zip(text, template, strict=True):
        if char in allowed:
            out.append(char)
            continue
        for table in (CONFUSABLES, CONFUSABLES_2):
            alt = table.get(char)
            if alt is not None and alt in allowed:
                out.append(alt)
                swaps += 1
                break
        else:
            return None
    return "".join(out), swaps


def normalise(raw: str, formats: Iterable[PlateFormat]) -> str | None:
    """Canonical plate text, or None when ``raw`` fits no format even after look-alike fixes."""
    text = clean(raw)
    if not text:
        return None
    best: tuple[int, str] | None = None
    for fmt in formats:
        if fmt.matches(text) and (best is None or best[0] > 0):
            best = (0, text)
        for template in fmt.templates:
            fitted = _fit(text, template)
            if fitted is not None and (best is None or fitted[1] < best[0]) and fmt.matches(fitted[0]):
                best = (fitted[1], fitted[0])
    return None if best is None else best[1]


def is_latin(text: str) -> bool:
    return all(c.isascii() for c in text)


def fold(plate: str) -> str:
    """``plate`` with O spelled 0: many plate fonts draw them alike, and labels use them interchangeably."""
    return plate.replace("O", "0")


def same_plate(expected: str, read: str) -> bool:
    """Exact comparison; on Latin plates O and 0 count as one character (CN plates have no O)."""
    if is_latin(expected) and is_latin(read):
        return fold(expected) == fold(read)
    return expected == read
