"""A linear-chain CRF (Lafferty et al. 2001; Lample et al. 2016's tagger): sentence scores, the
log-partition by the forward algorithm, and Viterbi decoding.

A tag sequence y of a sentence with emissions e (T, K) scores

    s(y) = start[y_1] + sum_t e[t, y_t] + sum_{t>1} trans[y_{t-1}, y_t] + end[y_T]

and p(y) = exp(s(y)) / Z with Z = sum over all K^T sequences. Transitions a tag scheme forbids
(IOB2: `I-X` only after `B-X` or `I-X`) get a fixed score of -10000, as AllenNLP's
`ConditionalRandomField` with constraints, in training and in decoding.
"""

import torch
from torch import nn

FORBIDDEN = -10000.0


class CRF(nn.Module):
    def __init__(
        self,
        n_tags: int,
        allowed_start: list[bool] | None = None,
        allowed: list[list[bool]] | None = None,
    ):
        super().__init__()
        self.n_tags = n_tags
        self.transitions = nn.Parameter(torch.zeros(n_tags, n_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(n_tags))
        self.end = nn.Parameter(torch.zeros(n_tags))
        allowed_start = [True] * n_tags if allowed_start is None else allowed_start
        allowed = [[True] * n_tags for _ in range(n_tags)] if allowed is None else allowed
        self.register_buffer("allowed_start", torch.tensor(allowed_start), persistent=False)
        self.register_buffer("allowed", torch.tensor(allowed), persistent=False)
        nn.init.uniform_(self.transitions, -0.1, 0.1)

    def scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The start (K,), transition (K, K) and end (K,) scores, forbidden ones fixed."""
        start = self.start.masked_fill(~self.allowed_start, FORBIDDEN)
        transitions = self.transitions.masked_fill(~self.allowed, FORBIDDEN)
        return start, transitions, self.end

    def sequence_score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """s(y) of the given tags: emissions (B, T, K), tags (B, T), mask (B, T) -> (B,).

        Each row's real steps come first (mask is a prefix of ones, at least one).
        """
        start, transitions, end = self.scores()
        keep = mask.to(emissions.dtype)  # (B, T)
        emitted = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # (B, T)
        moved = transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
        lengths = mask.sum(dim=1)  # (B,)
        last = tags.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (B,)
        return (
            start[tags[:, 0]]
            + (emitted * keep).sum(dim=1)
            + (moved * keep[:, 1:]).sum(dim=1)
            + end[last]
        )

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z by the forward algorithm: emissions (B, T, K), mask (B, T) -> (B,)."""
        start, transitions, end = self.scores()
        # unbind, not emissions[:, t]: each slice's backward would zero-fill all of emissions.
        steps, real = emissions.unbind(dim=1), mask.unbind(dim=1)  # T x (B, K), T x (B,)
        alpha = start + steps[0]  # (B, K): log-sum of every prefix ending in each tag
        for t in range(1, len(steps)):
            # (B, K, 1) + (K, K) -> (B, K_from, K_to), summed over the previous tag
            step = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + steps[t]
            alpha = torch.where(real[t].unsqueeze(1), step, alpha)  # padding keeps alpha
        return torch.logsumexp(alpha + end, dim=1)

    def forward(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The negative log-likelihood of each row's tags, (B,)."""
        return self.log_partition(emissions, mask) - self.sequence_score(emissions, tags, mask)

    @torch.no_grad()
    def viterbi(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The highest-scoring tag sequence of each row (its real steps only)."""
        start, transitions, end = self.scores()
        best = start + emissions[:, 0]  # (B, K): best prefix score ending in each tag
        backpointers = []
        for t in range(1, emissions.shape[1]):
            candidates = best.unsqueeze(2) + transitions  # (B, K_from, K_to)
            top, previous = candidates.max(dim=1)  # (B, K_to)
            step = mask[:, t].unsqueeze(1)  # (B, 1)
            best = torch.where(step, top + emissions[:, t], best)
            # On padding each tag points to itself, so the path passes through unchanged.
            same = torch.arange(self.n_tags, device=emissions.device).expand_as(previous)
            backpointers.append(torch.where(step, previous, same))
        last = (best + end).argmax(dim=1)  # (B,)
        path = [last]
        for pointers in reversed(backpointers):
            last = pointers.gather(1, last.unsqueeze(1)).squeeze(1)
            path.append(last)
        tags = torch.stack(path[::-1], dim=1)  # (B, T)
        lengths = mask.sum(dim=1).tolist()
        return [row[:n] for row, n in zip(tags.tolist(), lengths, strict=True)]
