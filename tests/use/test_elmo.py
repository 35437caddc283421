"""The Elmo module and ScalarMix: the mixing math, layer norms, boundaries, masks, grads, dropout."""

import inspect
import math
from pathlib import Path

import pytest
import torch

from elmo_train.formats.model_dir import save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import BiLM, LanguageModel
from elmo_train.model.chars import batch_to_ids, with_boundaries
from elmo_train.model.config import BiLMConfig, CharCNNConfig, LSTMConfig, preset
from elmo_train.use.elmo import Elmo, ScalarMix
from elmo_train.use.embedder import Embedder

SENTENCES = [["the", "bank", "of", "the", "river"], ["a", "bank"], ["rates", "rose", "again"]]


def tiny_bilm() -> BiLM:
    config = BiLMConfig(
        char_cnn=CharCNNConfig(embedding_dim=4, filters=[[1, 4], [2, 8]], n_highway=1),
        lstm=LSTMConfig(dim=16, projection_dim=8, n_layers=2, cell_clip=3.0, proj_clip=3.0),
        dropout=0.3,
    )
    return BiLM(config)


def elmo_on(bilm: BiLM, num_output_representations: int, **kwargs) -> Elmo:
    """AllenNLP's `module=` hook: an Elmo over a biLM built in memory."""
    return Elmo(None, None, num_output_representations, module=bilm, **kwargs)


def test_scalar_mix_is_gamma_times_softmax_weighted_sum():
    layers = [torch.randn(2, 3, 4) for _ in range(3)]
    s = [0.1, -0.5, 2.0]
    mix = ScalarMix(3, initial_scalar_parameters=s)
    with torch.no_grad():
        mix.gamma.fill_(1.7)
    z = sum(math.exp(v) for v in s)
    expected = 1.7 * sum(math.exp(v) / z * h for v, h in zip(s, layers, strict=True))
    torch.testing.assert_close(mix(layers), expected, rtol=1e-6, atol=1e-6)


def test_token_layer_norm_normalises_each_position_and_keeps_padding_zero():
    layers = [torch.randn(2, 4, 6) * 5 + 3 for _ in range(2)]
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    mix = ScalarMix(2, layer_norm="token", initial_scalar_parameters=[0.0, -1e4], trainable=False)
    out = mix(layers, mask)  # selects layer 0, normalised
    x = layers[0]
    expected = (x - x.mean(-1, keepdim=True)) / torch.sqrt(
        x.var(-1, unbiased=False, keepdim=True) + 1e-5
    )
    torch.testing.assert_close(out[mask], expected[mask], rtol=1e-5, atol=1e-5)
    assert out[~mask].abs().max() == 0


def test_allennlp_layer_norm_uses_one_mean_and_std_over_unmasked_elements():
    x = torch.randn(2, 4, 6) * 5 + 3
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    mix = ScalarMix(1, layer_norm="allennlp")
    real = x[mask]  # (5, 6): statistics over these 30 numbers only
    expected = (x - real.mean()) / torch.sqrt(real.var(unbiased=False) + 1e-13)
    torch.testing.assert_close(mix([x], mask), expected, rtol=1e-5, atol=1e-5)
    # Padding values change nothing at real positions; a real value changes every position.
    changed = x.clone()
    changed[0, 3] += 100.0
    torch.testing.assert_close(mix([changed], mask)[mask], mix([x], mask)[mask])
    changed[0, 0, 0] += 100.0
    assert not torch.allclose(mix([changed], mask)[1, 0], mix([x], mask)[1, 0])


def test_batch_to_ids_has_no_boundaries():
    ids = batch_to_ids(SENTENCES)
    assert ids.shape == (3, 5, 50)
    torch.testing.assert_close(ids[0], batch_to_ids(with_boundaries(SENTENCES))[0, 1:-1])
    assert ids[1, 2:].abs().sum() == 0  # padding tokens are all zero


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_selected_layer_equals_the_embedders_layer(layer):
    bilm = tiny_bilm()
    selector = [-9e10] * 3
    selector[layer] = 1.0
    elmo = elmo_on(bilm, 1, dropout=0.5, scalar_mix_parameters=selector).eval()
    out = elmo(batch_to_ids(SENTENCES))
    expected = list(Embedder(bilm).embed(SENTENCES))
    for row, sentence in enumerate(SENTENCES):
        got = out["elmo_representations"][0][row, : len(sentence)]
        torch.testing.assert_close(got, expected[row][layer], rtol=1e-5, atol=1e-5)
        assert out["elmo_representations"][0][row, len(sentence) :].abs().sum() == 0


