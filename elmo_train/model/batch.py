"""The batch: what the data pipeline yields and the language model reads."""

from dataclasses import dataclass, fields

import torch


@dataclass
class Batch:
    """Each direction's input stream as char ids and its next-token targets, batch-first.

    In stream mode (bilm-tf's packed rows) row `i` of batch `k + 1` continues row `i` of batch
    `k`; in sentence mode each row is one sentence, right-padded. The backward LM reads its own
    stream (the reversed sentences) left to right; a forward-only batch has no `bwd_*`.
    """

    fwd_chars: torch.Tensor  # (B, T, 50) long: input tokens as char ids (0 on padding)
    fwd_targets: torch.Tensor  # (B, T) long: next-token vocabulary ids (0 on padding)
    mask: torch.Tensor  # (B, T) bool: real target positions (all true in stream mode)
    reset: torch.Tensor  # (B,) bool: rows whose carried LSTM state restarts from zero
    bwd_chars: torch.Tensor | None = None  # (B, T, 50)
    bwd_targets: torch.Tensor | None = None  # (B, T)

    def _map(self, fn) -> "Batch":
        return Batch(**{f.name: _apply(fn, getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":  # DataLoader(pin_memory=True) calls it
        return self._map(torch.Tensor.pin_memory)


def _apply(fn, value: torch.Tensor | None) -> torch.Tensor | None:
    return None if value is None else fn(value)
