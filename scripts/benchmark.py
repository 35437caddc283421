"""Throughput of our biLM against a straightforward reference of the same math, in one process.

    python scripts/benchmark.py                       # bilm + step, tiny and elmo_small (~3 min)
    python scripts/benchmark.py --mode bilm --presets elmo_medium,elmo_original
    python scripts/benchmark.py --mode step --vocab-size 100000,793471 --json step.json
    python scripts/benchmark.py --device cuda --lstm-impls triton --compile lstm:cudagraphs

Modes (each row is one call of the timed function, all positions of a B x T batch):

* `bilm`: forward + backward of the biLM without an output layer (char CNN, both LSTM
  directions; loss = sum of the top layer's outputs). Ours: `elmo_train.model.bilm.BiLM`.
* `step`: the whole training step: biLM + sampled softmax (shared by both directions) +
  backward + grad-norm clip 10 + Adagrad (lr 0.2, initial accumulator 1.0, as bilm-tf).
  Ours: `elmo_train.model.bilm.LanguageModel` on a `Batch` (elmo_train/model/batch.py), with
  the optimizer, clipping and row-sparse output updates `elmo train` uses
  (`training/optim.py`); `ours dense` is the same step with a dense output-layer update (as
  before issue #18). Several V (`--vocab-size 100000,793471`) are timed in the same rounds
  and each of ours is also reported relative to itself at the first V.

Rows of ours: fp32 and `bf16` (`torch.autocast(bfloat16)`: numerics change, not checked;
`--precisions`), each `--lstm-impls` (model.lstm.impl) and each `--compile` spec
(`training/compile.py`: target:backend[:mode]).

The reference (`elmo_train/reference/allennlp_style.py`) is the AllenNLP way of running the
same model: per-token char CNN (no dedup), per-step `LstmCellWithProjection` loop one direction
at a time, `SampledSoftmaxLoss` with its numpy rejection sampler and dense gradients. Both
models hold the same weights (copied from ours) and their agreement is asserted in IEEE float32
(TF32 off on CUDA) before any timing, which then runs in the production setting.

Data: tokens are drawn from Zipf(s=1.0) over 50,000 synthetic word types (random lowercase
strings, distinct), type k being vocabulary id k (frequency order, as the log-uniform sampler
assumes), so the per-batch dedup sees the repetition of real text: ~60 % of a 64 x 20 batch's
positions are distinct types, as perf-cpu.md §2 measured. The backward stream is the forward
stream reversed in time (the same tokens), so the reference encodes each position once, as
AllenNLP's `_ElmoBiLm`. Step mode: V = 100,000 by default (the reference's dense output update
scales with V; ids >= 50,000 occur only as sampled negatives; 793,471 is bilm-tf's 1B Word
vocabulary), min(8192, V // 2) negatives per direction. Dropout is 0 in both models (the
reference has none); every call starts from zero LSTM state.

Timing (perf-cpu.md methodology): every variant is warmed up, then R rounds run every variant
once, the starting variant rotating each round; figures are medians, "x ref" is the median of
the per-round ratio reference / variant at the same V (robust to drift), tokens/s = B * T /
median (each position counted once). "others" is the CPU (in cores) other processes used
during our calls, from /proc/stat; above ~0.2 the box was shared and wall times are noisy
(`--clock process --threads 1` times CPU seconds instead). On CUDA every call is synchronised
and MFU = model FLOPs / time / peak (bf16 rows against the bf16 peak); model FLOPs are counted
analytically per token position (2 x MACs forward, x 3 for forward + backward: char CNN on
every position once, highway, projection, LSTM, sampled logits), i.e. the work of the
undeduplicated model.
"""

import argparse
import contextlib
import copy as copy_module
import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from elmo_train.model.batch import Batch
from elmo_train.model.bilm import BiLM, LanguageModel
from elmo_train.model.config import PRESETS, BiLMConfig, preset
from elmo_train.reference import allennlp_style as ref_impl
from elmo_train.reference.workload import (
    macs_per_token,
    make_batch,
    peak_tflops,
    synthetic_types,
)
from elmo_train.training.compile import CompileConfig, compile_bilm
from elmo_train.training.optim import (
    OptimizerConfig,
    build_optimizer,
    clip_gradients_,
    enable_sparse_updates,
)

TARGETS = {"bilm": 1.5, "step": 2.0}  # elmo_small speedup over the reference (issues 2 and 6)


