"""Optimisers of the papers: Adagrad (ELMo), SGD halved on plateau (Kim et al.), AdamW.

Row-sparse updates (bilm-tf's `IndexedSlices` + sparse Adagrad): the sampled softmax's gradient
holds only the rows a batch touches, and the optimizer and the clipping norm read those rows
without ever writing the V x H rest. Every step here has fixed shapes: no host sync on a GPU.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from elmo_train.model.softmax import SampledSoftmax


@dataclass
class OptimizerConfig:
    name: str = "adagrad"  # adagrad | sgd | adamw
    lr: float = 0.2
    initial_accumulator_value: float = 1.0  # adagrad, as bilm-tf
    momentum: float = 0.0  # sgd
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    warmup_steps: int = 0  # adamw: linear warm-up
    decay: str = "cosine"  # adamw after warm-up: cosine | linear | constant
    min_lr_ratio: float = 0.1  # adamw: final lr as a fraction of lr
    # sgd (Kim et al. 2016): multiply lr by `plateau_factor` whenever validation perplexity
    # improves on the previous validation by no more than `plateau_threshold` (perplexity).
    plateau_factor: float = 0.5
    plateau_threshold: float = 1.0
    # The training loss the lr is tuned for. "token": the mean NLL per target (bilm-tf).
    # "row": summed over each row's time steps, averaged over rows, as Kim et al.'s and
    # Zaremba et al.'s Torch code: gradients T times larger at window T; their lr 1 and clip 5
    # assume it. Logged losses and perplexities are per token either way.
    loss_reduction: str = "token"
    # Update only the output-layer rows a batch touches (targets and sampled negatives), as
    # bilm-tf: exact, and the step's cost no longer grows with the vocabulary. Where the update
    # is not row-local (adamw, momentum, weight decay) or under DDP the layer stays dense, and
    # `enable_sparse_updates` says why.
    sparse_updates: bool = True

    def __post_init__(self) -> None:
        if self.name not in ("adagrad", "sgd", "adamw"):
            raise ValueError(f"optimizer.name must be adagrad, sgd or adamw, got {self.name!r}")
        if self.decay not in ("cosine", "linear", "constant"):
            raise ValueError(
                f"optimizer.decay must be cosine, linear or constant, got {self.decay!r}"
            )
        if self.loss_reduction not in ("token", "row"):
            raise ValueError(
                f"optimizer.loss_reduction must be token or row, got {self.loss_reduction!r}"
            )
        if self.lr <= 0:
            raise ValueError(f"optimizer.lr must be positive, got {self.lr}")


# Devices where torch has a fused (one kernel over all tensors) step for each optimiser.
FUSED_DEVICES = {"adagrad": ("cpu",), "sgd": ("cpu", "cuda"), "adamw": ("cpu", "cuda")}


def build_optimizer(config: OptimizerConfig, params, fused: bool = True) -> torch.optim.Optimizer:
    """`fused`: torch's fused step where the device has one (on CPU it makes the Adagrad step
    ~6x faster than the per-tensor loop; the same update). Adagrad and SGD also step sparse row
    gradients (`enable_sparse_updates`)."""
    params = list(params)
    device = params[0].device.type if params else "cpu"
    options = {
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "fused": (fused and device in FUSED_DEVICES[config.name]) or None,
    }
    if config.name == "adagrad":
        initial = config.initial_accumulator_value
        return SparseRowsAdagrad(params, initial_accumulator_value=initial, **options)
    if config.name == "sgd":
        return SparseRowsSGD(params, momentum=config.momentum, **options)
    return torch.optim.AdamW(params, betas=tuple(config.betas), **options)


def sparse_update_obstacle(config: OptimizerConfig, world_size: int = 1) -> str | None:
    """Why the output layer cannot be updated row by row exactly; None when it can.

    A row-sparse step equals the dense one when a zero gradient leaves a row (and its optimizer
    state) unchanged: true of Adagrad (the accumulator of a row never touched stays at its
    initial value) and of plain SGD, not of AdamW (its moments decay and its weight decay
    shrinks every row at every step), momentum or weight decay.
    """
    if not config.sparse_updates:
        return "optimizer.sparse_updates=false"
    if config.name == "adamw":
        return "adamw's moments and weight decay change every row at every step"
    if config.weight_decay:
        return f"optimizer.weight_decay={config.weight_decay} shrinks every row at every step"
    if config.momentum and config.name == "sgd":
        return f"optimizer.momentum={config.momentum} keeps moving rows a batch does not touch"
    if world_size > 1:
        # torch's DDP all-reduces sparse gradients only of nn.Embedding parameters, and not over
        # NCCL at all; the tower concatenation of bilm-tf would be distributed code of our own.
        return f"DDP (world size {world_size}) all-reduces dense gradients only"
    return None


def enable_sparse_updates(
    output: nn.Module, config: OptimizerConfig, world_size: int = 1
) -> str | None:
    """Give a sampled softmax row-sparse gradients where the update stays exact; returns a line
    saying what happened (None for other output layers, which train densely)."""
    if not isinstance(output, SampledSoftmax) or output.exhaustive:
        return None
    obstacle = sparse_update_obstacle(config, world_size)
    output.sparse_grad = obstacle is None
    if obstacle is None:
        return "output layer: row-sparse updates (only the rows each batch touches)"
    return f"output layer: dense updates ({obstacle})"


def summed_rows(grad: Tensor) -> tuple[Tensor, Tensor]:
    """A sparse row gradient `(V, ...)` as rows `(R,)` and values `(R, ...)` where each row's
    entries are summed into its first entry and its other entries are zero.

    R is the gradient's entry count, so the shapes do not depend on the data (unlike
    `coalesce()`, which needs the number of distinct rows on the host).
    """
    rows, order = grad._indices()[0].sort()  # (R,)
    first = torch.ones_like(rows, dtype=torch.bool)
    first[1:] = rows[1:] != rows[:-1]
    positions = torch.arange(rows.numel(), device=rows.device)
    start = torch.where(first, positions, 0).cummax(0).values  # (R,) each run's first entry
    values = grad._values()
    return rows, torch.zeros_like(values).index_add_(0, start, values[order])


def grad_norm(params: Iterable[Tensor]) -> Tensor:
    """The global 2-norm of all gradients, sparse row gradients included (their repeats
    summed, as the update applies them); on the device, no host sync."""
    dense, norms = [], []
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            norms.append(torch.linalg.vector_norm(summed_rows(p.grad)[1]))
        else:
            dense.append(p.grad)
    if dense:
        norms.append(torch.nn.utils.get_total_norm(dense))
    if not norms:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]))


def clip_gradients_(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """`torch.nn.utils.clip_grad_norm_` that also takes sparse row gradients (torch's cannot):
    scales every gradient by min(1, max_norm / (norm + 1e-6)); returns the norm before."""
    params = [p for p in params if p.grad is not None]
    norm = grad_norm(params)
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    dense = [p for p in params if not p.grad.is_sparse]
    torch.nn.utils.clip_grads_with_norm_(dense, max_norm, norm)
    for p in params:
        if p.grad.is_sparse:
            p.grad._values().mul_(scale.to(p.grad.device))
    return norm


class _SparseRowsStep:
    """Steps parameters whose gradient is sparse (the sampled softmax's touched rows) itself, in
    fixed shapes, and all others with the optimizer's own step (fused where the device has one;
    torch's fused and foreach steps take no sparse gradients)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        sparse = [
            (group, p, p.grad)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None and p.grad.is_sparse
        ]
        for _, p, _ in sparse:
            p.grad = None  # hidden from the dense step, which then leaves p alone
        try:
            super().step()
        finally:
            for _, p, grad in sparse:
                p.grad = grad
        for group, p, grad in sparse:
            self.sparse_step(p, grad, group)
        return loss


class SparseRowsAdagrad(_SparseRowsStep, torch.optim.Adagrad):
    """torch's Adagrad; a sparse gradient updates only its rows, exactly as the dense update
    (a row with zero gradient keeps its parameters and its accumulator)."""

    def sparse_step(self, p: Tensor, grad: Tensor, group: dict) -> None:
        state = self.state[p]
        state["step"] += 1
        rows, values = summed_rows(grad)  # repeats summed: Adagrad squares the row's total
        accumulator = state["sum"]
        accumulator.index_add_(0, rows, values * values)  # summed-away entries add zero
        std = accumulator[rows].sqrt_().add_(group["eps"])
        lr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        p.index_add_(0, rows, -lr * values / std)


class SparseRowsSGD(_SparseRowsStep, torch.optim.SGD):
    """torch's SGD; a sparse gradient (plain SGD only: no momentum, no weight decay) updates
    only its rows."""

    def sparse_step(self, p: Tensor, grad: Tensor, group: dict) -> None:
        assert not group["momentum"] and not group["weight_decay"], "sparse SGD is plain SGD"
        p.index_add_(0, grad._indices()[0], grad._values(), alpha=-group["lr"])


def warmup_decay(config: OptimizerConfig, max_steps: int):
    """The lr multiplier of AdamW at each step: linear warm-up, then the configured decay."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.decay == "constant" or max_steps <= config.warmup_steps:
            return 1.0
        progress = min(1.0, (step - config.warmup_steps) / (max_steps - config.warmup_steps))
        shape = (
            0.5 * (1 + math.cos(math.pi * progress)) if config.decay == "cosine" else 1 - progress
        )
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * shape

    return factor


class PlateauHalving:
    """Kim et al.'s schedule: shrink the lr when validation perplexity stops improving."""

    def __init__(self, config: OptimizerConfig):
        self.factor = config.plateau_factor
        self.threshold = config.plateau_threshold
        self.previous = math.inf

    def step(self, optimizer: torch.optim.Optimizer, val_ppl: float) -> bool:
        """Returns whether the lr was decayed (`main.lua` compares with the previous epoch)."""
        decayed = self.previous - val_ppl <= self.threshold
        if decayed:
            for group in optimizer.param_groups:
                group["lr"] *= self.factor
        self.previous = val_ppl
        return decayed

    def state_dict(self) -> dict:
        return {"previous": self.previous}

    def load_state_dict(self, state: dict) -> None:
        self.previous = state["previous"]
