"""The benchmark's reference (elmo_train/reference/allennlp_style.py) computes exactly our model's function.

This is what keeps `scripts/benchmark.py` honest: a speedup only counts if both sides compute
the same thing from the same weights, with both clips active.
"""

import dataclasses

import numpy as np
import pytest
import torch

from elmo_train.model.bilm import BiLM, LanguageModel
from elmo_train.model.config import BiLMConfig, preset
from elmo_train.reference import allennlp_style as reference_impl
from elmo_train.reference.workload import macs_per_token, make_batch, synthetic_types

CLIP = 0.5
V = 300


def _config() -> BiLMConfig:
    config = preset("tiny")
    config.dropout = 0.0
    config.lstm.cell_clip = config.lstm.proj_clip = CLIP
    config.softmax = dataclasses.replace(config.softmax, kind="sampled", n_negatives=64)
    return config


def _batch(n_types: int = 40) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    return make_batch(synthetic_types(n_types, rng), 3, 6, 1.0, rng)


def _activate_clips(model: torch.nn.Module) -> None:
    with torch.no_grad():  # large LSTM weights push |c| and |h| past the clip values
        for p in model.lstm.parameters():
            p.mul_(4.0)


def test_reference_matches_bilm_outputs_and_gradients_float64():
    ours = BiLM(_config()).double().train()
    _activate_clips(ours)
    ref = reference_impl.build_like(ours)
    fwd = _batch().fwd_chars
    tokens, layers, state = ours.run_streams(fwd, fwd.flip(1))
    ref_tokens, ref_layers = ref(fwd)

    assert layers[0].abs().max().item() == CLIP and state.c.abs().max().item() == CLIP
    torch.testing.assert_close(tokens[0], ref_tokens)
    for layer, ref_fwd, ref_bwd in zip(layers, *ref_layers, strict=True):
        torch.testing.assert_close(layer[0], ref_fwd)
        torch.testing.assert_close(layer[1], ref_bwd.flip(1))  # backward LM, sentence order

    weights = torch.randn_like(layers[-1][0], dtype=torch.double)
    (layers[-1][0] * weights + layers[-1][1] * weights.flip(1)).sum().backward()
    (ref_layers[0][-1] * weights + ref_layers[1][-1] * weights).sum().backward()
    ref_grads = reference_impl.grads_in_our_layout(ref)
    assert set(ref_grads) == {name for name, _ in ours.named_parameters()}
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, ref_grads[name], msg=name)


def test_reference_matches_language_model_loss_and_gradients_fp32():
    # fp32: our output layer computes in float32 whatever the model dtype.
    ours = LanguageModel(_config(), V).train()
    _activate_clips(ours.bilm)
    ref = reference_impl.build_like(ours).train()
    batch = _batch()

    replay: list = []
    with reference_impl.recorded_negatives(replay):
        loss = ours(batch).loss
    assert len(replay) == 2  # one set of negatives per direction
    ref.softmax.choice_func = reference_impl.replaying_choice(replay)
    ref_loss = ref(batch)
    torch.testing.assert_close(loss, ref_loss, atol=1e-4, rtol=1e-4)

    loss.backward()
    ref_loss.backward()
    ref_grads = reference_impl.grads_in_our_layout(ref)
    assert set(ref_grads) == {name for name, _ in ours.named_parameters()}
    for name, param in ours.named_parameters():
        scale = ref_grads[name].abs().max().item()
        torch.testing.assert_close(param.grad, ref_grads[name], atol=1e-4 * scale, rtol=0, msg=name)

    with torch.no_grad():  # eval: the exact full-softmax NLL on both sides
        torch.testing.assert_close(ours.eval()(batch).loss, ref.eval()(batch), atol=1e-4, rtol=1e-4)


def test_reference_sampler_draws_unique_ids_and_counts_tries():
    np.random.seed(0)
    ids, num_tries = reference_impl.choice(V, 64)
    assert len(set(ids.tolist())) == 64 and ids.min() >= 0 and ids.max() < V
    assert num_tries >= 64


def test_flop_count_of_elmo_small_matches_perf_notes():
    macs = macs_per_token(preset("elmo_small"), n_negatives=8192)
    assert 6 * macs["lstm"] / 1e6 == pytest.approx(28.3, abs=0.1)  # perf-cpu §1
    assert macs["char_cnn"] == sum(
        (51 - w) * w * 16 * n for w, n in preset("elmo_small").char_cnn.filters
    )
