"""Held-out perplexity with the exact full softmax, as bilm-tf's `run_test.py`, but batched.

The text goes through the training data pipeline: a store prepared with the model's vocabulary
(cached), then the finite evaluation stream of `data.stream.BatchStream`, which predicts every
target exactly once. Rows are packed streams and the LSTM state is carried from batch to batch,
as bilm-tf's test (which used a window of 1 only to fit its unchunked softmax in memory; ours is
chunked over the vocabulary, so any window works and memory stays bounded).

Per direction the targets are the words plus the sentence end: `</S>` for the forward LM, `<S>`
for the backward LM (which reads the reversed sentence from `</S>`); a sentence start is never a
target. `<UNK>` targets are counted like any other word, and their rate is reported.

bilm-tf's figure is `exp((H_fwd + H_bwd) / 2)` (exp of the mean cross-entropy); the paper's
"average of the forward and backward perplexities" is reported too (`ppl_mean`).

Comparing models with different vocabularies: `evaluation_vocabulary` coarsens a model onto a
common vocabulary E contained in its own: a target outside E counts as `<UNK>`, and the model's
`<UNK>` probability is its total mass on `<UNK>` and on every word outside E. Every model then
scores the same events with a proper distribution, so the perplexities are comparable.
"""

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from elmo_train.data.stream import BatchStream, TokenStore
from elmo_train.errors import UserError
from elmo_train.formats import atomic
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel

# Elements of one `(rows, V)` block of log-probabilities in the coarsened scorer (64 MB float32).
_LOG_PROB_BLOCK = 1 << 24


@dataclass
class EvalVocabulary:
    """The vocabulary targets are scored over, as a set of rows of the model's softmax.

    `unk_rows (V,)` marks the model rows that count as `<UNK>`: the model's own `<UNK>` and, when
    coarsened, every word outside the evaluation vocabulary.
    """

    vocab: Vocabulary
    unk_rows: torch.Tensor  # (V,) bool
    coarsened: bool

    def fingerprint(self) -> str:
        """sha256 of the sorted words: equal for every model scored over the same word set."""
        return hashlib.sha256("\n".join(sorted(self.vocab.words)).encode("utf-8")).hexdigest()

    @property
    def collapsed_words(self) -> int:
        """Model words scored as `<UNK>` besides `<UNK>` itself."""
        return int(self.unk_rows.sum()) - (1 if self.vocab.unk is not None else 0)


def evaluation_vocabulary(
    model_vocab: Vocabulary, common: Vocabulary | None = None
) -> EvalVocabulary:
    """Score over the model's own vocabulary, or coarsened onto `common` (a subset of it)."""
    unk_rows = torch.zeros(len(model_vocab), dtype=torch.bool)
    if model_vocab.unk is not None:
        unk_rows[model_vocab.unk] = True
    if common is None or set(common.words) == set(model_vocab.words):
        return EvalVocabulary(common or model_vocab, unk_rows, coarsened=False)
    missing = [w for w in common.words if w not in model_vocab]
    if missing:
        raise UserError(
            f"{common.source or 'the evaluation vocabulary'}: {len(missing):,} of its words (e.g. "
            f"{missing[0]!r}) are not in the model's vocabulary {model_vocab.source}, so the model "
            "gives them no probability: evaluate over a vocabulary every model contains (train or "
            "adapt with data.vocab=FILE, or pass the intersection of the models' vocabularies)"
        )
    if common.unk is None:
        raise UserError(
            f"{common.source or 'the evaluation vocabulary'} has no <UNK>, but the model has words "
            "outside it: add <UNK> as its third line"
        )
    for i, word in enumerate(model_vocab.words):
        if word not in common:
            unk_rows[i] = True
    return EvalVocabulary(common, unk_rows, coarsened=True)


def intersect(vocabularies: list[Vocabulary]) -> Vocabulary:
    """The words in every vocabulary, in the first one's order (its source names all files)."""
    first, *rest = vocabularies
    words = [w for w in first.words if all(w in v for v in rest)]
    source = " & ".join(v.source for v in vocabularies)
    return Vocabulary(words, require_unk=first.unk is not None, source=source)


@dataclass
class EvalResult:
    """Summed negative log-likelihoods (nats) per direction over `tokens` targets each."""

    directions: list[str]  # ["fwd", "bwd"] or ["fwd"]
    nll: list[float]
    tokens: int  # targets per direction: words + sentence ends
    unk_tokens: int  # targets scored as <UNK> (the same in both directions)
    sentences: int
    seconds: float

    @property
    def entropies(self) -> dict[str, float]:
        return {d: s / max(self.tokens, 1) for d, s in zip(self.directions, self.nll, strict=True)}

    def metrics(self) -> dict[str, float | int]:
        h = self.entropies
        out: dict[str, float | int] = {f"ppl_{d}": math.exp(v) for d, v in h.items()}
        out["ppl"] = math.exp(sum(h.values()) / len(h))  # bilm-tf's figure
        if len(h) == 2:
            out["ppl_mean"] = (out["ppl_fwd"] + out["ppl_bwd"]) / 2  # the paper's "average"
        out.update({f"loss_{d}": v for d, v in h.items()})
        out["loss"] = sum(h.values()) / len(h)
        out["tokens"] = self.tokens
        out["sentences"] = self.sentences
        out["unk_tokens"] = self.unk_tokens
        out["unk_rate"] = self.unk_tokens / max(self.tokens, 1)
        out["seconds"] = self.seconds
        out["tokens_per_sec"] = self.tokens / max(self.seconds, 1e-9)
        return out


