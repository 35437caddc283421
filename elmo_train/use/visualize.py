"""Per-layer 2-D maps of a word's contexts, and how well each layer separates their labels.

Every line of the input that contains the word gives one occurrence (its first, as
`similarity.find_contexts`: a later one in the same line would mostly pair with its own line's
first). Each layer of the biLM (the token layer, each LSTM layer, and the mean of the layers, as
AllenNLP's equal-weight average) places the occurrences in its own space; a panel per layer shows
them projected to 2-D (PCA, or UMAP with `method="umap"`, which needs `umap-learn`), coloured by their sense
labels or, without labels, by k-means clusters of the top LSTM layer (one clustering, so a colour
is the same occurrences in every panel).

Each picture comes with two numbers per layer, both on cosine geometry (what `elmo similar` and
the probes use): the mean silhouette (Rousseeuw 1987) with cosine distance, and the
leave-one-out 1-nearest-neighbour label accuracy (cosine similarity). Ties for the nearest
neighbour are split evenly, so the context-free token layer, where every occurrence has the same
vector, scores exactly the chance accuracy and a silhouette of 0 instead of an arbitrary pick.
"""

import dataclasses
import html
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from elmo_train.demo.corpus import (
    FRAMED_TEMPLATES,
    SENSES,
    Sense,
    ambiguous_sentence,
    corpus_path,
)
from elmo_train.errors import UserError
from elmo_train.formats import atomic
from elmo_train.use.embedder import Embedder
from elmo_train.use.figures import new_figure
from elmo_train.use.probes import token_vectors
from elmo_train.use.separation import (
    METHODS,
    chance_accuracy,
    cosine_distances,
    kmeans,
    nearest_neighbour_accuracy,
    pca_2d,
    silhouette,
    umap_2d,
)
from elmo_train.use.similarity import Context, all_same, cosine_similarities, find_contexts

# Seaborn's "deep" palette: the probe plots' blue and orange first.
PALETTE = (
    "#4c72b0",
    "#dd8452",
    "#55a868",
    "#c44e52",
    "#8172b3",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
    "#ccb974",
    "#64b5cd",
)
DEMO_PER_SENSE = 20  # held-out demo sentences per sense
MIN_OCCURRENCES = 3  # fewer leave a silhouette or a 1-NN score nothing to compare


# --- the math: pure functions of the vectors ------------------------------------------------------


def layer_names(n_layers: int) -> list[str]:
    """Names of the `n_layers` output layers (token layer first) and of their mean."""
    return ["token layer", *(f"LSTM layer {i}" for i in range(1, n_layers)), "mean of layers"]


def with_mean(vectors: torch.Tensor) -> torch.Tensor:
    """`(L+1, N, D)` layer vectors -> `(L+2, N, D)`: the layers and their equal-weight mean."""
    return torch.cat([vectors, vectors.mean(dim=0, keepdim=True)])


# --- a word's occurrences ------------------------------------------------------------------------


def context_vectors(
    embedder: Embedder, contexts: Sequence[Context], batch_size: int = 64
) -> torch.Tensor:
    """`(L+1, N, D)`: the word's vector at every layer, one column per context (stateless)."""
    sentences = token_vectors(embedder, [c.tokens for c in contexts], batch_size)
    return torch.stack([s[:, c.position] for s, c in zip(sentences, contexts, strict=True)], 1)


def demo_frame() -> str:
    """The demo template whose every slot around the word carries the word's sense."""
    # A Sense's fields are the plurals of the template slots: agents -> {agent}.
    fields = [f.name for f in dataclasses.fields(Sense) if f.name != "name"]
    slots = [f"{{{name.removesuffix('s')}}}" for name in fields]
    return max(FRAMED_TEMPLATES, key=lambda template: sum(s in template for s in slots))


