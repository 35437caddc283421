"""Per-layer intrinsic probes of Peters et al. 2018 §5.3: word sense and part of speech.

- Word sense (`wsd`): for every layer, the centroid of each (lemma, sense) is the mean vector of
  its training occurrences; a test occurrence gets the sense of its lemma whose centroid is most
  cosine-similar (1-nearest-neighbour over centroids). The paper finds the top layer best.
- Part of speech (`pos`): for every layer, a linear softmax classifier on the frozen per-token
  vectors (full-batch L-BFGS). The paper finds the first LSTM layer best.

Layer 0 is the context-free token layer: every occurrence of a word has the same vector there,
so sense centroids of one word tie; ties go to the lemma's most frequent training sense.
Vectors are stateless (each sentence from zero state), so results do not depend on batching.
"""

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from elmo_train.errors import UserError
from elmo_train.use.embedder import Embedder
from elmo_train.use.figures import layer_bars, new_figure

# Similarities this close to the best count as a tie (stateless batches of different shapes may
# round the same context-free vector differently).
TIE_TOLERANCE = 1e-6
POS_L2 = 1e-4  # weight penalty of the linear probe: keeps L-BFGS finite on separable data


# --- input files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SenseExample:
    lemma: str
    sense: str
    tokens: tuple[str, ...]
    index: int  # 0-based position of the target token
    where: str  # "file:line", for messages


@dataclass(frozen=True)
class TaggedSentence:
    tokens: tuple[str, ...]
    tags: tuple[str, ...]


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark dropped
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8; re-encode the file as UTF-8") from None


def read_wsd_tsv(path: str | Path) -> list[SenseExample]:
    """`lemma<TAB>sense_id<TAB>sentence<TAB>target_token_index` lines; blank lines skipped.

    The sentence is whitespace-tokenized and the index is 0-based.
    """
    path = Path(path)
    examples = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split("\t")
        if len(fields) != 4:
            raise UserError(
                f"{where}: {len(fields)} tab-separated fields, expected 4: "
                "lemma<TAB>sense_id<TAB>sentence<TAB>target_token_index"
            )
        lemma, sense, sentence, index_text = (f.strip() for f in fields)
        tokens = tuple(sentence.split())
        if not lemma or not sense or not tokens:
            raise UserError(f"{where}: empty lemma, sense or sentence")
        try:
            index = int(index_text)
        except ValueError:
            raise UserError(
                f"{where}: target_token_index {index_text!r} is not an integer (0-based)"
            ) from None
        if not 0 <= index < len(tokens):
            raise UserError(
                f"{where}: target_token_index {index} is outside the sentence's {len(tokens)} "
                "tokens (0-based)"
            )
        examples.append(SenseExample(lemma, sense, tokens, index, where))
    if not examples:
        raise UserError(f"{path}: no examples")
    return examples


def split_examples(
    examples: Sequence[SenseExample], test_fraction: float, seed: int
) -> tuple[list[SenseExample], list[SenseExample]]:
    """A seeded split, per lemma: `test_fraction` of each lemma's examples (rounded) go to test,
    at least one stays in train. Input order is kept inside each part."""
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"--test-fraction {test_fraction}: use a number between 0 and 1")
    by_lemma: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        by_lemma[example.lemma].append(i)
    rng = random.Random(seed)
    test = set()
    for lemma in sorted(by_lemma):
        indices = by_lemma[lemma]
        rng.shuffle(indices)
        test.update(indices[: min(round(test_fraction * len(indices)), len(indices) - 1)])
    train = [e for i, e in enumerate(examples) if i not in test]
    return train, [e for i, e in enumerate(examples) if i in test]


