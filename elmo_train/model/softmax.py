"""Output layers: full, sampled (bilm-tf's training loss) and adaptive softmax.

Every layer maps `hidden (N, H)` and `targets (N,)` to a per-row negative log-likelihood `(N,)`:
the configured training loss in training mode, the exact full-vocabulary NLL in eval mode.
Vocabulary ids are sorted by descending frequency (bilm-tf's vocabulary format), which the
log-uniform sampler and the adaptive clusters both rely on.
"""

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from elmo_train.model.config import SoftmaxConfig


def log_uniform_prob(ids: Tensor, vocab_size: int) -> Tensor:
    """P(k) = log((k + 2) / (k + 1)) / log(V + 1), TF's LogUniformCandidateSampler (float64)."""
    return torch.log1p(1.0 / (ids.double() + 1.0)) / math.log(vocab_size + 1)


def expected_count(ids: Tensor, n_draws: int, vocab_size: int) -> Tensor:
    """Probability that id k is among `n_draws` draws with replacement: 1 - (1 - P(k))^n.

    This is the expected count TF's sampled_softmax_loss corrects by for unique sampling.
    """
    return -torch.expm1(n_draws * torch.log1p(-log_uniform_prob(ids, vocab_size)))


def sample_log_uniform(
    n_draws: int, vocab_size: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Draw `n_draws` log-uniform ids with replacement, on `device`, with a fixed shape.

    Returns the sorted ids `(S,)` and `first (S,)`, true at the first occurrence of each id:
    the ids where `first` holds are a set of unique negatives, and id k is in that set with
    probability exactly `expected_count(k, n_draws, vocab_size)`. Masking repeats instead of
    removing them keeps the shape static (no host sync, no data-dependent size).
    """
    u = torch.rand(n_draws, dtype=torch.float64, device=device)
    # Inverse CDF: P(id <= k) = log(k + 2) / log(V + 1).
    ids = torch.exp(u * math.log(vocab_size + 1)).floor().long() - 1
    ids = ids.clamp(0, vocab_size - 1).sort().values  # (S,)
    first = torch.ones_like(ids, dtype=torch.bool)
    first[1:] = ids[1:] != ids[:-1]
    return ids, first


class OutputLayer(nn.Module, ABC):
    """The interface of every output layer: mode dispatch and float32 arithmetic.

    Autocast is switched off inside the layer: bf16 keeps ~3 significant digits, so a logit of
    10 is off by ~0.04 nats, which biases a perplexity; bilm-tf's softmax ran in float32.
    """

    vocab_size: int

    def forward(self, hidden: Tensor, targets: Tensor) -> Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            hidden = hidden.to(self.param_dtype)
            if self.training:
                return self.training_nll(hidden, targets)
            return self.exact_nll(hidden, targets)

    @property
    def param_dtype(self) -> torch.dtype:
        """The layer's own precision (float32 unless the whole model was cast), never autocast's."""
        return next(self.parameters()).dtype

    def log_probs(self, hidden: Tensor) -> Tensor:
        """The exact log-distribution over the vocabulary, `(N, V)`."""
        with torch.autocast(hidden.device.type, enabled=False):
            return self._log_probs(hidden.to(self.param_dtype))

    @abstractmethod
    def training_nll(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Per-row NLL `(N,)` of the training objective (sampled softmax: an approximation)."""

    @abstractmethod
    def exact_nll(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Per-row NLL `(N,)` under the full distribution, in bounded memory."""

    @abstractmethod
    def _log_probs(self, hidden: Tensor) -> Tensor:
        """The full `(N, V)` log-distribution."""


class FullSoftmax(OutputLayer):
    """logits = h W^T + b over the whole vocabulary, as bilm-tf's `softmax/W` and `softmax/b`."""

    def __init__(self, hidden_dim: int, vocab_size: int, eval_chunk_size: int = 32768) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.eval_chunk_size = eval_chunk_size
        # bilm-tf: W ~ N(0, 1/sqrt(H)), b = 0.
        self.weight = nn.Parameter(torch.randn(vocab_size, hidden_dim) / math.sqrt(hidden_dim))
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def training_nll(self, hidden: Tensor, targets: Tensor) -> Tensor:
        logits = F.linear(hidden, self.weight, self.bias)  # (N, V)
        return F.cross_entropy(logits, targets, reduction="none")

    def exact_nll(self, hidden: Tensor, targets: Tensor) -> Tensor:
        # A running logsumexp over vocabulary chunks: memory (N, chunk), never (N, V).
        lse = hidden.new_full(targets.shape, -math.inf)
        for start in range(0, self.vocab_size, self.eval_chunk_size):
            rows = slice(start, start + self.eval_chunk_size)
            logits = F.linear(hidden, self.weight[rows], self.bias[rows])  # (N, chunk)
            lse = torch.logaddexp(lse, logits.logsumexp(dim=-1))
        return lse - self._target_logit(hidden, targets)

    def _log_probs(self, hidden: Tensor) -> Tensor:
        return F.linear(hidden, self.weight, self.bias).log_softmax(dim=-1)

    def _target_logit(self, hidden: Tensor, targets: Tensor) -> Tensor:
        return (hidden * self.weight[targets]).sum(dim=-1) + self.bias[targets]  # (N,)


class _GatherRows(torch.autograd.Function):
    """`weight[rows]`, `bias[rows]` with sparse COO gradients, as TF's `IndexedSlices`: one entry
    per gathered row, repeats not summed (fixed shapes: no host sync), so backward never writes
    the other rows of a V x H gradient. `training.optim` sums the repeats before using them."""

    @staticmethod
    def forward(ctx, rows: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(rows)
        ctx.vocab_size = weight.shape[0]
        return weight[rows], bias[rows]

    @staticmethod
    def backward(ctx, grad_weight: Tensor, grad_bias: Tensor):
        (rows,) = ctx.saved_tensors
        index = rows.unsqueeze(0)  # (1, R)
        V = ctx.vocab_size
        # Sizes given and invariants unchecked: checking the indices would read them on the host.
        weight = torch.sparse_coo_tensor(
            index, grad_weight, (V, grad_weight.shape[1]), check_invariants=False
        )
        bias = torch.sparse_coo_tensor(index, grad_bias, (V,), check_invariants=False)
        return None, weight, bias


class SampledSoftmax(FullSoftmax):
    """Full softmax parameters trained with TF's `sampled_softmax_loss`, as bilm-tf.

    One set of unique log-uniform negatives per call, shared by all N rows; logits corrected by
    -log(expected count) (log-Q); a negative equal to the row's target removed (TF's
    remove_accidental_hits). With n_negatives >= V every class is a candidate and the loss is
    the full softmax. Eval mode and `log_probs` are exact, inherited from `FullSoftmax`.

    With `sparse_grad`, `weight` and `bias` get sparse gradients holding only the targets' and
    negatives' rows (bilm-tf's `IndexedSlices`); only an optimizer that takes them may step
    (`training.optim.enable_sparse_updates` switches it on where the update is exact).
    """

    def __init__(
        self,
        hidden_dim: int,
        vocab_size: int,
        n_negatives: int,
        eval_chunk_size: int = 32768,
        sparse_grad: bool = False,
    ) -> None:
        super().__init__(hidden_dim, vocab_size, eval_chunk_size)
        self.n_negatives = n_negatives
        self.sparse_grad = sparse_grad

    @property
    def exhaustive(self) -> bool:
        return self.n_negatives >= self.vocab_size

    def sample_negatives(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Candidate ids `(S,)` and the mask `(S,)` of those to use (repeats masked off)."""
        if self.exhaustive:
            ids = torch.arange(self.vocab_size, device=device)
            return ids, torch.ones_like(ids, dtype=torch.bool)
        return sample_log_uniform(self.n_negatives, self.vocab_size, device)

    def log_expected_count(self, ids: Tensor) -> Tensor:
        if self.exhaustive:
            return torch.zeros(ids.shape, device=ids.device)  # each class a candidate exactly once
        return expected_count(ids, self.n_negatives, self.vocab_size).log().float()

    def training_nll(self, hidden: Tensor, targets: Tensor) -> Tensor:
        ids, keep = self.sample_negatives(hidden.device)  # (S,)
        N = targets.shape[0]
        # One gather for targets and negatives (one dense V x H gradient, not two); the log-Q
        # correction (as TF, on both) and the repeat mask go into the (S,) bias, not (N, S).
        rows = torch.cat([targets, ids])  # (N + S,)
        if self.sparse_grad:
            weight, bias = _GatherRows.apply(rows, self.weight, self.bias)  # (N + S, H), (N + S,)
        else:
            # index_select: a backward that sums repeated rows in a fixed order (bit-exact CPU runs)
            weight, bias = self.weight.index_select(0, rows), self.bias.index_select(0, rows)
        bias = bias - self.log_expected_count(rows)  # (N + S,)
        true_logit = (hidden * weight[:N]).sum(dim=-1) + bias[:N]  # (N,)
        sampled_bias = bias[N:].masked_fill(~keep, -math.inf)  # (S,)
        sampled = F.linear(hidden, weight[N:], sampled_bias)  # (N, S)
        sampled = sampled.masked_fill(ids == targets[:, None], -math.inf)  # accidental hits
        logits = torch.cat([true_logit[:, None], sampled], dim=1)  # (N, 1 + S)
        # Fused log-softmax: ~3x cheaper than logsumexp's unfused forward and backward.
        return F.cross_entropy(logits, targets.new_zeros(N), reduction="none")


class AdaptiveSoftmax(OutputLayer):
    """torch's AdaptiveLogSoftmaxWithLoss (Grave et al. 2017), made safe for DDP; exact."""

    def __init__(
        self, hidden_dim: int, vocab_size: int, cutoffs: list[int], div_value: float = 4.0
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        # Cutoffs past the vocabulary are dropped; when none is left (a small test or toy
        # vocabulary) one cutoff at V // 2 keeps a head and a tail, so the layer stays adaptive.
        cutoffs = [c for c in cutoffs if c < vocab_size] or [vocab_size // 2]
        self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(
            hidden_dim, vocab_size, cutoffs=cutoffs, div_value=div_value
        )

    def training_nll(self, hidden: Tensor, targets: Tensor) -> Tensor:
        # A tail cluster with no target in the batch is skipped and its weights get no
        # gradient; a zero term keeps them in the graph, so DDP needs no find_unused_parameters.
        in_graph = sum(p.sum() for p in self.adaptive.tail.parameters())
        return self.exact_nll(hidden, targets) + 0.0 * in_graph

    def exact_nll(self, hidden: Tensor, targets: Tensor) -> Tensor:
        return -self.adaptive(hidden, targets).output

    def _log_probs(self, hidden: Tensor) -> Tensor:
        return self.adaptive.log_prob(hidden)


def build_output_layer(config: SoftmaxConfig, hidden_dim: int, vocab_size: int) -> OutputLayer:
    if config.kind == "full":
        return FullSoftmax(hidden_dim, vocab_size, config.eval_chunk_size)
    if config.kind == "sampled":
        return SampledSoftmax(hidden_dim, vocab_size, config.n_negatives, config.eval_chunk_size)
    if config.kind == "adaptive":
        return AdaptiveSoftmax(hidden_dim, vocab_size, config.cutoffs, config.div_value)
    raise ValueError(f"model.softmax.kind must be full, sampled or adaptive, got {config.kind!r}")