# -- timing --------------------------------------------------------------------------------


def _busy_cpu_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (0 where /proc/stat is missing)."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return 0.0
    idle = values[3] + values[4]
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


class Timer:
    """Times one call; first waits (within a budget) until other processes leave the box quiet.

    The quiet wait is perf-cpu.md's protocol for a shared machine: a call starts only once
    other processes used < `QUIET_CORES` cores for half a second, waiting at most `per_call`
    seconds each time and `budget` seconds in all, so a busy box slows the run down boundedly.
    """

    QUIET_CORES = 0.25

    def __init__(self, device: torch.device, per_call: float, budget: float, clock: str) -> None:
        self.device = device
        self.clock = clock
        self.per_call = per_call
        self.budget = budget
        self.waited = 0.0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def wait_until_quiet(self) -> None:
        start = time.perf_counter()
        limit = min(self.per_call, self.budget - self.waited)
        while time.perf_counter() - start < limit:
            busy, ours = _busy_cpu_seconds(), time.process_time()
            time.sleep(0.5)
            others = (_busy_cpu_seconds() - busy) - (time.process_time() - ours)
            if others / 0.5 < self.QUIET_CORES:
                break
        self.waited += time.perf_counter() - start

    def __call__(self, fn: Callable[[], None]) -> tuple[float, float]:
        """(ms, cores used by other processes) of one call: wall time, or with `clock` =
        "process" this process's CPU time, which other processes slow down far less (one
        thread: with several, it also counts the threads' waiting)."""
        self.wait_until_quiet()
        self.sync()
        busy, ours, start = _busy_cpu_seconds(), time.process_time(), time.perf_counter()
        fn()
        self.sync()
        wall = time.perf_counter() - start
        cpu = time.process_time() - ours
        others = (_busy_cpu_seconds() - busy) - cpu
        return (cpu if self.clock == "process" else wall) * 1e3, max(others, 0.0) / wall