def read_tagged(path: str | Path) -> list[TaggedSentence]:
    """CoNLL-U (FORM, UPOS) or `token<TAB>tag` lines; blank lines end sentences.

    The format is detected from the first token line: 10 tab-separated columns is CoNLL-U
    (comments, multi-word token ranges `1-2` and empty nodes `1.1` skipped), 2 is token-tag.
    """
    path = Path(path)
    sentences, tokens, tags = [], [], []
    columns = None
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            if tokens:
                sentences.append(TaggedSentence(tuple(tokens), tuple(tags)))
                tokens, tags = [], []
            continue
        fields = line.split("\t")
        if line.startswith("#") and len(fields) != (columns or 2):
            continue  # CoNLL-U comment (a token-tag line "#<TAB>tag" is data)
        if columns is None:
            if len(fields) not in (2, 10):
                raise UserError(
                    f"{path}:{number}: {len(fields)} tab-separated columns; expected CoNLL-U "
                    "(10 columns) or token<TAB>tag (2 columns)"
                )
            columns = len(fields)
        if len(fields) != columns:
            kind = "CoNLL-U" if columns == 10 else "token<TAB>tag"
            raise UserError(
                f"{path}:{number}: {len(fields)} tab-separated columns, expected {columns} "
                f"({kind}, as the file's first line)"
            )
        if columns == 10:
            if "-" in fields[0] or "." in fields[0]:
                continue  # multi-word token range or empty node: not a word of the tree
            token, tag = fields[1], fields[3]
        else:
            token, tag = fields
        if not token.strip() or not tag.strip():
            raise UserError(f"{path}:{number}: empty token or tag")
        tokens.append(token.strip())
        tags.append(tag.strip())
    if tokens:
        sentences.append(TaggedSentence(tuple(tokens), tuple(tags)))
    if not sentences:
        raise UserError(f"{path}: no tagged sentences")
    return sentences


# --- vectors ---------------------------------------------------------------------------------


def token_vectors(
    embedder: Embedder, sentences: Sequence[Sequence[str]], batch_size: int = 64
) -> list[torch.Tensor]:
    """Every sentence's `(n_layers + 1, n_tokens, dim)` vectors; repeated sentences run once."""
    unique = list(dict.fromkeys(tuple(s) for s in sentences))
    vectors = dict(zip(unique, embedder.embed([list(s) for s in unique], batch_size), strict=True))
    return [vectors[tuple(s)] for s in sentences]


# --- the probes --------------------------------------------------------------------------------


@dataclass
class ProbeResult:
    task: str  # "wsd" or "pos"
    accuracies: list[float]  # per layer; 0 = token layer
    n_train: int
    n_test: int
    baselines: dict[str, float] = field(default_factory=dict)  # name -> accuracy
    notes: list[str] = field(default_factory=list)

    @property
    def best_layer(self) -> int:
        return max(range(len(self.accuracies)), key=self.accuracies.__getitem__)