def test_shapes_mask_and_boundaries():
    bilm = tiny_bilm()
    ids = batch_to_ids(SENTENCES)  # (3, 5, 50)
    out = elmo_on(bilm, 2).eval()(ids)
    assert len(out["elmo_representations"]) == 2
    assert out["elmo_representations"][1].shape == (3, 5, 16)
    assert out["mask"].tolist() == [[True] * 5, [True] * 2 + [False] * 3, [True] * 3 + [False] * 2]

    kept = elmo_on(bilm, 1, keep_sentence_boundaries=True).eval()(ids)
    assert kept["elmo_representations"][0].shape == (3, 7, 16)
    assert kept["mask"].sum(dim=1).tolist() == [7, 4, 5]  # each sentence + <S> + </S>
    # Without boundaries the output is the kept output's inner positions.
    inner = kept["elmo_representations"][0][:, 1:-1] * out["mask"].unsqueeze(-1)
    torch.testing.assert_close(inner, elmo_on(bilm, 1).eval()(ids)["elmo_representations"][0])


def test_stateless_and_leading_dims():
    elmo = elmo_on(tiny_bilm(), 1).eval()
    alone = elmo(batch_to_ids(SENTENCES[1:2]))["elmo_representations"][0][0]
    batched = elmo(batch_to_ids(SENTENCES))["elmo_representations"][0][1, :2]
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)
    ids = batch_to_ids(SENTENCES + SENTENCES[::-1]).view(2, 3, 5, 50)
    out = elmo(ids)
    assert out["elmo_representations"][0].shape == (2, 3, 5, 16)
    assert out["mask"].shape == (2, 3, 5)
    torch.testing.assert_close(
        out["elmo_representations"][0][1, 2, :5], elmo(ids[0])["elmo_representations"][0][0]
    )


@pytest.mark.parametrize("requires_grad", [False, True])
def test_frozen_or_trainable_bilm(requires_grad):
    elmo = elmo_on(tiny_bilm(), 2, requires_grad=requires_grad, dropout=0.0)
    out = elmo(batch_to_ids(SENTENCES))
    sum(r.sum() for r in out["elmo_representations"]).backward()
    bilm_grads = [p.grad for p in elmo.bilm.parameters()]
    if requires_grad:
        assert all(g is not None for g in bilm_grads)
        assert any(g.abs().sum() > 0 for g in bilm_grads)
    else:
        assert all(g is None for g in bilm_grads)
    for mix in elmo.scalar_mixes:  # the mixes always learn unless fixed
        assert mix.scalar_parameters.grad.abs().sum() > 0
        assert mix.gamma.grad.abs().sum() > 0


def test_fixed_scalar_mix_parameters_are_frozen():
    elmo = elmo_on(tiny_bilm(), 1, scalar_mix_parameters=[0.0, 1.0, 2.0])
    assert not any(p.requires_grad for p in elmo.parameters())


def test_dropout_only_in_training_and_never_inside_the_bilm():
    elmo = elmo_on(tiny_bilm(), 1, dropout=0.5)
    ids = batch_to_ids(SENTENCES)
    elmo.eval()
    first = elmo(ids)["elmo_representations"][0]
    torch.testing.assert_close(elmo(ids)["elmo_representations"][0], first)
    elmo.train()
    assert elmo.training and not elmo.bilm.training
    dropped = elmo(ids)["elmo_representations"][0]
    real = elmo(ids)["mask"]
    zeroed = (dropped[real] == 0) & (first[real] != 0)
    assert 0.3 < zeroed.float().mean() < 0.7
    kept = dropped[real] != 0
    torch.testing.assert_close(dropped[real][kept], 2.0 * first[real][kept])  # inverted dropout


# --- AllenNLP's call: Elmo(options_file, weight_file, num_output_representations, ...) ---------

ALLENNLP_SIGNATURE = [
    "options_file",
    "weight_file",
    "num_output_representations",
    "requires_grad",
    "do_layer_norm",
    "dropout",
    "vocab_to_cache",
    "keep_sentence_boundaries",
    "scalar_mix_parameters",
    "module",
]


