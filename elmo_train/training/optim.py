"""Optimisers of the papers: Adagrad (ELMo), SGD halved on plateau (Kim et al.), AdamW."""

import math
from dataclasses import dataclass, field

import torch


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
    ~6x faster than the per-tensor loop; the same update)."""
    params = list(params)
    device = params[0].device.type if params else "cpu"
    options = {
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "fused": (fused and device in FUSED_DEVICES[config.name]) or None,
    }
    if config.name == "adagrad":
        initial = config.initial_accumulator_value
        return torch.optim.Adagrad(params, initial_accumulator_value=initial, **options)
    if config.name == "sgd":
        return torch.optim.SGD(params, momentum=config.momentum, **options)
    return torch.optim.AdamW(params, betas=tuple(config.betas), **options)


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
