import math

import pytest
import torch

from elmo_train.training.optim import OptimizerConfig, PlateauHalving, build_optimizer, warmup_decay


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