def _senses_by_frequency(train: Sequence[SenseExample]) -> dict[str, list[str]]:
    """Each lemma's training senses, most frequent first (ties by first appearance)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for example in train:
        counts[example.lemma][example.sense] += 1
    return {lemma: [s for s, _ in c.most_common()] for lemma, c in counts.items()}


def most_frequent_senses(
    train: Sequence[SenseExample], test: Sequence[SenseExample]
) -> tuple[list[str], int]:
    """The baseline: each test example's lemma's most frequent training sense; an unseen lemma
    gets the most frequent training sense overall. Returns the predictions and the unseen count."""
    senses = _senses_by_frequency(train)
    overall = Counter(e.sense for e in train).most_common(1)[0][0]
    predictions = [senses[e.lemma][0] if e.lemma in senses else overall for e in test]
    return predictions, sum(e.lemma not in senses for e in test)


def nearest_centroid_senses(
    train_vectors: torch.Tensor,
    train: Sequence[SenseExample],
    test_vectors: torch.Tensor,
    test: Sequence[SenseExample],
) -> list[str]:
    """Predicted sense per test example from `(N, D)` vectors of one layer: the sense of its
    lemma with the most cosine-similar centroid; ties go to the more frequent training sense, and
    an unseen lemma gets the most frequent sense (`most_frequent_senses`)."""
    members: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, example in enumerate(train):
        members[example.lemma, example.sense].append(i)
    centroids = {key: train_vectors[rows].double().mean(dim=0) for key, rows in members.items()}
    senses = _senses_by_frequency(train)
    predictions, _ = most_frequent_senses(train, test)
    for i, (vector, example) in enumerate(zip(test_vectors, test, strict=True)):
        if example.lemma not in senses:
            continue
        candidates = senses[example.lemma]
        stacked = torch.stack([centroids[example.lemma, s] for s in candidates])  # (S, D)
        similarity = F.cosine_similarity(stacked, vector.double().unsqueeze(0), dim=1)  # (S,)
        best = int(torch.nonzero(similarity >= similarity.max() - TIE_TOLERANCE)[0])
        predictions[i] = candidates[best]
    return predictions


def wsd_probe(
    embedder: Embedder,
    train: Sequence[SenseExample],
    test: Sequence[SenseExample],
    batch_size: int = 64,
) -> ProbeResult:
    if not train or not test:
        raise UserError(f"word-sense probe: {len(train)} training and {len(test)} test examples")
    examples = [*train, *test]
    vectors = token_vectors(embedder, [e.tokens for e in examples], batch_size)
    picked = torch.stack([v[:, e.index] for v, e in zip(vectors, examples, strict=True)], dim=1)
    # picked: (L+1, N_train + N_test, dim), the target token's vector at every layer
    gold = [e.sense for e in test]
    accuracies = [
        _accuracy(
            nearest_centroid_senses(layer[: len(train)], train, layer[len(train) :], test), gold
        )
        for layer in picked
    ]
    mfs, unseen = most_frequent_senses(train, test)
    result = ProbeResult(
        "wsd", accuracies, len(train), len(test), {"most frequent sense": _accuracy(mfs, gold)}
    )
    if unseen:
        result.notes.append(
            f"{unseen} test examples have a lemma unseen in training: given the most frequent "
            "training sense overall"
        )
    return result


def fit_linear_probe(
    features: torch.Tensor, labels: torch.Tensor, n_classes: int, epochs: int = 100
) -> torch.nn.Linear:
    """Softmax regression on `(N, D)` frozen features: full-batch L-BFGS, `epochs` iterations.

    Starts from zero weights, so the result is deterministic.
    """
    features = features.float()
    mean, std = features.mean(dim=0), features.std(dim=0, correction=0).clamp(min=1e-6)
    probe = torch.nn.Linear(features.shape[1], n_classes)
    torch.nn.init.zeros_(probe.weight)
    torch.nn.init.zeros_(probe.bias)
    optimizer = torch.optim.LBFGS(
        probe.parameters(), lr=1.0, max_iter=epochs, line_search_fn="strong_wolfe"
    )
    x = (features - mean) / std  # standardised: one scale for every layer

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(x), labels) + POS_L2 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    # Fold the standardisation into the layer: probe(x) == folded(features).
    with torch.no_grad():
        folded = torch.nn.Linear(features.shape[1], n_classes)
        folded.weight.copy_(probe.weight / std)
        folded.bias.copy_(probe.bias - (probe.weight * (mean / std)).sum(dim=1))
    return folded


def pos_probe(
    embedder: Embedder,
    train: Sequence[TaggedSentence],
    test: Sequence[TaggedSentence],
    epochs: int = 100,
    batch_size: int = 64,
) -> ProbeResult:
    tags = sorted({t for s in train for t in s.tags})
    tag_ids = {t: i for i, t in enumerate(tags)}
    train_vectors = torch.cat(token_vectors(embedder, [s.tokens for s in train], batch_size), dim=1)
    test_vectors = torch.cat(token_vectors(embedder, [s.tokens for s in test], batch_size), dim=1)
    # (L+1, N, dim) each: every token of every sentence, in order
    train_labels = torch.tensor([tag_ids[t] for s in train for t in s.tags])
    gold = [t for s in test for t in s.tags]
    accuracies = []
    for layer in range(train_vectors.shape[0]):
        probe = fit_linear_probe(train_vectors[layer], train_labels, len(tags), epochs)
        with torch.no_grad():
            predicted = probe(test_vectors[layer].float()).argmax(dim=1)
        accuracies.append(_accuracy([tags[i] for i in predicted.tolist()], gold))
    result = ProbeResult(
        "pos", accuracies, len(train_labels), len(gold), _tag_baselines(train, test)
    )
    unknown = sum(t not in tag_ids for t in gold)
    if unknown:
        result.notes.append(f"{unknown} test tokens have a tag absent from training (always wrong)")
    return result


def _tag_baselines(train: Sequence[TaggedSentence], test: Sequence[TaggedSentence]) -> dict:
    counts = Counter(t for s in train for t in s.tags)
    majority = counts.most_common(1)[0][0]
    per_word: dict[str, Counter] = defaultdict(Counter)
    for s in train:
        for token, tag in zip(s.tokens, s.tags, strict=True):
            per_word[token][tag] += 1
    gold = [(w, t) for s in test for w, t in zip(s.tokens, s.tags, strict=True)]
    word_tag = [per_word[w].most_common(1)[0][0] if w in per_word else majority for w, _ in gold]
    tags = [t for _, t in gold]
    return {
        "most frequent tag": _accuracy([majority] * len(gold), tags),
        "most frequent tag per word": _accuracy(word_tag, tags),
    }


def _accuracy(predicted: Sequence[str], gold: Sequence[str]) -> float:
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / max(len(gold), 1)


# --- reporting ---------------------------------------------------------------------------------

TITLES = {
    "wsd": "word sense: 1-nearest sense centroid (cosine)",
    "pos": "part of speech: linear probe on frozen vectors",
}
UNITS = {"wsd": "occurrences", "pos": "tokens"}


def layer_label(layer: int) -> str:
    return "layer 0 (token layer)" if layer == 0 else f"layer {layer} (LSTM layer {layer})"


def format_table(result: ProbeResult) -> str:
    unit = UNITS[result.task]
    rows = [(layer_label(i), a) for i, a in enumerate(result.accuracies)]
    rows += [(f"baseline: {name}", a) for name, a in result.baselines.items()]
    width = max(len(label) for label, _ in rows)
    lines = [
        f"{TITLES[result.task]}: {result.n_train:,} training / {result.n_test:,} test {unit}",
        f"  {'':<{width}} {'accuracy':>8}",
    ]
    for i, (label, accuracy) in enumerate(rows):
        best = "  <- best" if i == result.best_layer else ""
        lines.append(f"  {label:<{width}} {accuracy:>8.3f}{best}")
    lines += [f"  note: {note}" for note in result.notes]
    return "\n".join(lines)


def plot(result: ProbeResult, path: str | Path) -> Path:
    """A bar per layer, a dashed line per baseline; written with the Agg canvas (no display)."""
    path = Path(path)
    figure = new_figure(path, 1.6 + 1.2 * len(result.accuracies), 3.6)
    axes = figure.add_subplot()
    labels = ["token" if i == 0 else f"LSTM {i}" for i in range(len(result.accuracies))]
    layer_bars(axes, labels, result.accuracies, highlight=result.best_layer)
    for (name, accuracy), style in zip(result.baselines.items(), ("--", ":"), strict=False):
        axes.axhline(accuracy, color="gray", linestyle=style, linewidth=1, label=name)
    if result.baselines:
        axes.legend(fontsize=7, loc="best")
    # Probes are often close to each other and to the baselines: zoom to the range they span.
    lowest = min([*result.accuracies, *result.baselines.values()])
    axes.set_ylim(max(0.0, math.floor((lowest - 0.05) * 20) / 20), 1.0)
    axes.set_ylabel("accuracy")
    axes.set_title(TITLES[result.task], fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path