def demo_occurrences(word: str, per_sense: int = DEMO_PER_SENSE):
    """Held-out sentences of a demo word and their senses, `per_sense` of each sense.

    All come from one frame (`demo_frame`), as the training demo's minimal pairs: they differ
    only in the sense vocabulary around `word` (a tiny biLM's vectors are dominated by sentence
    structure when it varies). None is in the training split. Returns `(sentences, senses)`,
    grouped by sense.
    """
    if word not in SENSES:
        raise UserError(
            f"{word!r} is not a demo word: without --input, --word is one of {', '.join(SENSES)}"
        )
    seen = set(corpus_path("train").read_text(encoding="utf-8").splitlines())
    rng = random.Random(f"visualize {word}")
    frame = demo_frame()
    sentences, senses = [], []
    for sense in SENSES[word]:
        fresh: dict[str, None] = {}
        for _ in range(100 * per_sense):  # the frame has thousands of fillings per sense
            line = ambiguous_sentence(rng, frame, word, sense)
            if line not in seen:
                fresh[line] = None
            if len(fresh) == per_sense:
                break
        assert len(fresh) == per_sense, f"{frame!r} has too few unseen fillings of {word!r}"
        sentences += [line.split() for line in fresh]
        senses += [sense.name] * per_sense
    return sentences, senses


@dataclass(frozen=True)
class LayerMap:
    name: str
    context_free: bool  # every occurrence has the same vector here
    points: torch.Tensor  # (N, 2) projected coordinates
    silhouette: float
    nn_accuracy: float


@dataclass(frozen=True)
class WordMap:
    word: str
    contexts: list[Context]
    labels: list[str]  # one per context
    clustered: bool  # labels are k-means clusters, not given senses
    method: str
    layers: list[LayerMap]
    repeats: int  # later occurrences of the word in a line that has it already: not shown

    @property
    def chance_accuracy(self) -> float:
        return chance_accuracy(self.labels)


def word_map(
    embedder: Embedder,
    sentences: Sequence[list[str]],
    word: str,
    labels: Sequence[str] | None = None,
    clusters: int = 2,
    method: str = "pca",
    seed: int = 0,
    batch_size: int = 64,
) -> WordMap:
    """Occurrences of `word` in `sentences` mapped per layer, with separation scores.

    `labels` (one per sentence) colour and score the occurrences; without them, `clusters`
    k-means clusters of the top LSTM layer do.
    """
    assert method in METHODS, method
    contexts = find_contexts(sentences, word, labels)
    if len(contexts) < MIN_OCCURRENCES:
        raise UserError(
            f"{word!r} occurs in {len(contexts)} lines; a map and its scores need at least "
            f"{MIN_OCCURRENCES}"
        )
    repeats = sum(c.tokens.count(word) - 1 for c in contexts)
    layers = with_mean(context_vectors(embedder, contexts, batch_size))  # (L+2, N, D)
    unit = torch.nn.functional.normalize(layers.double(), dim=2)
    if labels is None:
        if not 2 <= clusters < len(contexts):
            raise UserError(
                f"--clusters {clusters}: use 2 to {len(contexts) - 1} for {len(contexts)} "
                "occurrences"
            )
        top = unit[-2]
        if all_same(top):
            raise UserError(f"every occurrence of {word!r} has the same vector: no clusters")
        assignment, _ = kmeans(top, clusters, seed)
        context_labels = [f"cluster {c + 1}" for c in assignment]
    else:
        context_labels = [c.sense for c in contexts]
        if any(not label for label in context_labels):
            first = next(c for c in contexts if not c.sense)
            raise UserError(
                f"line {first.sentence + 1} contains {word!r} but its label is empty; give every "
                "such line a label"
            )
        if len(set(context_labels)) < 2:
            raise UserError(
                f"every occurrence of {word!r} has the label {context_labels[0]!r}; separating "
                "labels needs at least two"
            )
    names = layer_names(embedder.n_layers)
    maps = []
    for name, vectors in zip(names, unit, strict=True):
        context_free = all_same(vectors)
        if context_free:
            points = torch.zeros(len(contexts), 2, dtype=torch.float64)
        elif method == "pca":
            points = pca_2d(vectors)
        else:
            points = umap_2d(vectors, seed)
        maps.append(
            LayerMap(
                name,
                context_free,
                points,
                silhouette(cosine_distances(vectors), context_labels),
                nearest_neighbour_accuracy(cosine_similarities(vectors), context_labels),
            )
        )
    return WordMap(word, contexts, context_labels, labels is None, method, maps, repeats)


