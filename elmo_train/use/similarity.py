"""Nearest contexts of a word: do a biLM's layers tell the senses of an ambiguous word apart?

The intrinsic check of Peters et al. 2018 (Table 4: in the biLM's space the nearest neighbours
of a context of "play" use "play" in the same sense). Each sentence that contains the word
contributes its first occurrence (later ones would mostly find their own sentence's first one as
nearest neighbour); at every output layer each context is paired with its most cosine-similar
other context. With sense labels, the fraction of contexts whose nearest neighbour has the same
sense is the sense-nearest-neighbour accuracy.

Layer 0 is the token layer: it sees only the word's characters, so every context gets the same
vector there and no neighbour is nearer than another. The result says so instead of ranking ties.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from elmo_train.demo.corpus import DEMO_WORDS, demo_contexts
from elmo_train.use.embedder import Embedder

SNIPPET_RADIUS = 4  # tokens kept on each side of the word in printed contexts
# Relative difference below which a layer's vectors count as identical: stateless batches of
# different shapes may round differently, even in the context-free token layer.
SAME_VECTOR_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Context:
    sentence: int  # index of the sentence in the input
    tokens: list[str]
    position: int  # index of the word's first occurrence in `tokens`
    sense: str | None


@dataclass(frozen=True)
class LayerNeighbours:
    layer: int  # 0 = token layer, i = LSTM layer i (the Embedder's layout)
    context_free: bool  # every context has the same vector: no neighbour is nearer
    nearest: list[int] | None  # per context, index of its nearest other context; None if free
    similarity: list[float]  # cosine similarity to that neighbour (1.0 each when context-free)
    n_same_sense: int | None  # contexts whose neighbour has their sense; None without senses

    @property
    def accuracy(self) -> float | None:
        """Sense-nearest-neighbour accuracy; None without senses or when context-free."""
        return None if self.n_same_sense is None else self.n_same_sense / len(self.similarity)


@dataclass(frozen=True)
class NearestContexts:
    word: str
    contexts: list[Context]
    layers: list[LayerNeighbours]

    @property
    def has_senses(self) -> bool:
        return self.contexts[0].sense is not None

    @property
    def chance_accuracy(self) -> float | None:
        """Expected accuracy if each context's neighbour were another context at random."""
        if not self.has_senses:
            return None
        senses = [c.sense for c in self.contexts]
        n = len(senses)
        return sum((senses.count(s) - 1) / (n - 1) for s in senses) / n


def find_contexts(
    sentences: Sequence[list[str]], word: str, senses: Sequence[str] | None = None
) -> list[Context]:
    """The first occurrence of `word` (exact, case-sensitive token match) in each sentence."""
    if senses is not None and len(senses) != len(sentences):
        raise ValueError(f"{len(senses)} senses for {len(sentences)} sentences")
    return [
        Context(i, tokens, tokens.index(word), None if senses is None else senses[i])
        for i, tokens in enumerate(sentences)
        if word in tokens
    ]


# --- the math: pure functions of the vectors ------------------------------------------------------


def cosine_similarities(vectors: torch.Tensor) -> torch.Tensor:
    """`(N, D)` vectors -> `(N, N)` cosine similarities, in float64."""
    unit = torch.nn.functional.normalize(vectors.double(), dim=1)
    return unit @ unit.T


def nearest_neighbours(similarities: torch.Tensor) -> tuple[list[int], list[float]]:
    """For each row of `(N, N)` similarities, the most similar other index and its similarity."""
    others = similarities.clone()
    others.fill_diagonal_(float("-inf"))  # a context is never its own neighbour
    best, index = others.max(dim=1)
    return index.tolist(), best.tolist()


def all_same(vectors: torch.Tensor) -> bool:
    """Whether all `(N, D)` vectors equal the first, up to `SAME_VECTOR_TOLERANCE`."""
    scale = vectors.abs().max().clamp(min=torch.finfo(vectors.dtype).tiny)
    return bool(((vectors - vectors[0]).abs().max() / scale) <= SAME_VECTOR_TOLERANCE)


def count_same_sense(nearest: Sequence[int], senses: Sequence[str]) -> int:
    """How many items have a nearest neighbour of their own sense."""
    return sum(senses[j] == senses[i] for i, j in enumerate(nearest))


def layer_neighbours(
    layer: int, vectors: torch.Tensor, senses: Sequence[str] | None = None
) -> LayerNeighbours:
    """Nearest neighbours among `(N, D)` context vectors of one layer (N >= 2)."""
    if all_same(vectors):
        return LayerNeighbours(layer, True, None, [1.0] * len(vectors), None)
    nearest, similarity = nearest_neighbours(cosine_similarities(vectors))
    n_same_sense = None if senses is None else count_same_sense(nearest, senses)
    return LayerNeighbours(layer, False, nearest, similarity, n_same_sense)


# --- running a model ------------------------------------------------------------------------------


