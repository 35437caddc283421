import math

import pytest
import torch
import torch.nn.functional as F

from elmo_train.model.config import SoftmaxConfig
from elmo_train.model.softmax import (
    AdaptiveSoftmax,
    FullSoftmax,
    SampledSoftmax,
    build_output_layer,
    expected_count,
    log_uniform_prob,
    sample_log_uniform,
)

H = 32


def _layer(kind: str, vocab_size: int, **overrides):
    config = SoftmaxConfig(kind=kind, cutoffs=[100, 400], eval_chunk_size=64, **overrides)
    return build_output_layer(config, H, vocab_size)


def _reference_nll(layer, hidden, targets):
    return -layer.log_probs(hidden).gather(1, targets[:, None])[:, 0]


def test_build_output_layer_kinds_parameters_and_init():
    full, sampled = _layer("full", 1000), _layer("sampled", 1000)
    assert type(full) is FullSoftmax and type(sampled) is SampledSoftmax
    assert isinstance(_layer("adaptive", 1000), AdaptiveSoftmax)
    # softmax.safetensors stores `weight` and `bias`; sampled and full weights interchange.
    assert {n: p.shape for n, p in sampled.named_parameters()} == {
        "weight": (1000, H),
        "bias": (1000,),
    }
    full.load_state_dict(sampled.state_dict())
    assert full.weight.std().item() == pytest.approx(1 / math.sqrt(H), rel=0.05)
    assert torch.equal(full.bias, torch.zeros(1000))
    with pytest.raises(ValueError, match="model.softmax.kind"):
        _layer("hierarchical", 1000)


def test_sampled_with_every_class_as_candidate_is_the_full_softmax():
    hidden, targets = torch.randn(16, H), torch.randint(0, 50, (16,))
    full = _layer("full", 50)
    expected = full(hidden, targets)
    expected.sum().backward()
    for n_negatives in (50, 8192):
        sampled = _layer("sampled", 50, n_negatives=n_negatives)
        sampled.load_state_dict(full.state_dict())
        loss = sampled(hidden, targets)
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
        loss.sum().backward()
        torch.testing.assert_close(sampled.weight.grad, full.weight.grad, rtol=1e-5, atol=1e-6)


def test_sampled_loss_removes_accidental_hits_and_repeats():
    vocab, n_negatives, n = 20, 12, 6
    layer = _layer("sampled", vocab, n_negatives=n_negatives)
    torch.manual_seed(1)
    ids, keep = layer.sample_negatives(torch.device("cpu"))
    negatives = ids[keep].tolist()
    assert len(negatives) < n_negatives  # the draw has repeats, which must count once
    targets = torch.tensor(negatives[:4] + [vocab - 1, vocab - 2])  # four accidental hits
    hidden = torch.randn(n, H)

    torch.manual_seed(1)  # the forward draws the same sample
    loss = layer(hidden, targets)

    with torch.no_grad():
        logits = F.linear(hidden, layer.weight, layer.bias)  # (N, V)
        log_q = expected_count(torch.arange(vocab), n_negatives, vocab).log().float()
        corrected = logits - log_q
        for row, target in enumerate(targets.tolist()):
            others = [k for k in set(negatives) if k != target]
            row_logits = corrected[row, [target, *others]]
            expected = -row_logits.log_softmax(dim=0)[0]
            assert loss[row].item() == pytest.approx(expected.item(), rel=1e-5)


def test_log_uniform_prob_is_the_zipfian_formula():
    vocab = 1000
    p = log_uniform_prob(torch.arange(vocab), vocab)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert p[0].item() == pytest.approx(math.log(2) / math.log(vocab + 1))
    assert p[9].item() == pytest.approx(math.log(11 / 10) / math.log(vocab + 1))
    assert torch.all(p[1:] < p[:-1])


def test_sampler_inclusion_frequency_matches_expected_count():
    vocab, n_draws, trials = 50, 10, 20000
    included = torch.zeros(vocab)
    for _ in range(trials):
        ids, keep = sample_log_uniform(n_draws, vocab, torch.device("cpu"))
        included[ids[keep]] += 1
    frequency = included / trials
    q = expected_count(torch.arange(vocab), n_draws, vocab).float()
    stderr = (q * (1 - q) / trials).sqrt()
    assert torch.all((frequency - q).abs() < 4.5 * stderr), (frequency - q) / stderr


def test_sampler_shape_is_fixed_and_negatives_unique():
    ids, keep = sample_log_uniform(64, 100, torch.device("cpu"))
    assert ids.shape == keep.shape == (64,)
    assert ids.dtype == torch.long and keep.dtype == torch.bool
    assert 0 <= ids.min() and ids.max() < 100
    assert len(set(ids[keep].tolist())) == int(keep.sum()) == len(set(ids.tolist()))


def test_sampled_training_loss_needs_no_host_sync():
    # Meta tensors hold no data: .item(), numpy or a data-dependent shape would raise here.
    layer = _layer("sampled", 1000, n_negatives=64).to("meta")
    hidden = torch.randn(8, H, device="meta")
    targets = torch.randint(0, 1000, (8,), device="meta")
    ids, keep = layer.sample_negatives(hidden.device)
    assert ids.device.type == keep.device.type == "meta" and ids.shape == (64,)
    nll = layer.training_nll(hidden, targets)
    assert nll.shape == (8,) and nll.dtype == torch.float32


