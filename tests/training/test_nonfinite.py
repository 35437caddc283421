"""NonFiniteGuard: a step whose loss or gradient norm is not finite changes nothing, and counts."""

import pytest
import torch

from elmo_train.training.nonfinite import NonFiniteGuard, all_finite
from elmo_train.training.optim import grad_norm

NAN = float("nan")


def params_with_grads(*grads: list[float]) -> list[torch.nn.Parameter]:
    params = []
    for grad in grads:
        param = torch.nn.Parameter(torch.ones(len(grad)))
        param.grad = torch.tensor(grad)
        params.append(param)
    return params


def judge(guard, params, step, loss=1.0, sync=True):
    return guard.judge(params, grad_norm(params), torch.tensor(loss), step, sync)


def test_a_bad_step_is_dropped_on_cpu_and_the_next_one_over_the_allowance_stops():
    guard = NonFiniteGuard(allowed=1)
    params = params_with_grads([1.0, 2.0], [3.0])
    assert judge(guard, params, step=1)
    assert params[0].grad is not None
    params = params_with_grads([1.0, NAN], [3.0])
    assert not judge(guard, params, step=2)
    assert all(p.grad is None for p in params)  # every optimizer skips the step
    assert (guard.bad_steps(), guard.stop_step()) == (1, None)  # allowed: skipped
    assert not judge(guard, params_with_grads([1.0]), step=3, loss=float("inf"))
    assert (guard.bad_steps(), guard.stop_step()) == (2, 3)


def test_on_a_device_a_bad_step_is_zeroed_without_reading_the_verdict():
    guard = NonFiniteGuard(allowed=0)
    params = params_with_grads([1.0, float("inf")], [NAN, 2.0])
    finite = judge(guard, params, step=7, sync=False)
    assert isinstance(finite, torch.Tensor) and not finite
    assert all(torch.equal(p.grad, torch.zeros(2)) for p in params)  # zeros, not NaN * 0
    params = params_with_grads([1.0, 2.0])
    judge(guard, params, step=8, sync=False)
    assert torch.equal(params[0].grad, torch.tensor([1.0, 2.0]))  # good steps untouched
    assert (guard.bad_steps(), guard.stop_step()) == (1, 7)  # the first step past the allowance


def test_a_grad_scaler_keeps_its_own_overflowing_steps():
    guard = NonFiniteGuard(check_gradients=False)  # 16-mixed: the scaler skips and rescales
    assert judge(guard, params_with_grads([float("inf")]), step=1)
    assert not judge(guard, params_with_grads([1.0]), step=2, loss=NAN)
    assert guard.bad_steps() == 1


def test_the_count_survives_a_checkpoint():
    guard = NonFiniteGuard(allowed=2)
    judge(guard, params_with_grads([NAN]), step=4)
    resumed = NonFiniteGuard(allowed=2)
    resumed.load_state_dict(guard.state_dict())
    judge(resumed, params_with_grads([NAN]), step=9)
    assert (resumed.bad_steps(), resumed.stop_step()) == (2, None)
    judge(resumed, params_with_grads([NAN]), step=11)
    assert resumed.stop_step() == 11


def test_all_finite_looks_at_floating_point_tensors():
    assert all_finite([torch.ones(3), torch.tensor([1, 2])])
    assert not all_finite([torch.ones(3), torch.tensor([1.0, NAN])])
    assert all_finite([])


@pytest.mark.gpu
def test_judging_a_cuda_step_never_waits_for_the_device():
    torch.cuda.set_sync_debug_mode("error")  # any host sync raises
    try:
        guard = NonFiniteGuard()
        params = [torch.nn.Parameter(torch.ones(1000, device="cuda")) for _ in range(3)]
        for step, bad in enumerate([False, True, False], start=1):
            for param in params:
                param.grad = torch.full_like(param, NAN if bad else 0.5)
            norm = grad_norm(params)
            torch.nn.utils.clip_grads_with_norm_(params, 1.0, norm)
            guard.judge(params, norm, torch.ones((), device="cuda"), step, sync=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert (guard.bad_steps(), guard.stop_step()) == (1, 2)