def nearest_contexts(
    embedder: Embedder,
    sentences: Sequence[list[str]],
    word: str,
    layers: Sequence[int] | None = None,
    senses: Sequence[str] | None = None,
    batch_size: int = 64,
) -> NearestContexts:
    """Nearest contexts of `word` at each of `layers` (default: all), stateless embeddings.

    `senses`, one label per sentence, adds the sense-nearest-neighbour accuracy.
    """
    contexts = find_contexts(sentences, word, senses)
    if len(contexts) < 2:
        raise ValueError(f"{word!r} occurs in {len(contexts)} sentences; need at least 2")
    layers = list(range(embedder.n_layers) if layers is None else layers)
    if not all(0 <= i < embedder.n_layers for i in layers):
        raise ValueError(f"layers {layers}: the model has layers 0..{embedder.n_layers - 1}")
    embeddings = embedder.embed([c.tokens for c in contexts], batch_size)
    # (L+1, N, dim): each context's vector of the word at every layer
    vectors = torch.stack([e[:, c.position] for e, c in zip(embeddings, contexts, strict=True)], 1)
    labels = None if senses is None else [c.sense for c in contexts]
    return NearestContexts(
        word, contexts, [layer_neighbours(i, vectors[i], labels) for i in layers]
    )


# --- printing -------------------------------------------------------------------------------------


def layer_name(layer: int) -> str:
    return "layer 0 (token layer)" if layer == 0 else f"layer {layer} (LSTM layer {layer})"


def snippet(context: Context, radius: int = SNIPPET_RADIUS) -> str:
    """The sentence around the word, cut to `radius` tokens each side, the word in brackets."""
    tokens, at = context.tokens, context.position
    start, end = max(0, at - radius), min(len(tokens), at + radius + 1)
    words = [*tokens[start:at], f"[{tokens[at]}]", *tokens[at + 1 : end]]
    return " ".join(["..."] * (start > 0) + words + ["..."] * (end < len(tokens)))


def accuracy_text(layer: LayerNeighbours) -> str:
    return "n/a (context-free)" if layer.context_free else f"{layer.accuracy:.2f}"


def neighbour_lines(result: NearestContexts, layer: LayerNeighbours, full: bool) -> list[str]:
    """`i sense context -> j sense similarity`, one line per context; `full` adds j's context."""
    if layer.context_free:
        return [
            f"  context-free: every context gives [{result.word}] the same vector "
            "(all similarities 1.00), so no context is nearer than another"
        ]
    contexts = result.contexts
    snippets = [snippet(c) for c in contexts]
    width = max(len(s) for s in snippets)
    sense_width = max(len(c.sense or "") for c in contexts)
    labels = [f"{k + 1:>2} {c.sense or '':<{sense_width}}" for k, c in enumerate(contexts)]
    lines = []
    for i, j in enumerate(layer.nearest):
        line = f"  {labels[i]} {snippets[i]:<{width}}  -> {labels[j]} {layer.similarity[i]:.3f}"
        lines.append(f"{line}  {snippets[j]}" if full else line)
    return lines


def format_table(result: NearestContexts) -> str:
    """Per layer, each context -> its nearest other context, and the sense accuracy if known."""
    n = len(result.contexts)
    lines = [
        f"{result.word!r}: {n} contexts (first occurrence per sentence); each context -> its "
        "nearest other context, cosine similarity"
    ]
    for layer in result.layers:
        lines.append(f"{layer_name(layer.layer)}:")
        lines += neighbour_lines(result, layer, full=True)
        if not result.has_senses:
            continue
        counts = (
            ""
            if layer.context_free
            else f" ({layer.n_same_sense}/{n}, chance {result.chance_accuracy:.2f})"
        )
        lines.append(f"  sense-nearest-neighbour accuracy: {accuracy_text(layer)}{counts}")
    return "\n".join(lines)


def demo_report(embedder: Embedder) -> str:
    """Nearest held-out contexts of every demo word and the per-layer sense accuracy.

    The contexts of a word are minimal pairs (`demo_contexts`): what the report shows is that the
    contextual layers separate them and the token layer cannot. It is no measure of how well the
    model learned senses: a biLM with random weights separates these pairs too, because their
    words differ.
    """
    results = []
    for word in DEMO_WORDS:
        senses, sentences = zip(*demo_contexts(word), strict=True)
        results.append(nearest_contexts(embedder, list(sentences), word, senses=list(senses)))
    top = embedder.n_layers - 1
    lines = [
        "Contextual embeddings: held-out sentences that share one frame per ambiguous word and "
        "differ in the words of its sense.",
        f"Each context -> its nearest other context at the top layer, {layer_name(top)}, by "
        "cosine similarity:",
    ]
    for result in results:
        lines.append(result.word)
        lines += neighbour_lines(result, result.layers[top], full=False)
    chance = sum(r.chance_accuracy for r in results) / len(results)
    lines.append(
        f"Sense-nearest-neighbour accuracy, mean over {len(results)} words (chance {chance:.2f}):"
    )
    for layer in range(embedder.n_layers):
        per_word = [r.layers[layer] for r in results]
        scored = [p.accuracy for p in per_word if not p.context_free]
        mean = f"{sum(scored) / len(scored):.2f}" if scored else "n/a (context-free)"
        words = "  ".join(f"{r.word} {accuracy_text(r.layers[layer])}" for r in results)
        lines.append(f"  {layer_name(layer):<23} {mean}" + (f"   {words}" if scored else ""))
    return "\n".join(lines)
