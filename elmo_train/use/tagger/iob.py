"""Tagged files: `token<TAB>tag` lines (or CoNLL columns with the tag last), a blank line between
sentences; the tag set a tagger predicts; IOB2 transition rules.

A file with a tab anywhere is tab-separated and every line must have one; a file with none is
read as CoNLL whitespace columns. `-DOCSTART-` lines (CoNLL 2003) separate sentences and are
dropped. Tags are read as IOB2; an entity that starts with `I-X` (after `O`, another type or
the sentence start) is turned into `B-X` and counted: if the file never starts an entity with
`B-`, it is IOB1 and the whole file is converted, otherwise the few such tags are repaired.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from elmo_train.errors import UserError

OUTSIDE = "O"
_IOB_TAG = re.compile(r"^([BI])-(\S+)$")
_DOCSTART = "-DOCSTART-"


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str] | None  # IOB2; None when the file has no tag column
    columns: list[list[str]]  # each line's columns, to write predictions in the same format
    line: int  # the file's line number of the first token


@dataclass
class TaggedFile:
    path: Path
    sentences: list[Sentence]
    separator: str  # "\t" or " "
    tagged: bool
    starts_with_i: int = 0  # entities that started with I-X, now B-X
    iob1: bool = False  # no entity started with B-: the file is IOB1, converted to IOB2

    @property
    def n_tokens(self) -> int:
        return sum(len(s.tokens) for s in self.sentences)

    def note(self) -> str | None:
        """One line about the I-X tags that started an entity, or None if there were none."""
        if not self.starts_with_i:
            return None
        if self.iob1:
            return (
                f"{self.path}: read as IOB1 (every entity starts with I-, B- only between "
                f"adjacent entities): {self.starts_with_i} entity starts converted to B-"
            )
        return (
            f"{self.path}: repaired {self.starts_with_i} I-X tags after O or another type "
            "to B-X (an entity starts with B- in IOB2)"
        )


def read_tagged(path: str | Path, require_tags: bool = True) -> TaggedFile:
    """Sentences of a tagged file; `require_tags=False` also accepts one token per line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a BOM is not a token
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    separator = "\t" if any("\t" in line for line in lines) else " "
    sentences: list[Sentence] = []
    block: list[tuple[int, list[str]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.split()[0] == _DOCSTART:
            if block:
                sentences.append(_sentence(block))
                block = []
            continue
        if separator == "\t":
            if "\t" not in line:
                raise UserError(
                    f"{path}:{number}: no tab in {line[:60]!r}; every line of a tab-separated "
                    "file is token<TAB>tag (a blank line between sentences)"
                )
            columns = line.split("\t")
        else:
            columns = line.split()
        block.append((number, columns))
    if block:
        sentences.append(_sentence(block))
    if not sentences:
        raise UserError(f"{path}: no sentences (token<TAB>tag lines, a blank line between them)")
    widths = {len(c) for s in sentences for c in s.columns}
    tagged = min(widths) > 1
    if require_tags and not tagged:
        number = next(s.line for s in sentences if any(len(c) == 1 for c in s.columns))
        raise UserError(
            f"{path}:{number}: a token without a tag; lines are token<TAB>tag "
            "(or CoNLL columns with the tag last)"
        )
    if not tagged and widths != {1}:
        raise UserError(
            f"{path}: some lines have a tag column and some do not; give token<TAB>tag on "
            "every line, or one token per line"
        )
    # One token per line: predictions are written token<TAB>tag.
    result = TaggedFile(path, sentences, separator if tagged else "\t", tagged)
    if tagged:
        _read_tags(result)
    return result


def _sentence(block: list[tuple[int, list[str]]]) -> Sentence:
    columns = [c for _, c in block]
    return Sentence([c[0] for c in columns], None, columns, block[0][0])


def _read_tags(file: TaggedFile) -> None:
    """Check every tag is IOB, then turn each entity that starts with I-X into B-X."""
    starts_with_b = 0
    for sentence in file.sentences:
        tags = []
        for offset, columns in enumerate(sentence.columns):
            tag = columns[-1]
            if tag != OUTSIDE and not _IOB_TAG.match(tag):
                raise UserError(
                    f"{file.path}:{sentence.line + offset}: tag {tag!r} is not IOB (O, B-TYPE "
                    "or I-TYPE); convert other schemes (BIOES, plain labels) to IOB2 first"
                )
            previous = tags[-1] if tags else OUTSIDE
            if tag.startswith("I-") and not _continues(previous, tag):
                tag = "B-" + tag[2:]
                file.starts_with_i += 1
            elif tag.startswith("B-") and not _continues(previous, "I-" + tag[2:]):
                starts_with_b += 1
            tags.append(tag)
        sentence.tags = tags
    file.iob1 = file.starts_with_i > 0 and starts_with_b == 0


def _continues(previous: str, tag: str) -> bool:
    """Whether `tag` (I-X) may follow `previous` in IOB2: only inside an entity of type X."""
    return previous != OUTSIDE and previous[2:] == tag[2:]


def write_tagged(file: TaggedFile, predicted: list[list[str]], path: str | Path) -> None:
    """The input's lines with the tag column replaced (or, untagged, appended) by `predicted`."""
    lines = []
    for sentence, tags in zip(file.sentences, predicted, strict=True):
        for columns, tag in zip(sentence.columns, tags, strict=True):
            kept = columns[:-1] if file.tagged else columns
            lines.append(file.separator.join([*kept, tag]))
        lines.append("")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


class TagSet:
    """`O` and `B-X`, `I-X` for each entity type of the training file, in sorted type order."""

    def __init__(self, types: list[str]):
        self.types = sorted(types)
        self.tags = [OUTSIDE] + [f"{p}-{t}" for t in self.types for p in "BI"]
        self.index = {tag: i for i, tag in enumerate(self.tags)}

    @classmethod
    def from_file(cls, file: TaggedFile) -> "TagSet":
        types = {t[2:] for s in file.sentences for t in s.tags if t != OUTSIDE}
        if not types:
            raise UserError(f"{file.path}: no entities (every tag is O); nothing to learn")
        return cls(sorted(types))

    def __len__(self) -> int:
        return len(self.tags)

    def check(self, file: TaggedFile, train: Path) -> None:
        """One line if `file` has no entities, or a type the training file does not."""
        if all(t == OUTSIDE for s in file.sentences for t in s.tags):
            raise UserError(f"{file.path}: no entities (every tag is O); entity F1 needs some")
        for sentence in file.sentences:
            for offset, tag in enumerate(sentence.tags):
                if tag != OUTSIDE and tag not in self.index:
                    raise UserError(
                        f"{file.path}:{sentence.line + offset}: tag {tag!r} does not occur in "
                        f"the training file {train} (its tags: {', '.join(self.tags)}); the "
                        "tagger could never predict it"
                    )

    def encode(self, tags: list[str]) -> list[int]:
        return [self.index[t] for t in tags]

    def allowed_transitions(self) -> tuple[list[bool], list[list[bool]]]:
        """IOB2's rules: which tags may start a sentence, and may follow each tag.

        `I-X` only continues `B-X` or `I-X`; every tag may end a sentence.
        """
        start = [not t.startswith("I-") for t in self.tags]
        follow = [
            [not b.startswith("I-") or _continues(a, b) for b in self.tags] for a in self.tags
        ]
        return start, follow