# --- reporting ------------------------------------------------------------------------------------


def label_summary(result: WordMap) -> str:
    counts = Counter(result.labels)
    kind = "k-means clusters of the top LSTM layer" if result.clustered else "labels"
    return f"{kind}: " + ", ".join(f"{name} {counts[name]}" for name in sorted(counts))


def format_table(result: WordMap) -> str:
    """Per layer: silhouette and 1-NN accuracy, with the chance accuracy."""
    lines = [
        f"{result.word!r}: {len(result.contexts)} occurrences (the first in each line that has "
        f"it); {label_summary(result)}"
    ]
    if result.repeats:
        lines.append(
            f"  {result.repeats} later occurrences in lines that have {result.word!r} already "
            "are not shown"
        )
    width = max(len(layer.name) for layer in result.layers)
    lines.append(f"  {'':<{width}}  silhouette  1-NN accuracy   (cosine)")
    for layer in result.layers:
        note = "  context-free: every occurrence has the same vector" if layer.context_free else ""
        lines.append(
            f"  {layer.name:<{width}}  {layer.silhouette:>10.3f}  {layer.nn_accuracy:>13.3f}{note}"
        )
    lines.append(f"  chance 1-NN accuracy: {result.chance_accuracy:.3f}")
    if result.clustered:
        lines.append(
            "  the clusters were fit on the top LSTM layer, so its scores there are flattering"
        )
    return "\n".join(lines)


def to_json(result: WordMap) -> dict:
    return {
        "word": result.word,
        "method": result.method,
        "labels": "k-means" if result.clustered else "given",
        "n_occurrences": len(result.contexts),
        "later_occurrences_not_shown": result.repeats,
        "chance_nn_accuracy": result.chance_accuracy,
        "layers": [
            {
                "name": layer.name,
                "context_free": layer.context_free,
                "silhouette": layer.silhouette,
                "nn_accuracy": layer.nn_accuracy,
            }
            for layer in result.layers
        ],
        "occurrences": [
            {
                "line": context.sentence + 1,
                "position": context.position,
                "label": label,
                "sentence": " ".join(context.tokens),
                "points": [layer.points[i].tolist() for layer in result.layers],
            }
            for i, (context, label) in enumerate(zip(result.contexts, result.labels, strict=True))
        ],
    }


def write_json(result: WordMap, path: str | Path) -> Path:
    return atomic.write_json(path, to_json(result))


def _colours(result: WordMap) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(result.labels)))}


def _panel_title(layer: LayerMap) -> str:
    scores = f"silhouette {layer.silhouette:.2f} · 1-NN {layer.nn_accuracy:.2f}"
    return f"{layer.name}\n{scores}" + ("\n(context-free)" if layer.context_free else "")


def plot(result: WordMap, path: str | Path) -> Path:
    """One panel per layer; written with the Agg canvas (no display)."""
    path = Path(path)
    n = len(result.layers)
    figure = new_figure(path, 2.7 * n, 3.3)
    colours = _colours(result)
    for k, layer in enumerate(result.layers):
        axes = figure.add_subplot(1, n, k + 1)
        for name, colour in colours.items():
            rows = [i for i, label in enumerate(result.labels) if label == name]
            points = layer.points[rows]
            axes.scatter(points[:, 0], points[:, 1], s=14, color=colour, alpha=0.8, label=name)
        axes.set_title(_panel_title(layer), fontsize=8)
        axes.set_xticks([])
        axes.set_yticks([])
    figure.legend(
        *figure.axes[0].get_legend_handles_labels(),
        loc="lower center",
        ncol=min(len(colours), 6),
        fontsize=8,
        frameon=False,
    )
    axis = "PCA" if result.method == "pca" else "UMAP"
    figure.suptitle(f"contexts of {result.word!r} per layer ({axis}, cosine)", fontsize=9)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    figure.savefig(path, dpi=110)
    return path


