"""The four word sets of an association test (WEAT, Caliskan et al. 2017): targets X and Y,
attributes A and B, from a shipped test (`bias_sets/`, each file naming its source) or a user's
file of `ROLE name: word word ...` lines."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from elmo_train.errors import UserError

SETS_DIR = Path(__file__).parent / "bias_sets"
ROLES = ("X", "Y", "A", "B")
ROLE_KINDS = {"X": "target", "Y": "target", "A": "attribute", "B": "attribute"}
_SET_LINE = re.compile(r"^\s*([XYAB])\b([^:]*):(.*)$")


@dataclass(frozen=True)
class WordSet:
    name: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class AssociationTest:
    name: str
    sets: dict[str, WordSet]  # role (X, Y, A, B) -> words
    source: str = ""  # the file's comment lines: where the lists come from

    def slots(self) -> list[tuple[str, str]]:
        """`(role, word)` for every word of every set, X, Y, A, B in order."""
        return [(role, word) for role in ROLES for word in self.sets[role].words]

    def mapped(self, function: Callable[[str], str]) -> "AssociationTest":
        """The test with `function` applied to every word (lowercasing, Unicode normalisation)."""
        sets = {r: WordSet(s.name, tuple(map(function, s.words))) for r, s in self.sets.items()}
        _check_sets(sets, self.name)
        return AssociationTest(self.name, sets, self.source)


def builtin_tests() -> dict[str, Path]:
    return {path.stem: path for path in sorted(SETS_DIR.glob("*.txt"))}


def read_test(path: str | Path) -> AssociationTest:
    """Four word sets from a text file, one line each (order free, `#` comments, blank lines):

        X male names: John Paul Mike
        Y female names: Amy Joan Lisa
        A career: executive management
        B family: home parents

    The role letter, an optional name, a colon, then the words (whitespace or commas between
    them). Each word is one token of the corpus's tokenization.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: word-set file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark dropped
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8; re-encode the file as UTF-8") from None
    sets: dict[str, WordSet] = {}
    comments = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path}:{number}"
        if line.lstrip().startswith("#"):
            comments.append(line.lstrip()[1:].strip())
            continue
        if not line.strip():
            continue
        match = _SET_LINE.match(line)
        if match is None:
            raise UserError(
                f"{where}: expected 'ROLE name: word word ...' with ROLE one of X, Y (targets), "
                "A, B (attributes)"
            )
        role, name, words_text = match.group(1), match.group(2).strip(), match.group(3)
        if role in sets:
            raise UserError(f"{where}: a second {role} set; each of X, Y, A, B appears once")
        words = tuple(w for w in re.split(r"[\s,]+", words_text) if w)
        name = name or role
        if not words:
            raise UserError(f"{where}: the {role} set ({name}) is empty; list its words")
        sets[role] = WordSet(name, words)
    missing = [role for role in ROLES if role not in sets]
    if missing:
        raise UserError(
            f"{path}: no {', '.join(missing)} set; a test has four lines: X and Y (targets), "
            "A and B (attributes)"
        )
    _check_sets(sets, str(path))
    return AssociationTest(path.stem, sets, "\n".join(c for c in comments if c))


def _check_sets(sets: dict[str, WordSet], where: str) -> None:
    """No word twice in a set, and no word in both targets or both attributes (also after
    lowercasing: "Bill bill" is one word twice)."""
    for word_set in sets.values():
        repeated = sorted({w for w in word_set.words if word_set.words.count(w) > 1})
        if repeated:
            raise UserError(
                f"{where}: {', '.join(map(repr, repeated))} listed twice in {word_set.name}"
            )
    for first, second in (("X", "Y"), ("A", "B")):
        shared = sorted(set(sets[first].words) & set(sets[second].words))
        if shared:
            raise UserError(
                f"{where}: {', '.join(map(repr, shared))} in both {first} and {second}; the two "
                f"{ROLE_KINDS[first]} sets must not share words"
            )


def load_test(spec: str) -> AssociationTest:
    """A built-in test by name, or a word-set file."""
    tests = builtin_tests()
    if spec in tests:
        return read_test(tests[spec])
    if Path(spec).is_file():
        return read_test(spec)
    raise UserError(
        f"--test {spec}: neither a built-in test ({', '.join(tests)}) nor a file; give a name or "
        "a word-set file (see `elmo bias --help`)"
    )