@pytest.fixture
def bilm_files(tmp_path):
    """A random tiny model saved as a model directory: its options.json and weights.hdf5."""
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", "bank"])
    model = save_model_dir(LanguageModel(preset("tiny"), len(vocab)), vocab, tmp_path / "model")
    return model / "options.json", model / "weights.hdf5"


def test_signature_is_allennlps():
    parameters = inspect.signature(Elmo).parameters
    assert list(parameters)[: len(ALLENNLP_SIGNATURE)] == ALLENNLP_SIGNATURE
    assert parameters["dropout"].default == 0.5 and parameters["requires_grad"].default is False
    assert list(inspect.signature(Elmo.forward).parameters) == ["self", "inputs", "word_inputs"]


def test_allennlp_call_gives_the_embedders_vectors(bilm_files):
    options_file, weight_file = bilm_files
    expected = list(Embedder.from_files(options_file, weight_file).embed(SENTENCES))
    for layer in range(3):
        selector = [-9e10] * 3
        selector[layer] = 1.0
        elmo = Elmo(options_file, weight_file, 1, dropout=0.5, requires_grad=False,
                    scalar_mix_parameters=selector).eval()  # fmt: skip
        out = elmo(batch_to_ids(SENTENCES))
        for row, sentence in enumerate(SENTENCES):
            got = out["elmo_representations"][0][row, : len(sentence)]
            torch.testing.assert_close(got, expected[row][layer], rtol=1e-5, atol=1e-5)
    # The learned mix starts at equal weights and gamma 1: the mean of the layers.
    elmo = Elmo(options_file, weight_file, 2, dropout=0.5).eval()
    out = elmo(batch_to_ids(SENTENCES))
    assert not any(p.requires_grad for p in elmo.bilm.parameters())
    for row, sentence in enumerate(SENTENCES):
        for representation in out["elmo_representations"]:
            mean = expected[row].mean(dim=0)
            torch.testing.assert_close(
                representation[row, : len(sentence)], mean, rtol=1e-5, atol=1e-5
            )
    assert out["mask"].sum(dim=1).tolist() == [len(s) for s in SENTENCES]


def test_allennlp_options(bilm_files):
    options_file, weight_file = bilm_files
    ids = batch_to_ids(SENTENCES)
    allennlp_norm = Elmo(options_file, weight_file, 1, do_layer_norm=True).eval()
    assert allennlp_norm.scalar_mixes[0].layer_norm == "allennlp"
    ours = Elmo(options_file, weight_file, 1, layer_norm="allennlp").eval()
    torch.testing.assert_close(
        allennlp_norm(ids)["elmo_representations"][0], ours(ids)["elmo_representations"][0]
    )
    # vocab_to_cache / word_inputs only spare AllenNLP's char CNN: the vectors are the same.
    cached = Elmo(options_file, weight_file, 1, vocab_to_cache=["the", "bank"]).eval()
    word_ids = torch.ones(ids.shape[:2], dtype=torch.long)
    plain = Elmo(options_file, weight_file, 1).eval()
    torch.testing.assert_close(
        cached(ids, word_ids)["elmo_representations"][0], plain(ids)["elmo_representations"][0]
    )
    assert any(
        p.requires_grad
        for p in Elmo(options_file, weight_file, 1, requires_grad=True).bilm.parameters()
    )


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((None, None, 1), {}, "needs options_file and weight_file"),
        (("o.json", "w.hdf5", 1), {"module": "bilm"}, "not both"),
        (("o.json", "w.hdf5", 1), {"do_layer_norm": True, "layer_norm": "token"}, "do_layer_norm"),
    ],
)
def test_bad_arguments(args, kwargs, message):
    if kwargs.get("module"):
        kwargs["module"] = tiny_bilm()
    with pytest.raises(ValueError, match=message):
        Elmo(*args, **kwargs)


def test_readme_example_runs(tmp_path, monkeypatch):
    """The first Python block of README.md's "Use ELMo in your own model", run as written
    against a model directory at the path it names."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use ELMo in your own model", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", "sentence"])
    lm = LanguageModel(preset("tiny"), len(vocab))
    save_model_dir(lm, vocab, tmp_path / "runs" / "my_run" / "model")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    out = namespace["embeddings"]
    assert len(out["elmo_representations"]) == 2
    assert out["elmo_representations"][0].shape == (2, 3, 2 * lm.config.lstm.projection_dim)
    assert out["mask"].tolist() == [[True, True, True], [True, True, False]]
