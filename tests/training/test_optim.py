import math

import pytest
import torch

from elmo_train.model.batch import Batch
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.chars import batch_to_ids
from elmo_train.model.config import SoftmaxConfig, preset
from elmo_train.training.optim import (
    OptimizerConfig,
    PlateauHalving,
    build_optimizer,
    clip_gradients_,
    enable_sparse_updates,
    grad_norm,
    summed_rows,
    warmup_decay,
)


def _params() -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]


def test_adagrad_is_bilm_tf_update():
    # sum += g^2 (starting at 1.0); p -= lr * g / sqrt(sum): bilm-tf's tf.train.AdagradOptimizer.
    params = _params()
    start = [p.detach().clone() for p in params]
    optimizer = build_optimizer(OptimizerConfig(name="adagrad", lr=0.2), params)
    grads = [[torch.randn_like(p) for p in params] for _ in range(3)]
    accumulators = [torch.ones_like(p) for p in params]
    expected = [p.clone() for p in start]
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
        for e, acc, g in zip(expected, accumulators, step_grads, strict=True):
            acc += g * g
            e -= 0.2 * g / acc.sqrt()
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["adagrad", "sgd", "adamw"])
def test_cpu_optimizers_use_the_fused_step(name):
    optimizer = build_optimizer(OptimizerConfig(name=name, lr=0.1), _params())
    assert optimizer.defaults["fused"] is True


def test_plateau_halving_compares_with_the_previous_validation():
    params = _params()
    optimizer = build_optimizer(OptimizerConfig(name="sgd", lr=1.0), params)
    plateau = PlateauHalving(OptimizerConfig(name="sgd"))
    decisions = [plateau.step(optimizer, ppl) for ppl in (300.0, 200.0, 199.5, 199.0, 150.0)]
    assert decisions == [False, False, True, True, False]  # improvements <= 1 halve the lr
    assert optimizer.param_groups[0]["lr"] == 0.25


def test_warmup_then_cosine_decay_to_the_floor():
    config = OptimizerConfig(name="adamw", warmup_steps=10, decay="cosine", min_lr_ratio=0.1)
    factor = warmup_decay(config, max_steps=110)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factor(110) == pytest.approx(0.1)


# --- row-sparse output-layer updates --------------------------------------------------------


def _sampled_lm(vocab_size: int = 400) -> LanguageModel:
    config = preset("tiny")
    config.dropout = 0.0
    config.softmax = SoftmaxConfig(kind="sampled", n_negatives=24)
    torch.manual_seed(0)
    return LanguageModel(config, vocab_size).double()


def _batch(vocab_size: int, B: int = 3, T: int = 4) -> Batch:
    words = [[f"w{(7 * i + t) % 11}" for t in range(T)] for i in range(B)]
    chars = batch_to_ids(words)  # (B, T, 50)
    g = torch.Generator().manual_seed(1)
    targets = torch.randint(0, 30, (2, B, T), generator=g)  # repeated rows in every batch
    return Batch(
        fwd_chars=chars,
        fwd_targets=targets[0],
        bwd_chars=chars.flip(1),
        bwd_targets=targets[1],
        mask=torch.ones(B, T, dtype=torch.bool),
        reset=torch.zeros(B, dtype=torch.bool),
    )


def _train(lm: LanguageModel, config: OptimizerConfig, steps: int, max_norm: float):
    """Steps as `elmo train` takes them (global-norm clip, then the optimizer); the negatives of
    step k are the same for every model. Returns the optimizer and the clip norms."""
    assert enable_sparse_updates(lm.output, config) is not None
    optimizer = build_optimizer(config, lm.parameters())
    batch, norms = _batch(lm.vocab_size), []
    for step in range(steps):
        torch.manual_seed(100 + step)
        optimizer.zero_grad(set_to_none=True)
        lm(batch).loss.backward()
        norms.append(clip_gradients_(lm.parameters(), max_norm))
        optimizer.step()
    return optimizer, torch.stack(norms)


