"""Nearest contexts: the neighbour math on given vectors, then a real tiny biLM end to end."""

import pytest
import torch

from elmo_train.demo.corpus import DEMO_WORDS
from elmo_train.model.bilm import BiLM
from elmo_train.model.config import preset
from elmo_train.use.embedder import Embedder
from elmo_train.use.similarity import (
    Context,
    NearestContexts,
    cosine_similarities,
    demo_report,
    find_contexts,
    format_table,
    layer_neighbours,
    nearest_contexts,
    nearest_neighbours,
    snippet,
)

# Unit-norm directions: 0 and 1 close together, 2 and 3 close together, 1 nearer 2 than 0 is.
VECTORS = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])


def test_nearest_neighbour_is_never_itself():
    nearest, similarity = nearest_neighbours(cosine_similarities(VECTORS))
    assert nearest == [1, 2, 1, 2]
    assert similarity == pytest.approx([0.8, 0.96, 0.96, 0.8])


def test_cosine_ignores_length():
    scaled = VECTORS * torch.tensor([[1.0], [5.0], [0.1], [3.0]])
    torch.testing.assert_close(cosine_similarities(scaled), cosine_similarities(VECTORS))


def test_sense_accuracy_counts_same_sense_neighbours():
    layer = layer_neighbours(1, VECTORS, senses=["a", "a", "b", "b"])
    # nearest [1, 2, 1, 2]: 0 -> 1 same, 1 -> 2 other, 2 -> 1 other, 3 -> 2 same
    assert (layer.n_same_sense, layer.accuracy) == (2, 0.5)
    assert not layer.context_free
    assert layer_neighbours(1, VECTORS).accuracy is None


def test_identical_vectors_are_context_free():
    same = torch.tensor([0.3, -1.2, 0.5]).repeat(4, 1)
    rounding = same * (1 + 1e-7 * torch.arange(4.0)).unsqueeze(1)  # batch-shape rounding noise
    for vectors in (same, rounding):
        layer = layer_neighbours(0, vectors, senses=["a", "a", "b", "b"])
        assert layer.context_free and layer.nearest is None and layer.accuracy is None
        assert layer.similarity == [1.0] * 4
    assert not layer_neighbours(0, same * (1 + 1e-3 * torch.arange(4.0)).unsqueeze(1)).context_free


def test_chance_accuracy():
    def chance(senses):
        contexts = [Context(i, ["w"], 0, s) for i, s in enumerate(senses)]
        return NearestContexts("w", contexts, []).chance_accuracy

    assert chance(["a", "a", "a", "b", "b", "b"]) == pytest.approx(0.4)
    assert chance(["a", "a", "b"]) == pytest.approx(1 / 3)


def test_find_contexts_takes_the_first_occurrence_per_sentence():
    sentences = [["a", "bank", "by", "the", "bank"], ["no", "match"], ["Bank", "bank"]]
    contexts = find_contexts(sentences, "bank", senses=["x", "y", "z"])
    assert [(c.sentence, c.position, c.sense) for c in contexts] == [(0, 1, "x"), (2, 1, "z")]


def test_snippet_cuts_around_the_word():
    tokens = "one two three four five six seven eight nine ten eleven".split()
    assert snippet(Context(0, tokens, 5, None), radius=2) == "... four five [six] seven eight ..."
    assert snippet(Context(0, tokens, 0, None), radius=2) == "[one] two three ..."
    assert snippet(Context(0, tokens, 10, None), radius=20) == " ".join(tokens[:10]) + " [eleven]"


# --- a real tiny biLM with random weights -----------------------------------------------------

SENTENCES = [
    "the muddy bank of the river was steep .".split(),
    "she paid the bank a large fee .".split(),
    "nothing to see here .".split(),
    "the bank approved the loan and the bank smiled .".split(),
    "ducks sat on the grassy bank".split(),
]
SENSES = ["river", "finance", "none", "finance", "river"]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    torch.manual_seed(0)
    return Embedder(BiLM(preset("tiny")))


