import pytest
import torch

from elmo_train.model.batch import Batch
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.chars import batch_to_ids
from elmo_train.model.config import preset
from elmo_train.training.compile import CompileConfig, compile_bilm


def _lm() -> LanguageModel:
    config = preset("tiny")
    config.dropout = 0.0
    torch.manual_seed(0)
    return LanguageModel(config, vocab_size=30).double()


def _batch(B: int = 2, T: int = 5) -> Batch:
    words = [[f"w{(5 * i + t) % 7}" for t in range(T)] for i in range(B)]
    chars = batch_to_ids(words)  # (B, T, 50)
    targets = torch.arange(B * T).view(B, T) % 30
    return Batch(
        fwd_chars=chars,
        fwd_targets=targets,
        bwd_chars=chars.flip(1),
        bwd_targets=targets.flip(1),
        mask=torch.ones(B, T, dtype=torch.bool),
        reset=torch.zeros(B, dtype=torch.bool),
    )


def _step(lm: LanguageModel, batch: Batch, steps: int = 2) -> list[torch.Tensor]:
    """Loss, carried state and gradients of `steps` steps, the state carried between them."""
    state, results = None, []
    for _ in range(steps):
        out = lm(batch, state)
        state = out.state.detach()
        results += [out.loss, state.h, state.c]
        results += torch.autograd.grad(out.loss, list(lm.parameters()))
    return results


@pytest.mark.slow  # inductor builds C++ kernels: ~1-2 min on 2 shared cores
def test_compiled_step_equals_eager_step():
    target = "bilm"  # the char CNN and the LSTM, the carried state passed between steps
    lm, batch = _lm(), _batch()
    eager = _step(lm, batch)
    rng = torch.get_rng_state()
    line = compile_bilm(lm.bilm, CompileConfig(target=target), lambda: lm(batch).loss)
    assert line == f"compile: {target} (inductor, default)"
    assert torch.equal(torch.get_rng_state(), rng)  # the trial step drew no random numbers
    assert all(p.grad is None for p in lm.parameters())  # and left no gradients
    assert lm.bilm.char_encoder.fixed_shapes is True
    for got, want in zip(_step(lm, batch), eager, strict=True):
        torch.testing.assert_close(got, want)


def test_a_failing_compiler_leaves_the_bilm_eager_and_says_why(monkeypatch):
    def broken_compile(fn, **kwargs):
        def fails(*args, **kwargs):
            raise RuntimeError("no C++ compiler\nmore lines")

        return fails

    monkeypatch.setattr(torch, "compile", broken_compile)
    lm, batch = _lm(), _batch()
    eager = _step(lm, batch)
    line = compile_bilm(lm.bilm, CompileConfig(target="bilm"), lambda: lm(batch).loss)
    assert line == (
        "compile: eager, compiling the bilm (inductor, default) failed "
        "(RuntimeError: no C++ compiler)"
    )
    assert "forward" not in vars(lm.bilm.lstm) and "forward" not in vars(lm.bilm.char_encoder)
    assert lm.bilm.char_encoder.fixed_shapes is None
    for got, want in zip(_step(lm, batch), eager, strict=True):
        torch.testing.assert_close(got, want)


def test_cuda_graphs_need_a_cuda_device():
    lm = _lm()
    for config in (
        CompileConfig("lstm", "cudagraphs"),
        CompileConfig("lstm", mode="reduce-overhead"),
    ):
        line = compile_bilm(lm.bilm, config, lambda: pytest.fail("no trial without CUDA"))
        assert line == "compile: eager, CUDA graphs need a CUDA device (the model is on cpu)"
    assert compile_bilm(lm.bilm, CompileConfig(), lambda: None) == "compile: none (eager)"
    assert "forward" not in vars(lm.bilm.lstm)


def test_compile_config_names_the_key_of_a_bad_value():
    with pytest.raises(ValueError, match="compile.target"):
        CompileConfig(target="everything")
    with pytest.raises(ValueError, match="compile.backend"):
        CompileConfig(backend="tvm")
