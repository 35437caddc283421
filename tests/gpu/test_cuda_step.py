"""The GPU paths (issue #18), marked `gpu`: skipped without CUDA (CI has none);
`scripts/gpu_check.sh` runs them on a GPU machine."""

import dataclasses

import numpy as np
import pytest
import torch

from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import SoftmaxConfig, preset
from elmo_train.reference.workload import make_batch, synthetic_types
from elmo_train.training.compile import CompileConfig, compile_bilm
from elmo_train.training.optim import (
    OptimizerConfig,
    build_optimizer,
    clip_gradients_,
    enable_sparse_updates,
)

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _full_fp32():
    """Comparisons in IEEE float32: no TF32 in matmuls or cuDNN convolutions."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _lm(vocab_size: int = 2000, **lstm) -> LanguageModel:
    config = preset("tiny")
    config.dropout = 0.0
    config.lstm = dataclasses.replace(config.lstm, **lstm)
    config.softmax = SoftmaxConfig(kind="sampled", n_negatives=256)
    torch.manual_seed(0)
    return LanguageModel(config, vocab_size).to(CUDA).train()


def _batch(B: int = 8, T: int = 10):
    rng = np.random.default_rng(0)
    return make_batch(synthetic_types(1000, rng), B, T, 1.0, rng).to(CUDA)


def _loss_and_grads(lm: LanguageModel, batch, bf16: bool = False):
    torch.manual_seed(1)  # the same negatives
    with torch.autocast("cuda", torch.bfloat16, enabled=bf16):
        loss = lm(batch).loss
    grads = torch.autograd.grad(loss, list(lm.parameters()))
    return loss, grads


def test_char_cnn_runs_in_fixed_shapes_on_cuda():
    lm = _lm()
    assert lm.bilm.char_encoder.fixed_shapes is None  # None: fixed shapes off the CPU
    batch = _batch()
    on_gpu = lm.bilm.char_encoder(batch.fwd_chars)
    lm.bilm.char_encoder.fixed_shapes = False  # the CPU path: unique + column cut
    torch.testing.assert_close(on_gpu, lm.bilm.char_encoder(batch.fwd_chars))


def test_bf16_step_is_finite_and_close_to_fp32():
    lm, batch = _lm(), _batch()
    loss32, grads32 = _loss_and_grads(lm, batch)
    loss16, grads16 = _loss_and_grads(lm, batch, bf16=True)
    assert loss16.dtype == torch.float32  # the output layer runs in float32 under autocast
    assert torch.isfinite(loss16) and all(torch.isfinite(g).all() for g in grads16)
    assert abs(loss16.item() - loss32.item()) < 0.02 * loss32.item()
    flat32, flat16 = (
        torch.cat([g.flatten() for g in grads32]),
        torch.cat([g.flatten() for g in grads16]),
    )
    assert torch.nn.functional.cosine_similarity(flat32, flat16, dim=0) > 0.99


@pytest.mark.parametrize(
    "config",
    [CompileConfig("bilm"), CompileConfig("lstm", "cudagraphs")],
    ids=["bilm-inductor", "lstm-cudagraphs"],
)
def test_compiled_step_equals_eager_step(config):
    lm, batch = _lm(), _batch()

    def steps() -> list[torch.Tensor]:  # three steps, the LSTM state carried between them
        state, results = None, []
        for _ in range(3):
            torch.manual_seed(1)
            out = lm(batch, state)
            state = out.state.detach()
            results += [
                out.loss,
                state.h,
                state.c,
                *torch.autograd.grad(out.loss, list(lm.parameters())),
            ]
        return results

    eager = steps()
    line = compile_bilm(lm.bilm, config, lambda: lm(batch).loss)
    assert not line.startswith("compile: eager"), line
    for got, want in zip(steps(), eager, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", ["fused", "triton"])
def test_lstm_impl_equals_clipped_cell_on_cuda(impl):
    clips = {"cell_clip": None, "proj_clip": None} if impl == "fused" else {}
    lm, batch = _lm(impl=impl, **clips), _batch()
    fast = _loss_and_grads(lm, batch)
    lm.config.lstm.impl = "clipped"
    eager = _loss_and_grads(lm, batch)
    torch.testing.assert_close(fast[0], eager[0], rtol=1e-5, atol=1e-5)
    for got, want in zip(fast[1], eager[1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["adagrad", "sgd"])
def test_sparse_updates_equal_dense_updates_on_cuda(name):
    models = {}
    for sparse in (True, False):
        lm, batch = _lm().double(), _batch()
        config = OptimizerConfig(name=name, lr=0.5, sparse_updates=sparse)
        enable_sparse_updates(lm.output, config)
        optimizer = build_optimizer(config, lm.parameters())
        for step in range(3):
            torch.manual_seed(step)
            optimizer.zero_grad(set_to_none=True)
            lm(batch).loss.backward()
            clip_gradients_(lm.parameters(), 0.5)
            optimizer.step()
        models[sparse] = lm
    for p, q in zip(models[True].parameters(), models[False].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_training_step_makes_no_host_sync():
    lm, batch = _lm(), _batch()
    config = OptimizerConfig(lr=0.2)
    assert "row-sparse" in enable_sparse_updates(lm.output, config)
    optimizer = build_optimizer(config, lm.parameters())
    state = None

    def step():
        nonlocal state
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", torch.bfloat16):
            out = lm(batch, state)
        out.loss.backward()
        clip_gradients_(lm.parameters(), 10.0)
        optimizer.step()
        state = out.state.detach()

    step()  # first call: lazy initialisation (cuBLAS handles, allocator) may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert lm.output.weight.grad.is_sparse