@pytest.mark.parametrize("kind", ["full", "sampled", "adaptive"])
def test_eval_nll_is_exact_full_softmax_in_chunks(kind):
    layer = _layer(kind, 1000, n_negatives=16).eval()
    hidden, targets = torch.randn(40, H), torch.randint(0, 1000, (40,))
    targets[:3] = torch.tensor([0, 999, 640])  # first row, last row, a chunk boundary
    nll = layer(hidden, targets)
    assert nll.shape == (40,) and nll.dtype == torch.float32
    torch.testing.assert_close(nll, _reference_nll(layer, hidden, targets))
    if kind != "adaptive":
        logits = F.linear(hidden, layer.weight, layer.bias)
        torch.testing.assert_close(nll, F.cross_entropy(logits, targets, reduction="none"))


@pytest.mark.parametrize("kind", ["full", "sampled", "adaptive"])
def test_log_probs_is_a_distribution(kind):
    log_probs = _layer(kind, 1000).log_probs(torch.randn(8, H))
    assert log_probs.shape == (8, 1000)
    torch.testing.assert_close(log_probs.logsumexp(dim=-1), torch.zeros(8))


@pytest.mark.parametrize("kind", ["full", "sampled", "adaptive"])
@pytest.mark.parametrize("training", [True, False])
def test_loss_is_float32_under_bf16_autocast(kind, training):
    layer = _layer(kind, 1000, n_negatives=16).train(training)
    hidden, targets = torch.randn(8, H), torch.randint(0, 1000, (8,))
    torch.manual_seed(1)  # sampled: the same negatives in both calls
    with torch.autocast("cpu", dtype=torch.bfloat16):
        nll = layer(hidden.bfloat16(), targets)
    assert nll.dtype == torch.float32
    torch.manual_seed(1)
    torch.testing.assert_close(nll, layer(hidden.bfloat16().float(), targets))


def test_adaptive_gives_every_parameter_a_gradient_when_tails_are_unused():
    layer = _layer("adaptive", 1000)
    assert layer.adaptive.cutoffs == [100, 400, 1000]
    targets = torch.randint(0, 100, (16,))  # all in the head: both tail clusters unused
    layer(torch.randn(16, H), targets).sum().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None, name


def test_adaptive_keeps_a_tail_when_no_cutoff_fits_the_vocabulary():
    layer = build_output_layer(SoftmaxConfig(kind="adaptive"), H, 50)  # cutoffs all >= 50
    assert layer.adaptive.cutoffs == [25, 50]
    torch.testing.assert_close(layer.log_probs(torch.randn(4, H)).exp().sum(-1), torch.ones(4))


def test_sampled_gradient_reaches_only_sampled_and_target_rows():
    layer = _layer("sampled", 200, n_negatives=20)
    hidden, targets = torch.randn(6, H), torch.tensor([0, 1, 2, 150, 151, 199])
    torch.manual_seed(2)
    ids, _ = layer.sample_negatives(torch.device("cpu"))
    torch.manual_seed(2)
    layer(hidden, targets).sum().backward()

    touched = torch.zeros(200, dtype=torch.bool)
    touched[ids] = True
    touched[targets] = True
    row_norm = layer.weight.grad.norm(dim=1)
    assert torch.all(row_norm[touched] > 0)
    assert torch.all(row_norm[~touched] == 0)
    assert torch.all(layer.bias.grad[~touched] == 0)


def test_sampled_training_lowers_the_exact_nll():
    layer = _layer("sampled", 100, n_negatives=10)
    hidden, targets = torch.randn(64, H), torch.randint(0, 100, (64,))
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)

    def exact_nll():
        with torch.no_grad():
            return layer.eval()(hidden, targets).mean().item()

    before = exact_nll()
    for _ in range(30):
        optimizer.zero_grad()
        layer.train()(hidden, targets).mean().backward()
        optimizer.step()
    assert exact_nll() < 0.7 * before


def test_sparse_gradient_holds_exactly_the_dense_gradient_of_touched_rows():
    sparse, dense = _layer("sampled", 200, n_negatives=20), _layer("sampled", 200, n_negatives=20)
    dense.load_state_dict(sparse.state_dict())
    sparse.sparse_grad = True
    hidden, targets = torch.randn(6, H), torch.tensor([0, 1, 1, 150, 151, 151])
    for layer in (sparse, dense):
        for seed in (3, 4):  # two calls accumulate, as the two directions of a step
            torch.manual_seed(seed)
            (layer(hidden, targets) * torch.arange(1.0, 7.0)).sum().backward()
            if seed == 3 and layer is sparse:
                # one entry per gathered row, repeats kept: N + S, whatever the data
                assert sparse.weight.grad._nnz() == sparse.bias.grad._nnz() == 6 + 20
    assert sparse.weight.grad.is_sparse and sparse.bias.grad.is_sparse
    torch.testing.assert_close(sparse.weight.grad.to_dense(), dense.weight.grad)
    torch.testing.assert_close(sparse.bias.grad.to_dense(), dense.bias.grad)
