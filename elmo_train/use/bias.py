"""A contextual association test per layer of a biLM: WEAT word sets, CEAT contexts.

WEAT (Caliskan et al. 2017) asks whether target words X are nearer to attribute words A, and
targets Y nearer to attributes B, than the other way round. A word's association is
`s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b)`; the effect size is Cohen's d of the
associations of X against those of Y, `(mean_x s - mean_y s) / std_{w in X u Y} s` (sample
standard deviation), positive when X leans to A and Y to B.

A contextual model gives a word a different vector in every sentence, so CEAT (Guo & Caliskan
2021) measures a distribution: every word gets up to N sentences of a corpus that contain it
(a seeded reservoir sample), each draw picks one of them per word and gives one effect size,
and a random-effects meta-analysis (DerSimonian & Laird 1986) combines the draws into one
effect size. A word the corpus has too few sentences for is topped up with semantically
bleached template sentences, as SEAT (May et al. 2019); the report counts them.

The 95 % interval is `CES +- 1.96 sqrt(v + tau^2)`: the sampling variance of one draw's Cohen's
d over its words (Hedges & Olkin 1985, `v = (nx + ny) / (nx ny) + d^2 / (2 (nx + ny))`) plus the
between-draw variance tau^2 of the random-effects model. Every draw uses the same words, so the
draws are not independent studies: the meta-analytic standard error of the pooled mean (CEAT's,
also reported) shrinks with the number of draws asked for; this interval does not. The p-value
is WEAT's one-sided permutation test of the first draw: the share of the ways to split X u Y
into sets of |X| and |Y| words whose difference of mean associations is at least the observed
one (every split when there are at most `permutations`, else that many random ones).

The word sets shipped in `bias_sets/` are the published ones; each file names its source.
"""

import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from elmo_train.data.files import SkipStats, iter_lines, normalizer
from elmo_train.errors import UserError
from elmo_train.formats import atomic
from elmo_train.use.embedder import Embedder
from elmo_train.use.figures import BAR, HIGHLIGHT, new_figure
from elmo_train.use.similarity import find_contexts
from elmo_train.use.visualize import context_vectors, layer_names, with_mean
from elmo_train.use.word_sets import ROLES, AssociationTest

# Semantically bleached sentences (SEAT, May et al. 2019) for words the corpus lacks.
TEMPLATES = (
    "this is {} .",
    "that is {} .",
    "there is {} .",
    "here is {} .",
    "{} is here .",
    "{} is there .",
)
Z_95 = 1.959963984540054  # the standard normal's 97.5 % quantile
DRAW_CHUNK = 256  # draws embedded in one batched computation


# --- contexts from a corpus ----------------------------------------------------------------------


@dataclass
class WordContexts:
    word: str
    found: int = 0  # corpus lines that contain the word
    sentences: list[list[str]] = field(default_factory=list)  # sampled lines, then templates
    templates: int = 0  # template sentences among `sentences`

    @property
    def from_corpus(self) -> int:
        return len(self.sentences) - self.templates


def template_sentences(word: str, n: int, lowercase: bool) -> list[list[str]]:
    """Up to `n` bleached template sentences; sentence-initial capital unless `lowercase`."""
    sentences = []
    for template in TEMPLATES[:n]:
        if not lowercase and not template.startswith("{}"):
            template = template[0].upper() + template[1:]
        sentences.append(template.format(word).split())
    return sentences


def collect_contexts(
    paths: list[Path],
    words: list[str],
    n: int,
    seed: int,
    lowercase: bool,
    normalize: str | None = None,
) -> tuple[dict[str, WordContexts], SkipStats, dict[str, int]]:
    """Up to `n` corpus lines per word, a uniform reservoir sample (seeded), in one pass.

    Lines are whitespace-tokenized in Unicode form `normalize` (the model's `data.normalize`).
    Words with fewer lines are topped up with template sentences, up to `n`. Also returns what
    the pass read and, unless `lowercase`, how many lines have the lowercased form of each word
    that has capitals (a hint for lowercased corpora).
    """
    normal = normalizer(normalize)
    contexts = {word: WordContexts(word) for word in words}
    lowered = {} if lowercase else {w.lower(): 0 for w in words if w.lower() != w}
    rng = random.Random(seed)
    stats = SkipStats()
    for line in iter_lines(paths, stats):
        tokens = normal(line).split()
        present = set(tokens)
        for word in sorted(present.intersection(contexts)):
            entry = contexts[word]
            entry.found += 1
            if len(entry.sentences) < n:
                entry.sentences.append(tokens)
            else:
                slot = rng.randrange(entry.found)  # Algorithm R: each line kept with p = n/found
                if slot < n:
                    entry.sentences[slot] = tokens
        for form in present.intersection(lowered):
            lowered[form] += 1
    for entry in contexts.values():
        missing = n - len(entry.sentences)
        if missing > 0:
            extra = template_sentences(entry.word, missing, lowercase)
            entry.sentences += extra
            entry.templates = len(extra)
    return contexts, stats, {w: lowered[w.lower()] for w in words if w.lower() in lowered}