@pytest.fixture(scope="module")
def result(embedder) -> NearestContexts:
    # batch_size 2: sentences of different lengths land in differently shaped batches
    return nearest_contexts(embedder, SENTENCES, "bank", senses=SENSES, batch_size=2)


def test_structure(embedder, result):
    assert [(c.sentence, c.position) for c in result.contexts] == [(0, 2), (1, 3), (3, 1), (4, 5)]
    assert [c.sense for c in result.contexts] == ["river", "finance", "finance", "river"]
    assert [layer.layer for layer in result.layers] == [0, 1, 2] == list(range(embedder.n_layers))


def test_token_layer_is_context_free_and_lstm_layers_are_not(result):
    token, *lstm = result.layers
    assert token.context_free and token.similarity == [1.0] * 4 and token.accuracy is None
    for layer in lstm:
        assert not layer.context_free
        assert all(j != i for i, j in enumerate(layer.nearest))
        assert layer.accuracy == sum(
            result.contexts[j].sense == c.sense
            for c, j in zip(result.contexts, layer.nearest, strict=True)
        ) / len(result.contexts)


def test_neighbours_match_the_embedder_vectors(embedder, result):
    """The vector used is the word's own position in the Embedder's layer, not a neighbour's."""
    embeddings = list(embedder.embed(SENTENCES))
    for layer in result.layers[1:]:
        vectors = torch.stack(
            [embeddings[c.sentence][layer.layer, c.position] for c in result.contexts]
        )
        expected = torch.nn.functional.cosine_similarity(
            vectors.unsqueeze(1), vectors.unsqueeze(0), dim=-1
        ).fill_diagonal_(-2.0)
        assert layer.nearest == expected.argmax(dim=1).tolist()
        assert layer.similarity == pytest.approx(expected.max(dim=1).values.tolist(), abs=1e-5)


def test_selected_layers_and_errors(embedder):
    only = nearest_contexts(embedder, SENTENCES, "bank", layers=[2])
    assert [layer.layer for layer in only.layers] == [2]
    assert only.layers[0].accuracy is None
    with pytest.raises(ValueError, match="layers 0..2"):
        nearest_contexts(embedder, SENTENCES, "bank", layers=[3])
    with pytest.raises(ValueError, match="need at least 2"):
        nearest_contexts(embedder, SENTENCES, "loan")


def test_format_table(result):
    table = format_table(result)
    assert "layer 0 (token layer):" in table
    assert "sense-nearest-neighbour accuracy: n/a (context-free)" in table
    for layer in result.layers[1:]:
        assert f"layer {layer.layer} (LSTM layer {layer.layer}):" in table
        assert f"accuracy: {layer.accuracy:.2f} ({layer.n_same_sense}/4, chance 0.33)" in table
    assert "the muddy [bank] of the river" in table
    neighbour_lines = [line for line in table.splitlines() if "  -> " in line]
    assert len(neighbour_lines) == 2 * 4  # one per context in each LSTM layer


def test_format_table_without_senses(embedder):
    table = format_table(nearest_contexts(embedder, SENTENCES, "bank"))
    assert "accuracy" not in table
    assert "context-free" in table


def test_demo_report(embedder):
    report = demo_report(embedder)
    lines = report.splitlines()
    assert all(word in lines for word in DEMO_WORDS)  # one heading line per word
    assert f"mean over {len(DEMO_WORDS)} words (chance 0.40)" in report
    token_line, *lstm_lines = lines[-embedder.n_layers :]
    assert token_line.split() == ["layer", "0", "(token", "layer)", "n/a", "(context-free)"]
    for layer, line in enumerate(lstm_lines, start=1):
        fields = line.split()  # layer 1 (LSTM layer 1) MEAN WORD ACCURACY WORD ACCURACY ...
        assert fields[:5] == ["layer", str(layer), "(LSTM", "layer", f"{layer})"]
        assert fields[6::2] == list(DEMO_WORDS)
        per_word = [float(v) for v in fields[7::2]]
        assert float(fields[5]) == pytest.approx(sum(per_word) / len(per_word), abs=0.01)