@pytest.mark.parametrize("name", ["adagrad", "sgd"])
def test_sparse_updates_equal_dense_updates(name):
    # float64, clipping active: the same parameters, accumulators and clip norms after 4 steps.
    sparse_lm, dense_lm = _sampled_lm(), _sampled_lm()
    sparse_cfg = OptimizerConfig(name=name, lr=0.5)
    dense_cfg = OptimizerConfig(name=name, lr=0.5, sparse_updates=False)
    sparse_opt, sparse_norms = _train(sparse_lm, sparse_cfg, 4, max_norm=0.5)
    dense_opt, dense_norms = _train(dense_lm, dense_cfg, 4, max_norm=0.5)
    assert sparse_lm.output.sparse_grad and not dense_lm.output.sparse_grad
    assert sparse_lm.output.weight.grad.is_sparse and not dense_lm.output.weight.grad.is_sparse
    assert torch.all(dense_norms > 0.5)  # every step clipped
    torch.testing.assert_close(sparse_norms, dense_norms, rtol=1e-12, atol=0)
    for (name_, p), q in zip(sparse_lm.named_parameters(), dense_lm.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14, msg=name_)
    if name == "adagrad":
        for p, q in zip(sparse_lm.parameters(), dense_lm.parameters(), strict=True):
            torch.testing.assert_close(sparse_opt.state[p]["sum"], dense_opt.state[q]["sum"])
            assert sparse_opt.state[p]["step"] == dense_opt.state[q]["step"] == 4


def test_rows_never_touched_keep_parameters_and_initial_accumulator():
    lm = _sampled_lm()
    start = lm.output.weight.detach().clone()
    optimizer, _ = _train(lm, OptimizerConfig(name="adagrad", lr=0.2), 3, max_norm=10.0)
    batch = _batch(lm.vocab_size)
    accumulator = optimizer.state[lm.output.weight]["sum"]
    changed = (lm.output.weight != start).any(dim=1)  # (V,)
    grown = (accumulator != 1.0).any(dim=1)
    assert torch.equal(changed, grown)  # rows touched = rows whose accumulator grew
    targets = torch.cat([batch.fwd_targets.flatten(), batch.bwd_targets.flatten()])
    assert changed[targets].all()
    assert 0 < int(changed.sum()) < lm.vocab_size // 2  # most rows were never sampled
    assert torch.all(accumulator[~grown] == 1.0)  # bilm-tf's initial accumulator, untouched


def test_sparse_gradient_norm_sums_repeated_rows_first():
    weight = torch.nn.Parameter(torch.zeros(5, 2, dtype=torch.float64))
    values = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    weight.grad = torch.sparse_coo_tensor(
        torch.tensor([[4, 1, 4]]), values, (5, 2), check_invariants=True
    )
    dense = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    dense.grad = torch.tensor([1.0], dtype=torch.float64)
    # row 4 = (3, 2), row 1 = (1, 0): |g|^2 = 13 + 1 + 1 (not 9 + 1 + 4 + 1 entry by entry)
    assert grad_norm([weight, dense]).item() == pytest.approx(math.sqrt(15.0), abs=1e-15)
    rows, summed = summed_rows(weight.grad)
    assert rows.shape == (3,) and summed.shape == (3, 2)  # fixed: one slot per entry
    assert torch.equal(
        weight.grad.to_dense(), torch.zeros(5, 2).double().index_add(0, rows, summed)
    )
    norm = clip_gradients_([weight, dense], max_norm=1.0)
    assert norm.item() == pytest.approx(math.sqrt(15.0))
    assert grad_norm([weight, dense]).item() == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize(
    ("overrides", "world_size", "why"),
    [
        ({"name": "adamw"}, 1, "adamw"),
        ({"name": "sgd", "momentum": 0.9}, 1, "momentum"),
        ({"weight_decay": 0.01}, 1, "weight_decay"),
        ({"sparse_updates": False}, 1, "sparse_updates=false"),
        ({}, 2, "DDP"),
    ],
)
def test_dense_updates_where_a_sparse_one_would_not_be_exact(overrides, world_size, why):
    lm = _sampled_lm()
    config = OptimizerConfig(**overrides)
    message = enable_sparse_updates(lm.output, config, world_size)
    assert "dense" in message and why in message
    assert not lm.output.sparse_grad
    assert enable_sparse_updates(lm.output, OptimizerConfig(name="sgd")).startswith(
        "output layer: row-sparse"
    )
    assert lm.output.sparse_grad


def test_only_a_sampled_softmax_has_sparse_updates():
    config = preset("tiny")  # full softmax
    assert enable_sparse_updates(LanguageModel(config, 50).output, OptimizerConfig()) is None