# --- the statistics: pure functions --------------------------------------------------------------


def associations(targets: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`s(w, A, B)` of `(..., T, D)` targets against `(..., nA, D)` and `(..., nB, D)`: `(..., T)`."""
    unit = [torch.nn.functional.normalize(t.double(), dim=-1) for t in (targets, a, b)]
    return (unit[0] @ unit[1].transpose(-1, -2)).mean(-1) - (
        unit[0] @ unit[2].transpose(-1, -2)
    ).mean(-1)


def effect_sizes(s: torch.Tensor, n_x: int) -> torch.Tensor:
    """Cohen's d of `(..., nX + nY)` associations, X first: `(...)`; 0 where all are equal."""
    difference = s[..., :n_x].mean(-1) - s[..., n_x:].mean(-1)
    spread = s.std(dim=-1, correction=1)
    return torch.where(spread > 0, difference / spread.clamp(min=1e-300), 0.0)


def effect_variance(d: torch.Tensor, n_x: int, n_y: int) -> torch.Tensor:
    """Sampling variance of Cohen's d over `n_x` and `n_y` words (Hedges & Olkin 1985)."""
    return (n_x + n_y) / (n_x * n_y) + d**2 / (2 * (n_x + n_y))


@dataclass(frozen=True)
class Combined:
    effect: float  # the random-effects combined effect size (CES)
    tau2: float  # between-draw variance (DerSimonian-Laird)
    se_pooled: float  # standard error of the pooled mean: shrinks with the number of draws
    low: float  # the 95 % interval of `effect` (see the module doc)
    high: float


def random_effects(effects: torch.Tensor, variances: torch.Tensor) -> Combined:
    """DerSimonian-Laird random-effects combination of effect sizes with known variances."""
    effects, variances = effects.double(), variances.double()
    weights = 1.0 / variances
    fixed = (weights * effects).sum() / weights.sum()
    q = (weights * (effects - fixed) ** 2).sum()
    scale = weights.sum() - (weights**2).sum() / weights.sum()
    tau2 = float(((q - (len(effects) - 1)) / scale).clamp(min=0.0)) if scale > 0 else 0.0
    star = 1.0 / (variances + tau2)
    effect = float((star * effects).sum() / star.sum())
    half = Z_95 * math.sqrt(1.0 / float(star.mean()))
    return Combined(effect, tau2, math.sqrt(1.0 / float(star.sum())), effect - half, effect + half)


def permutation_p_value(
    s: torch.Tensor, n_x: int, permutations: int, generator: torch.Generator
) -> tuple[float, bool]:
    """One-sided p of `mean s[:n_x] - mean s[n_x:]` over splits of the `(n,)` associations.

    Every split when there are at most `permutations` (exact), else `permutations` random ones
    and `(1 + hits) / (1 + permutations)`. Returns the p-value and whether it is exact.
    """
    s = s.double()
    n = len(s)
    exact = math.comb(n, n_x) <= permutations
    if exact:
        chosen = torch.tensor(list(itertools.combinations(range(n), n_x)), dtype=torch.long)
    else:
        chosen = torch.rand(permutations, n, generator=generator).argsort(dim=1)[:, :n_x]
    in_x = torch.zeros(len(chosen), n, dtype=torch.float64).scatter_(1, chosen, 1.0)
    statistics = (in_x @ s) / n_x - ((1.0 - in_x) @ s) / (n - n_x)
    observed = float(s[:n_x].sum() / n_x - s[n_x:].sum() / (n - n_x))
    hits = int((statistics >= observed - 1e-12).sum())
    return (hits / len(chosen) if exact else (1 + hits) / (1 + permutations)), exact


# --- the test on a model -------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerBias:
    name: str
    combined: Combined
    p_value: float  # permutation test of the first draw
    draws_mean: float
    draws_low: float  # 2.5 % and 97.5 % quantiles of the draws' effect sizes
    draws_high: float


@dataclass(frozen=True)
class BiasResult:
    test: AssociationTest
    contexts: dict[str, WordContexts]
    n_contexts: int  # asked per word
    draws: int
    seed: int
    p_exact: bool
    layers: list[LayerBias]
    lowercase_hints: dict[str, int]  # word with capitals -> corpus lines with its lowercase form
    corpus_skips: list[str] = field(default_factory=list)  # unreadable corpus lines, counted


def association_test(
    embedder: Embedder,
    test: AssociationTest,
    corpus: list[Path],
    n_contexts: int = 20,
    draws: int = 10_000,
    permutations: int = 100_000,
    seed: int = 0,
    lowercase: bool = False,
    batch_size: int = 64,
) -> BiasResult:
    if embedder.normalize is not None:  # the words in the form the model was trained on
        test = test.mapped(normalizer(embedder.normalize))
    slots = test.slots()
    words = list(dict.fromkeys(word for _, word in slots))
    contexts, stats, hints = collect_contexts(
        corpus, words, n_contexts, seed, lowercase, embedder.normalize
    )
    if not any(contexts[w].found for w in words):
        hint = " (the corpus has them lowercased: add --lowercase)" if any(hints.values()) else ""
        hint += "".join(f"; {line}" for line in stats.report())
        raise UserError(
            f"none of the {len(words)} words of {test.name} occurs in "
            f"{', '.join(map(str, corpus))}{hint}; check the corpus and its tokenization"
        )
    # Every context of every word, once: (L+2, M, D) with the mean of the layers last.
    flat = [context for word in words for context in find_contexts(contexts[word].sentences, word)]
    vectors = with_mean(context_vectors(embedder, flat, batch_size)).float()
    vectors = torch.nn.functional.normalize(vectors, dim=2)
    starts, start = {}, 0
    for word in words:
        starts[word] = start
        start += len(contexts[word].sentences)
    # Each draw: one context per slot, uniformly from its word's pool; the same draws per layer.
    generator = torch.Generator().manual_seed(seed)
    pool = torch.tensor([len(contexts[w].sentences) for _, w in slots])
    offset = torch.tensor([starts[w] for _, w in slots])
    picks = (
        offset
        + (torch.rand(draws, len(slots), generator=generator, dtype=torch.float64) * pool).long()
    )
    n_x, n_y, n_a, n_b = (len(test.sets[role].words) for role in ROLES)
    split = [n_x + n_y, n_a, n_b]  # a draw's slots: the targets, then A, then B
    layers = []
    for name, layer in zip(layer_names(embedder.n_layers), vectors, strict=True):
        s = [
            associations(*layer[picks[begin : begin + DRAW_CHUNK]].split(split, dim=1))
            for begin in range(0, draws, DRAW_CHUNK)
        ]  # (chunk, nX + nY) each
        effects = torch.cat([effect_sizes(chunk, n_x) for chunk in s])
        combined = random_effects(effects, effect_variance(effects, n_x, n_y))
        p_value, exact = permutation_p_value(s[0][0], n_x, permutations, generator)
        low, high = torch.quantile(effects, torch.tensor([0.025, 0.975], dtype=torch.float64))
        layers.append(
            LayerBias(name, combined, p_value, float(effects.mean()), float(low), float(high))
        )
    return BiasResult(test, contexts, n_contexts, draws, seed, exact, layers, hints, stats.report())


# --- reporting ------------------------------------------------------------------------------------


def describe_sets(test: AssociationTest) -> str:
    return "; ".join(
        f"{role} {test.sets[role].name} ({len(test.sets[role].words)})" for role in ROLES
    )


def fallback_lines(result: BiasResult) -> list[str]:
    """What the corpus lacked: unreadable lines skipped, words topped up with templates, counted."""
    skips = [f"corpus: {line}" for line in result.corpus_skips]
    short = [c for c in result.contexts.values() if c.templates]
    if not short:
        return skips
    absent = [c.word for c in short if c.found == 0]
    few = [f"{c.word} {c.found}" for c in short if c.found]
    lines = [
        f"{len(short)} of {len(result.contexts)} words have fewer than {result.n_contexts} "
        f"corpus lines; topped up with {sum(c.templates for c in short)} template sentences "
        "(SEAT):"
    ]
    if absent:
        lines.append(f"  absent from the corpus ({len(absent)}): {' '.join(absent)}")
    if few:
        lines.append(f"  fewer lines ({len(few)}, word and lines): {', '.join(few)}")
    hinted = [w for w in absent if result.lowercase_hints.get(w)]
    if hinted:
        lines.append(
            f"  {len(hinted)} absent words occur lowercased ({' '.join(hinted)}): for a "
            "lowercased corpus, add --lowercase"
        )
    return skips + lines


def format_table(result: BiasResult) -> str:
    test = result.test
    lines = [f"{test.name}: {describe_sets(test)}"]
    lines.append(
        f"{result.n_contexts} contexts per word, {result.draws:,} draws of one context per word "
        f"(seed {result.seed})"
    )
    lines += fallback_lines(result)
    width = max(len(layer.name) for layer in result.layers)
    p_kind = "exact" if result.p_exact else "sampled"
    lines.append(
        f"  {'':<{width}}  effect   95 % interval      tau^2  draws 2.5-97.5 %   p ({p_kind}, "
        "first draw)"
    )
    for layer in result.layers:
        c = layer.combined
        lines.append(
            f"  {layer.name:<{width}}  {c.effect:>6.3f}  [{c.low:>6.3f}, {c.high:>6.3f}]  "
            f"{c.tau2:>7.4f}  [{layer.draws_low:>6.3f}, {layer.draws_high:>6.3f}]  "
            f"{layer.p_value:.4f}"
        )
    lines.append(
        f"effect: Cohen's d of X vs Y in their association with A vs B, combined over the "
        f"draws (random effects); positive: {test.sets['X'].name} nearer {test.sets['A'].name}, "
        f"{test.sets['Y'].name} nearer {test.sets['B'].name}"
    )
    return "\n".join(lines)


def to_json(result: BiasResult) -> dict:
    test = result.test
    return {
        "test": test.name,
        "source": test.source,
        "sets": {
            role: {"name": test.sets[role].name, "words": list(test.sets[role].words)}
            for role in ROLES
        },
        "contexts_per_word": result.n_contexts,
        "draws": result.draws,
        "seed": result.seed,
        "p_value_exact": result.p_exact,
        "words": {
            c.word: {
                "corpus_lines": c.found,
                "from_corpus": c.from_corpus,
                "templates": c.templates,
            }
            for c in result.contexts.values()
        },
        "layers": [
            {
                "name": layer.name,
                "effect": layer.combined.effect,
                "interval_95": [layer.combined.low, layer.combined.high],
                "tau2": layer.combined.tau2,
                "se_pooled": layer.combined.se_pooled,
                "p_value": layer.p_value,
                "draws_mean": layer.draws_mean,
                "draws_2.5_97.5": [layer.draws_low, layer.draws_high],
            }
            for layer in result.layers
        ],
    }


def write_json(result: BiasResult, path: str | Path) -> Path:
    return atomic.write_json(path, to_json(result))


def plot(result: BiasResult, path: str | Path) -> Path:
    """A forest plot: per layer the combined effect, its 95 % interval and the draws' spread."""
    path = Path(path)
    layers = result.layers
    figure = new_figure(path, 6.4, 1.2 + 0.45 * len(layers))
    axes = figure.add_subplot()
    rows = list(range(len(layers)))[::-1]  # the token layer on top
    for row, layer in zip(rows, layers, strict=True):
        c = layer.combined
        axes.plot([layer.draws_low, layer.draws_high], [row, row], color="#c8d3e6", linewidth=7,
                  solid_capstyle="butt", label="draws, 2.5-97.5 %" if row == rows[0] else None)  # fmt: skip
        axes.plot([c.low, c.high], [row, row], color=BAR, linewidth=1.6,
                  label="95 % interval" if row == rows[0] else None)  # fmt: skip
        axes.plot([c.effect], [row], "D", color=HIGHLIGHT, markersize=6,
                  label="combined effect" if row == rows[0] else None)  # fmt: skip
        axes.annotate(f"{c.effect:+.2f}  p {layer.p_value:.3f}", (1.01, row),
                      xycoords=("axes fraction", "data"), va="center", fontsize=8)  # fmt: skip
    axes.axvline(0.0, color="gray", linewidth=0.8, linestyle="--")
    axes.set_yticks(rows, [layer.name for layer in layers], fontsize=8)
    axes.set_ylim(-0.7, len(layers) - 0.3)
    axes.set_xlabel("effect size (Cohen's d)", fontsize=8)
    test = result.test
    axes.set_title(
        f"{test.name}: {test.sets['X'].name} vs {test.sets['Y'].name}, "
        f"{test.sets['A'].name} vs {test.sets['B'].name}",
        fontsize=9,
    )
    axes.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.08), ncol=3, frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
