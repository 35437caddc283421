"""The biLM's forward and backward compiled or captured once, with an eager fallback that says why.

GPU steps of the clipped LSTM are launch-bound (thousands of small kernels per step; issue #18):
`torch.compile` fuses the cell's pointwise work (inductor) and CUDA graphs replay the whole
recurrence with one launch. Compiling can fail where eager works (no C++ compiler, an
unsupported GPU, a dynamo limitation), so `compile_bilm` compiles and runs one forward and
backward at once: on any failure the biLM is left eager and the returned line says why.
"""

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from elmo_train.model.bilm import BiLM
from elmo_train.model.lstm import LSTMStack

TARGETS = ("none", "lstm", "bilm")
BACKENDS = ("inductor", "cudagraphs")


@dataclass
class CompileConfig:
    # none: eager. lstm: the LSTM stacks of both directions. bilm: the char CNN too, which then
    # runs on every position in fixed shapes (no per-batch dedup: a graph has static shapes).
    target: str = "none"
    # inductor: generated fused kernels; cudagraphs: torch's own kernels replayed as CUDA graphs
    # (no code generation, CUDA only).
    backend: str = "inductor"
    # inductor's mode: default | reduce-overhead (adds CUDA graphs) | max-autotune | ...
    mode: str = "default"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"compile.target must be one of {', '.join(TARGETS)}: {self.target!r}")
        if self.backend not in BACKENDS:
            raise ValueError(
                f"compile.backend must be one of {', '.join(BACKENDS)}: {self.backend!r}"
            )

    @property
    def uses_cuda_graphs(self) -> bool:
        return self.backend == "cudagraphs" or "reduce-overhead" in self.mode


def compile_bilm(bilm: BiLM, config: CompileConfig, example: Callable[[], Tensor]) -> str:
    """Compile `config.target` of `bilm` in place and build it now on `example`: a scalar loss
    of the biLM computed as the training step computes it (same shapes, under the step's
    autocast). The RNG state and the parameters' gradients are left as they were.

    Returns one line for the log: what was compiled, or why the biLM stays eager.
    """
    if config.target == "none":
        return "compile: none (eager)"
    device = next(bilm.parameters()).device
    if config.uses_cuda_graphs and device.type != "cuda":
        return f"compile: eager, CUDA graphs need a CUDA device (the model is on {device.type})"
    undo = _compile_in_place(bilm, config)
    what = f"{config.target} ({config.backend}, {config.mode})"
    try:
        with warnings.catch_warnings(), _rng_kept(device):
            warnings.simplefilter("ignore")  # dynamo's notes on graph breaks are not for users
            loss = example()
            params = [p for p in bilm.parameters() if p.requires_grad]
            torch.autograd.grad(loss, params, allow_unused=True)
    except Exception as error:  # noqa: BLE001 - any compiler failure: stay eager and say why
        undo()
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        return f"compile: eager, compiling the {what} failed ({type(error).__name__}: {first_line})"
    return f"compile: {what}"


def _compile_in_place(bilm: BiLM, config: CompileConfig) -> Callable[[], None]:
    """Replace the forward of the compiled parts by compiled ones; returns the undo."""
    options = {"backend": config.backend}
    if config.backend == "inductor":
        options["mode"] = config.mode
    lstm = bilm.lstm
    lstm.forward = _lstm_forward(lstm, torch.compile(LSTMStack.forward, **options), config)
    encoder, fixed_shapes = bilm.char_encoder, bilm.char_encoder.fixed_shapes
    if config.target == "bilm":
        encoder.fixed_shapes = True  # torch.unique has a data-dependent shape
        compiled_encoder = torch.compile(type(encoder).forward, **options)
        encoder.forward = lambda char_ids: compiled_encoder(encoder, char_ids)

    def undo() -> None:
        del lstm.forward
        if config.target == "bilm":
            del encoder.forward
            encoder.fixed_shapes = fixed_shapes

    return undo


def _lstm_forward(lstm: LSTMStack, compiled: Callable, config: CompileConfig) -> Callable:
    def forward(x, state=None, mask=None):
        # The zero state is made outside the graph: one graph serves the first batch and the
        # carried state alike.
        state = state if state is not None else lstm.zero_state(x.shape[1], x)
        outputs, final = compiled(lstm, x, state, mask)
        if config.uses_cuda_graphs:
            # A CUDA graph's outputs are overwritten by its next replay; the state is carried.
            final = type(final)(final.h.clone(), final.c.clone())
        return outputs, final

    return forward


def _rng_kept(device: torch.device) -> contextlib.AbstractContextManager:
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
