"""Training steps whose loss or gradient norm is not finite: found, made no-ops, counted.

The step's global gradient norm is computed once (`optim.clip_gradients_` returns it, or
`optim.grad_norm` when nothing is clipped; sparse softmax rows included) and this verdict
uses it. On a GPU nothing here waits for the
device: the verdict stays a device tensor, a bad step's gradients are zeroed on the device, and the
host reads the count only when `bad_steps()` is asked (when metrics are logged or a checkpoint is
written). On CPU each step is read at once and a bad step's gradients are dropped, which every
optimizer skips: an exact no-op.
"""

from collections.abc import Iterable

import torch


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every floating-point tensor holds only finite values (one host sync)."""
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


class NonFiniteGuard:
    """Judges each optimizer step whose loss or gradient norm is not finite: on CPU it is
    dropped; on a GPU (no host sync) its gradients are zeroed, which leaves Adagrad's and plain
    SGD's weights unchanged but still moves AdamW's moments and weight decay and SGD momentum.

    `allowed` such steps are skipped (and counted); the step that goes over stops training.
    `check_gradients=False` leaves overflowing gradients to a GradScaler (`16-mixed`), which
    skips those steps and lowers its scale by design.
    """

    def __init__(self, allowed: int = 0, check_gradients: bool = True) -> None:
        self.allowed = allowed
        self.check_gradients = check_gradients
        self._count = torch.zeros((), dtype=torch.long)  # bad steps so far
        self._over_at = torch.full((), -1, dtype=torch.long)  # the step past `allowed`, or -1

    def judge(
        self,
        parameters: list[torch.nn.Parameter],
        norm: torch.Tensor,
        loss: torch.Tensor,
        step: int,
        sync: bool = True,
    ) -> torch.Tensor:
        """Judge step `step` (1-based) by its gradient `norm` and `loss` (reduced over ranks, so
        that every rank agrees); returns the verdict, a 0-dim bool tensor (true: finite).

        A bad step's gradients are dropped when `sync` (the verdict is read now), else zeroed on
        the device without waiting for it.
        """
        finite = torch.isfinite(loss)
        if self.check_gradients:
            finite = finite & torch.isfinite(norm)
        if self._count.device != finite.device:  # first step: onto the device, no copy back
            self._count = torch.full((), int(self._count), device=finite.device)
            self._over_at = torch.full((), int(self._over_at), device=finite.device)
        self._count = self._count + (~finite).long()
        self._over_at.masked_fill_((self._count > self.allowed) & (self._over_at < 0), step)
        if sync and not finite:
            for parameter in parameters:
                parameter.grad = None
        elif not sync:
            for parameter in parameters:  # NaN * 0 is NaN: fill, do not scale
                grad = parameter.grad
                (grad._values() if grad.is_sparse else grad).masked_fill_(~finite, 0.0)
        return finite

    def bad_steps(self) -> int:
        """Steps judged not finite so far (reads the device)."""
        return int(self._count)

    def stop_step(self) -> int | None:
        """The step that went over `allowed`, if any (reads the device)."""
        step = int(self._over_at)
        return step if step >= 0 else None

    def state_dict(self) -> dict[str, int]:
        return {"bad_steps": self.bad_steps()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._count = torch.tensor(state["bad_steps"], dtype=torch.long)