def run_rounds(
    variants: dict[str, Callable[[], None]], rounds: int, warmup: int, timer: Timer
) -> dict[str, dict[str, list[float]]]:
    names = list(variants)
    for name in names:
        for _ in range(warmup):
            variants[name]()
    times = {name: {"ms": [], "others": []} for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            ms, others = timer(variants[name])
            times[name]["ms"].append(ms)
            times[name]["others"].append(others)
    return times


# -- the two modes -------------------------------------------------------------------------


@dataclasses.dataclass
class Variant:
    """One timed implementation of ours: the LSTM impl, precision, dense or row-sparse output
    updates (step mode), and what `training/compile.py` compiles."""

    name: str
    impl: str
    bf16: bool = False
    sparse: bool = True
    compile: CompileConfig | None = None


def our_variants(config: BiLMConfig, args, mode: str) -> list[Variant]:
    base = config.lstm.impl
    precisions = [precision == "bf16" for precision in args.precisions]
    suffix = {False: "", True: " bf16"}
    variants = [Variant(f"ours{suffix[bf16]}", base, bf16) for bf16 in precisions]
    if mode == "step":  # the dense output-layer update (before issue #18), in the same run
        dense = precisions[0]
        variants.append(Variant(f"ours dense{suffix[dense]}", base, dense, sparse=False))
    for impl in args.lstm_impls:
        variants += [Variant(f"ours {impl}{suffix[bf16]}", impl, bf16) for bf16 in precisions]
    for spec in args.compile:
        target, backend, *rest = spec.split(":")
        compiled = CompileConfig(target, backend, *rest)
        variants += [
            Variant(f"ours compile={spec}{suffix[bf16]}", base, bf16, compile=compiled)
            for bf16 in precisions
        ]
    return variants


@contextlib.contextmanager
def full_fp32(device: torch.device) -> Iterator[None]:
    """TF32 off for matmuls and cuDNN convolutions (torch enables the latter by default), so
    the agreement check compares float32 with float32; timing keeps the production setting."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours = ours.to_dense() if ours.is_sparse else ours
    return (
        (ours.float() - ref.float()).abs().max() / ref.float().abs().max().clamp(min=1e-12)
    ).item()


def _compiled_copy(model, variant: Variant, example: Callable[[torch.nn.Module], torch.Tensor]):
    """A copy of `model` with `variant.compile` applied (its line printed)."""
    copy = copy_module.deepcopy(model)
    bilm = copy.bilm if isinstance(copy, LanguageModel) else copy
    device = next(copy.parameters()).device
    with torch.autocast(device.type, torch.bfloat16, enabled=variant.bf16):
        print(f"{variant.name}: {compile_bilm(bilm, variant.compile, lambda: example(copy))}")
    return copy


def bilm_variants(
    config: BiLMConfig, batch: Batch, device: torch.device, tolerance: float, args
) -> tuple[dict, dict]:
    ours = BiLM(config).to(device).train()
    ref = ref_impl.build_like(ours).train()
    fwd = batch.fwd_chars.to(device)
    bwd = fwd.flip(1) if ours.n_directions == 2 else None

    def our_loss(model: BiLM) -> torch.Tensor:
        _, layers, _ = model.run_streams(fwd, bwd)
        return layers[-1].float().sum()

    def ref_loss() -> torch.Tensor:
        _, layers = ref(fwd)
        return sum(per_layer[-1].sum() for per_layer in layers)

    # Agreement of every layer, both directions, and of all gradients, before timing.
    with full_fp32(device):
        tokens, layers, _ = ours.run_streams(fwd, bwd)
        ref_tokens, ref_layers = ref(fwd)
        errors = [_relative_error(tokens[0], ref_tokens)]
        for layer in range(config.lstm.n_layers):
            errors.append(_relative_error(layers[layer][0], ref_layers[0][layer]))
            if ours.n_directions == 2:
                errors.append(_relative_error(layers[layer][1], ref_layers[1][layer].flip(1)))
        check = {"max_relative_error": max(errors)}
        layers[-1].sum().backward()
        sum(per_layer[-1].sum() for per_layer in ref_layers).backward()
        check["grad_relative_error"] = _grad_error(ours, ref)
    _assert_agreement(check, tolerance)

    def step(model: torch.nn.Module, loss: Callable[[], torch.Tensor], variant: Variant | None):
        def call() -> None:
            model.zero_grad(set_to_none=True)
            if variant is not None:
                model.config.lstm.impl = variant.impl
            bf16 = variant is not None and variant.bf16
            with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                value = loss()
            value.backward()

        return call

    variants = {"reference": step(ref, ref_loss, None)}
    for variant in our_variants(config, args, "bilm"):
        model = ours if variant.compile is None else _compiled_copy(ours, variant, our_loss)
        variants[variant.name] = step(model, lambda model=model: our_loss(model), variant)
    return variants, check


def step_variants(
    config: BiLMConfig, batch: Batch, device: torch.device, tolerance: float, V: int, args
) -> tuple[dict, dict]:
    ours = LanguageModel(config, V).to(device).train()
    optimizer_config = OptimizerConfig(lr=0.2)  # bilm-tf: Adagrad(lr 0.2, initial accumulator 1)
    # As `elmo train` builds it: row-sparse output updates (the sampled softmax's touched rows).
    print(f"V={V:,}: {enable_sparse_updates(ours.output, optimizer_config)}")
    ref = ref_impl.build_like(ours).train()
    batch = batch.to(device)

    # Agreement before timing: the same negatives (ours recorded, replayed to the reference).
    with full_fp32(device):
        replay: list = []
        with ref_impl.recorded_negatives(replay):
            loss = ours(batch).loss
        ref.softmax.choice_func = ref_impl.replaying_choice(replay)
        ref_loss = ref(batch)
        ref.softmax.choice_func = ref_impl.choice
        check = {"loss_ours": loss.item(), "loss_reference": ref_loss.item()}
        check["max_relative_error"] = abs(loss.item() - ref_loss.item()) / abs(ref_loss.item())
        loss.backward()
        ref_loss.backward()
        check["grad_relative_error"] = _grad_error(ours, ref)
    _assert_agreement(check, tolerance)
    ours.zero_grad(set_to_none=True)

    # Global-norm clip 10, as bilm-tf. The reference is torch's default Adagrad, as AllenNLP's.
    ref_params = list(ref.parameters())
    ref_optimizer = torch.optim.Adagrad(ref_params, lr=0.2, initial_accumulator_value=1.0)

    def ref_step() -> None:
        ref_optimizer.zero_grad(set_to_none=True)
        ref(batch).backward()
        torch.nn.utils.clip_grad_norm_(ref_params, 10.0)
        ref_optimizer.step()

    def our_step(model: LanguageModel, variant: Variant) -> Callable[[], None]:
        # One optimizer per model: it steps dense and row-sparse gradients alike.
        optimizer = build_optimizer(optimizer_config, model.parameters())
        sparse = model.output.sparse_grad

        def call() -> None:
            model.output.sparse_grad = sparse and variant.sparse
            model.config.lstm.impl = variant.impl
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, torch.bfloat16, enabled=variant.bf16):
                loss = model(batch).loss
            loss.backward()
            clip_gradients_(model.parameters(), 10.0)
            optimizer.step()

        return call

    variants = {"reference": ref_step}
    for variant in our_variants(config, args, "step"):
        if variant.compile is None:
            variants[variant.name] = our_step(ours, variant)
        else:
            copy = _compiled_copy(ours, variant, lambda model: model(batch).loss)
            copy.output.sparse_grad = ours.output.sparse_grad
            variants[variant.name] = our_step(copy, variant)
    return variants, check


def _grad_error(ours: torch.nn.Module, ref: torch.nn.Module) -> float:
    """Max over parameters of max |grad_ours - grad_ref| / max |grad_ref|."""
    ref_grads = ref_impl.grads_in_our_layout(ref)
    errors = []
    for name, param in ours.named_parameters():
        if param.grad is not None and ref_grads[name].abs().max() > 0:
            errors.append(_relative_error(param.grad, ref_grads[name]))
    return max(errors)


def _assert_agreement(check: dict, tolerance: float) -> None:
    worst = max(check["max_relative_error"], check["grad_relative_error"])
    assert worst <= tolerance, f"ours and the reference disagree: {check} (tolerance {tolerance})"


# -- driver --------------------------------------------------------------------------------


def fits(config: BiLMConfig, mode: str, B: int, T: int, V: int, device: torch.device) -> bool:
    """Whether a rough peak-memory estimate of both models fits in 80 % of free memory."""
    cnn, lstm = config.char_cnn, config.lstm
    e, F, C, P = cnn.embedding_dim, cnn.n_filters, lstm.dim, lstm.projection_dim
    L, N, D = cnn.max_characters_per_token, B * T, 2 if config.bidirectional else 1
    params = sum(w * e * n for w, n in cnn.filters) + cnn.n_highway * 2 * F * F + F * P
    params += D * lstm.n_layers * (2 * P * 4 * C + C * P)
    # conv outputs and their gradients (transient, per width), highway, ~8 saved (B, 4C) per step
    activations = 2 * N * max((L - w + 1) * n for w, n in cnn.filters) + 8 * N * F
    activations += 8 * N * 4 * C * lstm.n_layers * D
    if mode == "step":
        params += V * (P + 1)
        activations += 4 * D * N * (min(8192, V // 2) + 1)
    need = 4 * (3 * 3 * params + 2 * activations)  # 3 models (weights, grads, Adagrad)
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        free = int(info["MemAvailable"].split()[0]) * 1024
    return need < 0.8 * free


def machine(device: torch.device) -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def summarise(times: dict, tokens: int, flops: dict, peaks: dict | None) -> list[dict]:
    """One row per (implementation, V); "× ref" is paired with the reference at the same V."""
    rows = []
    for (name, V), t in times.items():
        ms = statistics.median(t["ms"])
        reference = times[("reference", V)]["ms"]
        ratios = [r / v for r, v in zip(reference, t["ms"], strict=True)]
        row = {
            "implementation": name,
            "vocab_size": V,
            "median_ms": ms,
            "min_ms": min(t["ms"]),
            "max_ms": max(t["ms"]),
            "tokens_per_s": tokens / (ms / 1e3),
            "speedup": statistics.median(ratios),
            "model_gflops_per_s": flops[V] / (ms / 1e3) / 1e9,
            "others_cores": statistics.median(t["others"]),
            "ms": t["ms"],
        }
        if peaks is not None:
            peak = peaks["bf16" if "bf16" in name else "fp32"]
            row["mfu"] = row["model_gflops_per_s"] / 1e3 / peak
        rows.append(row)
    return rows


def vocabulary_ratios(times: dict, sizes: list[int]) -> list[dict]:
    """Tokens/s of each of ours at every V relative to the same implementation at the first V,
    the median of per-round ratios (issue #18: >= 0.9 at 793,471 vs 100,000)."""
    ratios = []
    for name, V in times:
        if V is None or V == sizes[0] or name == "reference":
            continue
        base = times[(name, sizes[0])]["ms"]
        paired = [b / v for b, v in zip(base, times[(name, V)]["ms"], strict=True)]
        ratios.append({"implementation": name, "vocab_size": V, "base": sizes[0],
                       "ratio": statistics.median(paired)})  # fmt: skip
    return ratios


def print_table(results: list[dict]) -> None:
    mfu = any("mfu" in r for res in results for r in res["rows"])
    vocab = any(r["vocab_size"] is not None for res in results for r in res["rows"])
    head = "| preset |" + " V |" * vocab
    head += " implementation | median ms | min..max ms | tokens/s | × ref | model GFLOP/s |"
    head += " MFU |" * mfu + " others |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for res in results:
        for r in res["rows"]:
            cells = [res["preset"]] + ([f"{r['vocab_size']:,}"] if vocab else [])
            cells += [
                r["implementation"],
                f"{r['median_ms']:.0f}",
                f"{r['min_ms']:.0f}..{r['max_ms']:.0f}",
                f"{r['tokens_per_s']:.0f}",
                f"×{r['speedup']:.2f}",
                f"{r['model_gflops_per_s']:.1f}",
            ]
            if mfu:
                cells.append(f"{100 * r['mfu']:.2f} %")
            cells.append(f"{r['others_cores']:.2f}")
            print("| " + " | ".join(cells) + " |")
    for res in results:
        for q in res["vocabulary_ratios"]:
            print(
                f"{res['preset']} {q['implementation']}: tokens/s at V={q['vocab_size']:,} = "
                f"×{q['ratio']:.2f} of V={q['base']:,} (paired per round)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["bilm", "step", "all"], default="all")
    parser.add_argument("--presets", default="tiny,elmo_small", help="comma-separated")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="unroll length T")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="calls per variant (+1 check)")
    parser.add_argument("--types", type=int, default=50_000, help="synthetic word types")
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument(
        "--vocab-size", default="100000", help="step mode: V, or several (comma-separated)"
    )
    parser.add_argument("--negatives", type=int, default=None, help="default min(8192, V//2)")
    parser.add_argument(
        "--precisions", default="fp32,bf16", help="rows of ours: fp32, bf16 (autocast) or both"
    )
    parser.add_argument(
        "--lstm-impls", default="", help="more model.lstm.impl rows, e.g. compiled,triton"
    )
    parser.add_argument(
        "--compile", action="append", default=[], metavar="TARGET:BACKEND[:MODE]",
        help="a row with training/compile.py, e.g. lstm:cudagraphs or bilm:inductor:default",
    )  # fmt: skip
    parser.add_argument("--tolerance", type=float, default=1e-3, help="fp32 agreement")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-tflops", type=float, default=None, help="fp32 peak (MFU)")
    parser.add_argument("--peak-tflops-bf16", type=float, default=None, help="bf16 peak (MFU)")
    parser.add_argument(
        "--clock", choices=["wall", "process"], default="wall",
        help="process: CPU time of this process (a shared CPU; use with --threads 1)",
    )  # fmt: skip
    parser.add_argument("--quiet-wait", type=float, default=20.0, help="max s per call")
    parser.add_argument("--quiet-budget", type=float, default=90.0, help="max s of waiting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    args = parser.parse_args(argv)
    args.lstm_impls = [impl for impl in args.lstm_impls.split(",") if impl]
    args.precisions = [p for p in args.precisions.split(",") if p]
    if not args.precisions or not set(args.precisions) <= {"fp32", "bf16"}:
        parser.error("--precisions: fp32, bf16 or fp32,bf16")

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = [n for n in args.presets.split(",") if n]
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        parser.error(f"unknown preset(s) {unknown}; choose from {', '.join(PRESETS)}")
    sizes = [int(v) for v in args.vocab_size.split(",")]
    negatives = {V: args.negatives or min(8192, V // 2) for V in sizes}
    if any(not 0 < negatives[V] < V or args.types > V for V in sizes):
        parser.error("need 0 < --negatives < --vocab-size and --types <= --vocab-size")
    peaks = None
    if args.peak_tflops or args.peak_tflops_bf16:
        peaks = {"fp32": args.peak_tflops or math.nan, "bf16": args.peak_tflops_bf16 or math.nan}
    elif device.type == "cuda" and peak_tflops(torch.cuda.get_device_name(device), "bf16"):
        gpu = torch.cuda.get_device_name(device)
        peaks = {precision: peak_tflops(gpu, precision) for precision in ("fp32", "bf16")}

    info = machine(device)
    print(f"# elmo-train benchmark, {info['date']}")
    gpu = f" ({info['gpu']})" if "gpu" in info else ""
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, {info['threads']} torch threads, "
        f"torch {info['torch']}, python {info['python']}, device {device}{gpu}"
    )
    print(f"command: python {' '.join(sys.argv)}")
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # the reference sampler draws from numpy's global state
    type_chars = synthetic_types(args.types, rng)
    batch = make_batch(type_chars, args.batch_size, args.steps, args.zipf, rng)
    n_tokens = args.batch_size * args.steps
    unique = torch.unique(batch.fwd_chars.reshape(n_tokens, -1), dim=0).shape[0]
    print(
        f"batch: {args.batch_size} x {args.steps} = {n_tokens} positions, Zipf({args.zipf}) over "
        f"{args.types} types: {unique} distinct ({100 * unique / n_tokens:.0f} %); "
        f"{args.rounds} rounds, {args.warmup} warm-up + 1 check call per variant"
    )

    budget = args.quiet_budget if device.type == "cpu" else 0.0
    timer = Timer(device, args.quiet_wait, budget, args.clock)
    modes = ["bilm", "step"] if args.mode == "all" else [args.mode]
    report = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "modes": {}}
    for mode in modes:
        print()
        if mode == "bilm":
            print("## biLM forward + backward (char CNN + LSTMs, no softmax)")
        else:
            print(
                f"## training step (biLM + sampled softmax V={args.vocab_size}, "
                f"{'/'.join(str(negatives[V]) for V in sizes)} negatives, backward, clip 10, "
                "Adagrad)"
            )
        results = []
        for name in names:
            variants, checks, flops, macs = {}, {}, {}, {}
            for V in sizes if mode == "step" else [None]:
                config = preset(name)
                config.dropout = 0.0
                if mode == "step":
                    config.softmax = dataclasses.replace(
                        config.softmax, kind="sampled", n_negatives=negatives[V]
                    )
                if not fits(config, mode, args.batch_size, args.steps, V or 0, device):
                    print(f"{name}: skipped, does not fit in memory")
                    break
                torch.manual_seed(args.seed)
                if mode == "bilm":
                    found, checks[V] = bilm_variants(config, batch, device, args.tolerance, args)
                else:
                    found, checks[V] = step_variants(config, batch, device, args.tolerance, V, args)
                variants.update({(variant, V): call for variant, call in found.items()})
                macs[V] = macs_per_token(config, negatives[V] if mode == "step" else None)
                flops[V] = 6 * sum(macs[V].values()) * n_tokens  # 2 x MACs fwd, x 3 with bwd
                print(
                    f"{name}{f' V={V:,}' if V else ''}: agreement ok (max relative error: "
                    f"outputs/loss {checks[V]['max_relative_error']:.1e}, gradients "
                    f"{checks[V]['grad_relative_error']:.1e})"
                )
            else:  # every V fits: time all variants of all V together, rotating
                times = run_rounds(variants, args.rounds, args.warmup, timer)
                results.append({
                    "preset": name,
                    "rows": summarise(times, n_tokens, flops, peaks),
                    "vocabulary_ratios": vocabulary_ratios(times, sizes),
                    "checks": {str(V): check for V, check in checks.items()},
                    "macs": {str(V): m for V, m in macs.items()},
                })  # fmt: skip
        print()
        print_table(results)
        for res in results:
            for r in res["rows"]:
                if res["preset"] == "elmo_small" and r["implementation"] == "ours":
                    verdict = "met" if r["speedup"] >= TARGETS[mode] else "NOT met"
                    print(
                        f"target elmo_small ≥ ×{TARGETS[mode]} (fp32, V={r['vocab_size']}): "
                        f"×{r['speedup']:.2f}, {verdict}"
                    )
        report["modes"][mode] = results
    print(f"\nwaited {timer.waited:.0f} s in all for other processes to leave the CPU quiet")
    if args.json:
        report["waited_s"] = timer.waited
        args.json.write_text(json.dumps(report, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