def coarsened_nll(
    log_probs: Callable[[torch.Tensor], torch.Tensor],
    hidden: torch.Tensor,
    targets: torch.Tensor,
    unk_rows: torch.Tensor,
) -> torch.Tensor:
    """NLL `(N,)` with every row in `unk_rows (V,)` merged into one `<UNK>` event.

    Works on blocks of rows so a `(rows, V)` block stays under `_LOG_PROB_BLOCK` elements.
    """
    V = unk_rows.shape[0]
    rows = max(1, _LOG_PROB_BLOCK // V)
    out = []
    for start in range(0, hidden.shape[0], rows):
        lp = log_probs(hidden[start : start + rows])  # (n, V)
        t = targets[start : start + rows]
        unk = lp.masked_fill(~unk_rows, -math.inf).logsumexp(dim=-1)  # (n,)
        own = lp.gather(1, t.unsqueeze(1)).squeeze(1)  # (n,)
        out.append(-torch.where(unk_rows[t], unk, own))
    return torch.cat(out)


@torch.inference_mode()
def evaluate(
    lm: LanguageModel,
    store: TokenStore,
    eval_vocab: EvalVocabulary,
    *,
    batch_size: int = 64,
    window: int = 20,
    mode: str = "stream",
    max_sentence_tokens: int = 400,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: Callable[[int, int, int], None] | None = None,
) -> EvalResult:
    """Full-softmax NLL of every target of `store`, state carried across batches.

    `mode`: `stream` (bilm-tf: rows take the sentences in turn), `contiguous` (Kim et al.:
    each row reads one contiguous part of the text) or `sentence` (one sentence per row, zero
    state, pieces of `max_sentence_tokens`). `progress(batch, n_batches, tokens)` is called
    after each batch.
    """
    device = torch.device(device)
    lm = lm.to(device).eval()
    directions = ["fwd", "bwd"][: lm.bilm.n_directions]
    unk_rows = eval_vocab.unk_rows.to(device)
    stream = BatchStream(
        store,
        batch_size=batch_size,
        window=window,
        mode=mode,
        training=False,
        max_sentence_tokens=max_sentence_tokens,
    )
    loader = DataLoader(stream, batch_size=None, num_workers=num_workers)
    state = lm.bilm.lstm.zero_state(batch_size, lm.bilm.lstm.weight_h[0])
    sums = torch.zeros(len(directions), dtype=torch.float64, device=device)
    unk = torch.zeros((), dtype=torch.long, device=device)
    tokens = 0
    started = time.perf_counter()
    n_batches = len(stream)
    for k, batch in enumerate(loader):
        batch = batch.to(device, non_blocking=True)
        state = state.reset_rows(batch.reset)
        bwd_chars = batch.bwd_chars if len(directions) == 2 else None
        _, layers, state = lm.bilm.run_streams(batch.fwd_chars, bwd_chars, state)
        real = batch.mask.reshape(-1)  # (B*T,)
        for d, all_targets in enumerate([batch.fwd_targets, batch.bwd_targets][: len(directions)]):
            hidden = layers[-1][d].reshape(real.shape[0], -1)[real]  # (N, P) real positions
            targets = all_targets.reshape(-1)[real]  # (N,)
            if eval_vocab.coarsened:
                nll = coarsened_nll(lm.output.log_probs, hidden, targets, unk_rows)
            else:
                nll = lm.output(hidden, targets)  # eval mode: exact, chunked over the vocabulary
            sums[d] += nll.double().sum()
            if d == 0:
                tokens += targets.numel()
                unk += unk_rows[targets].sum()
        if progress is not None:
            progress(k + 1, n_batches, tokens)
    seconds = time.perf_counter() - started
    result = EvalResult(directions, sums.tolist(), tokens, int(unk), store.n_sentences, seconds)
    assert result.tokens == stream.count_targets(), "the stream must score every target once"
    return result


# --- reporting ---------------------------------------------------------------------------------


def format_table(metrics: dict) -> str:
    """The perplexity table `elmo evaluate` prints."""
    names = {"fwd": "forward", "bwd": "backward"}
    directions = [d for d in names if f"ppl_{d}" in metrics]
    ends = "words + </S> forward, words + <S> backward" if len(directions) == 2 else "words + </S>"
    lines = [
        f"held-out perplexity, exact full softmax: {metrics['tokens']:,} targets per direction "
        f"({ends}), {metrics['sentences']:,} sentences",
        f"  {'':<32} {'cross-entropy':>13} {'perplexity':>11}",
    ]
    for d in directions:
        lines.append(f"  {names[d]:<32} {metrics[f'loss_{d}']:>13.4f} {metrics[f'ppl_{d}']:>11.2f}")
    if len(directions) == 2:
        lines.append(
            f"  {'combined exp((H_f + H_b) / 2)':<32} {metrics['loss']:>13.4f} "
            f"{metrics['ppl']:>11.2f}  (bilm-tf's figure)"
        )
        lines.append(
            f"  {'mean of fwd and bwd perplexity':<32} {'':>13} {metrics['ppl_mean']:>11.2f}"
            "  (the paper's average)"
        )
    lines.append(
        f"  <UNK> targets: {metrics['unk_tokens']:,} ({100 * metrics['unk_rate']:.2f}%); "
        f"{metrics['tokens_per_sec']:,.0f} tokens/s"
    )
    return "\n".join(lines)


def write_json(path: str | Path, metrics: dict) -> None:
    atomic.write_json(path, metrics)