HTML_PANEL = 300  # pixels per panel side
_HTML_STYLE = """
body { font-family: sans-serif; margin: 1em; }
.panels { display: flex; flex-wrap: wrap; gap: 12px; }
.panel { border: 1px solid #ddd; }
.panel h2 { font-size: 13px; margin: 4px 6px; font-weight: normal; }
circle { stroke: white; stroke-width: 0.5; cursor: pointer; }
circle.on { stroke: black; stroke-width: 2; }
#sentence { min-height: 2.6em; margin: 0.6em 0; padding: 0.4em; background: #f4f4f4; }
.legend span { margin-right: 1em; }
"""
# Hovering an occurrence outlines it in every panel and shows its line (no network, no library).
_HTML_SCRIPT = """
const info = document.getElementById("sentence");
document.querySelectorAll("circle").forEach(c => {
  c.addEventListener("mouseenter", () => {
    document.querySelectorAll(`circle[data-i="${c.dataset.i}"]`).forEach(d => d.classList.add("on"));
    info.textContent = c.dataset.text;
  });
  c.addEventListener("mouseleave", () => {
    document.querySelectorAll("circle.on").forEach(d => d.classList.remove("on"));
  });
});
"""


def _svg_panel(result: WordMap, layer: LayerMap, colours: dict[str, str]) -> str:
    size, margin = HTML_PANEL, 12
    points = layer.points
    low, high = points.min(dim=0).values, points.max(dim=0).values
    span = high - low
    scaled = torch.where(  # (N, 2) pixels; an axis without spread (context-free) is centred
        span > 0, (points - low) / span.clamp(min=1e-300) * (size - 2 * margin) + margin, size / 2
    )
    circles = []
    for i, (context, label) in enumerate(zip(result.contexts, result.labels, strict=True)):
        x, y = float(scaled[i, 0]), float(size - scaled[i, 1])  # SVG's y grows downwards
        text = f"line {context.sentence + 1} [{label}]: {' '.join(context.tokens)}"
        circles.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colours[label]}" data-i="{i}" '
            f'data-text="{html.escape(text)}"><title>{html.escape(text)}</title></circle>'
        )
    title = html.escape(_panel_title(layer)).replace("\n", "<br>")
    return (
        f'<div class="panel"><h2>{title}</h2>'
        f'<svg width="{size}" height="{size}" viewBox="0 0 {size} {size}">'
        + "".join(circles)
        + "</svg></div>"
    )


def write_html(result: WordMap, path: str | Path) -> Path:
    """A self-contained page (inline SVG, CSS and script): hover a point to read its line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    colours = _colours(result)
    legend = "".join(
        f'<span style="color:{colour}">&#9679; {html.escape(name)}</span>'
        for name, colour in colours.items()
    )
    word = html.escape(result.word)
    page = (
        "<!DOCTYPE html>\n"
        f'<html><head><meta charset="utf-8"><title>contexts of {word}</title>'
        f"<style>{_HTML_STYLE}</style></head><body>"
        f"<h1>contexts of &ldquo;{word}&rdquo; per layer</h1>"
        f"<pre>{html.escape(format_table(result))}</pre>"
        f'<div class="legend">{legend}</div>'
        '<div id="sentence">hover a point to read its line</div>'
        '<div class="panels">'
        + "".join(_svg_panel(result, layer, colours) for layer in result.layers)
        + f"</div><script>{_HTML_SCRIPT}</script></body></html>\n"
    )
    path.write_text(page, encoding="utf-8")
    return path
