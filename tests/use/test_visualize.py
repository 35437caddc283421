"""Per-layer maps of a word's contexts: the scores against hand computations, the files written."""

import json
import math

import pytest
import torch

from elmo_train.demo.corpus import DEMO_WORDS, corpus_path
from elmo_train.errors import UserError
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import preset
from elmo_train.use.embedder import Embedder
from elmo_train.use.separation import (
    chance_accuracy,
    cosine_distances,
    kmeans,
    nearest_neighbour_accuracy,
    pca_2d,
    silhouette,
)
from elmo_train.use.similarity import cosine_similarities
from elmo_train.use.visualize import (
    DEMO_PER_SENSE,
    context_vectors,
    demo_frame,
    demo_occurrences,
    layer_names,
    plot,
    with_mean,
    word_map,
    write_html,
    write_json,
)

LINES = [
    "the muddy bank of the river was steep .",
    "she paid the bank a large fee .",
    "no word here .",
    "the bank approved the loan and the bank grew .",
    "ducks sat on the grassy bank .",
]
SENSES = ["river", "finance", "none", "finance", "river"]


@pytest.fixture(scope="module")
def embedder():
    torch.manual_seed(0)
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", "the", "bank", "river", "."])
    return Embedder(LanguageModel(preset("tiny"), vocab_size=len(vocab)).bilm)


def line_distances(positions: list[float]) -> torch.Tensor:
    x = torch.tensor(positions, dtype=torch.float64)
    return (x.unsqueeze(0) - x.unsqueeze(1)).abs()


def test_silhouette_equals_a_hand_computation():
    # Points 0, 1 | 4, 5: a = 1 for each; b = 4.5, 3.5, 3.5, 4.5; s = 7/9, 5/7, 5/7, 7/9.
    assert silhouette(line_distances([0, 1, 4, 5]), ["a", "a", "b", "b"]) == pytest.approx(
        47 / 63, abs=1e-12
    )
    # Mislabelled, 0 | 1 4 | 5 as a b b a: a = 5, 3, 3, 5 and b = 2.5 each; s = -1/2, -1/6, ...
    mixed = silhouette(line_distances([0, 1, 4, 5]), ["a", "b", "b", "a"])
    assert mixed == pytest.approx((-0.5 - 1 / 6 - 1 / 6 - 0.5) / 4, abs=1e-12)


def test_silhouette_of_a_singleton_or_of_identical_points_is_zero():
    # The singleton c scores 0; a and b as hand-computed: a = 1, b = min(3.5, 9.5) for 0 ...
    distances = line_distances([0, 1, 4, 5, 10])
    labels = ["a", "a", "b", "b", "c"]
    per_item = [
        (4.5 - 1) / 4.5,  # 0: b = min(mean(4, 5), 10)
        (3.5 - 1) / 3.5,  # 1: b = min(mean(3, 4), 9)
        (3.5 - 1) / 3.5,  # 4: b = min(mean(4, 3), 6)
        (4.5 - 1) / 4.5,  # 5: b = min(mean(5, 4), 5)
        0.0,
    ]
    assert silhouette(distances, labels) == pytest.approx(sum(per_item) / 5, abs=1e-12)
    assert silhouette(torch.zeros(4, 4, dtype=torch.float64), ["a", "a", "b", "b"]) == 0.0


def test_nearest_neighbour_accuracy_splits_ties_evenly():
    # Similarities: 0's neighbours 1 and 2 tie (labels a, b): 1/2; 1 -> 0 (a): 1; 2 -> 3 (b): 1;
    # 3 -> 2 (b): 1.
    similarities = torch.tensor(
        [
            [1.0, 0.9, 0.9, 0.1],
            [0.9, 1.0, 0.2, 0.3],
            [0.9, 0.2, 1.0, 0.95],
            [0.1, 0.3, 0.95, 1.0],
        ]
    )
    labels = ["a", "a", "b", "b"]
    assert nearest_neighbour_accuracy(similarities, labels) == pytest.approx(3.5 / 4, abs=1e-12)
    # All equally near: the chance accuracy, (1/2 + 1/2 + 0) / 3 for labels a a b.
    assert chance_accuracy(["a", "a", "b"]) == pytest.approx(1 / 3, abs=1e-12)
    assert nearest_neighbour_accuracy(torch.ones(3, 3), ["a", "a", "b"]) == pytest.approx(1 / 3)


def test_cosine_distances_snap_rounding_to_zero():
    v = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0 + 1e-7], [-1.0, -2.0, -3.0]])
    d = cosine_distances(v)
    assert d[0, 1] == 0.0 and d[1, 0] == 0.0
    assert d[0, 2] == pytest.approx(2.0, abs=1e-12)


def test_kmeans_finds_separated_clusters_numbered_by_first_appearance():
    points = torch.tensor([[10.0, 0.0], [0.0, 0.0], [0.0, 2.0], [10.0, 2.0], [11.0, 1.0]])
    assignment, inertia = kmeans(points, 2, seed=3)
    assert assignment == [0, 1, 1, 0, 0]
    # Centroids (0, 1) and (31/3, 1): squared distances 1 + 1, and 1/9+1, 1/9+1, 4/9.
    assert inertia == pytest.approx(2 + (1 / 9 + 1) * 2 + 4 / 9, abs=1e-9)
    assert kmeans(points, 2, seed=3) == (assignment, inertia)
    assert kmeans(points, 5, seed=0)[1] == pytest.approx(0.0, abs=1e-12)


def test_pca_keeps_distances_of_points_on_a_plane_and_fixes_signs():
    generator = torch.Generator().manual_seed(0)
    flat = torch.randn(7, 2, generator=generator, dtype=torch.float64)
    basis, _ = torch.linalg.qr(torch.randn(5, 2, generator=generator, dtype=torch.float64))
    points = flat @ basis.T + 3.0  # (7, 5): a shifted, rotated plane
    coordinates = pca_2d(points)
    assert torch.allclose(torch.cdist(coordinates, coordinates), torch.cdist(flat, flat))
    assert torch.equal(pca_2d(points), coordinates)
    # A flipped input gives the same picture up to the sign convention: identical here.
    assert torch.allclose(pca_2d(-points), pca_2d(points)) or torch.allclose(
        pca_2d(-points), -pca_2d(points)
    )
    line = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [3.0, 3.0, 3.0]])
    on_line = pca_2d(line)
    assert torch.equal(on_line[:, 1], torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(on_line[:, 0].diff().abs(), torch.tensor([3**0.5, 2 * 3**0.5]).double())


def test_layer_names_and_mean():
    assert layer_names(3) == ["token layer", "LSTM layer 1", "LSTM layer 2", "mean of layers"]
    v = torch.arange(12.0).reshape(3, 2, 2)
    assert torch.equal(with_mean(v)[-1], v.mean(dim=0))


def test_demo_occurrences_are_held_out_labelled_minimal_pairs():
    train = set(corpus_path("train").read_text(encoding="utf-8").splitlines())
    assert demo_frame() == "{agent} {action} the {adjective} {word} {detail} {scene} ."
    for word, senses in DEMO_WORDS.items():
        sentences, labels = demo_occurrences(word)
        assert labels == [s for s in senses for _ in range(DEMO_PER_SENSE)]
        assert all(s[s.index(word) - 2] == "the" and s[-1] == "." for s in sentences)
        lines = {" ".join(s) for s in sentences}
        assert not lines & train and len(lines) == len(sentences)
    assert demo_occurrences("bank") == demo_occurrences("bank")
    with pytest.raises(UserError, match="not a demo word"):
        demo_occurrences("river")


def test_word_map_scores_every_layer_and_the_token_layer_is_chance(embedder):
    sentences = [line.split() for line in LINES]
    result = word_map(embedder, sentences, "bank", SENSES)
    assert [c.sentence for c in result.contexts] == [0, 1, 3, 4]
    assert result.repeats == 1  # line 4's second "bank"
    assert [layer.name for layer in result.layers] == layer_names(embedder.n_layers)
    token = result.layers[0]
    assert token.context_free and token.silhouette == 0.0
    assert token.nn_accuracy == pytest.approx(result.chance_accuracy, abs=1e-12)
    assert torch.equal(token.points, torch.zeros(4, 2, dtype=torch.float64))
    for layer in result.layers[1:]:
        assert not layer.context_free and layer.points.shape == (4, 2)
        assert -1.0 <= layer.silhouette <= 1.0 and 0.0 <= layer.nn_accuracy <= 1.0
    # Each panel scores its own layer's vectors, the last the mean of the layers.
    unit = torch.nn.functional.normalize(
        with_mean(context_vectors(embedder, result.contexts)).double(), dim=2
    )
    for layer, vectors in zip(result.layers, unit, strict=True):
        assert layer.silhouette == pytest.approx(
            silhouette(cosine_distances(vectors), result.labels), abs=1e-9
        )
        assert layer.nn_accuracy == pytest.approx(
            nearest_neighbour_accuracy(cosine_similarities(vectors), result.labels), abs=1e-9
        )
    clustered = word_map(embedder, sentences, "bank", None, clusters=2)
    assert clustered.clustered and set(clustered.labels) == {"cluster 1", "cluster 2"}
    assert clustered.labels[0] == "cluster 1"


def test_word_map_bad_input_is_one_clear_error(embedder):
    sentences = [line.split() for line in LINES]
    with pytest.raises(UserError, match="occurs in 2 lines; a map and its scores need at least 3"):
        word_map(embedder, sentences[:2], "bank", SENSES[:2])
    with pytest.raises(UserError, match="label 'river'; separating labels needs at least two"):
        word_map(embedder, sentences, "bank", ["river"] * 5)
    with pytest.raises(UserError, match="line 2 contains 'bank' but its label is empty"):
        word_map(embedder, sentences, "bank", ["river", "", "x", "finance", "river"])
    with pytest.raises(UserError, match="--clusters 4: use 2 to 3 for 4 occurrences"):
        word_map(embedder, sentences, "bank", None, clusters=4)


def test_files_picture_page_and_json(embedder, tmp_path):
    sentences = [line.split() for line in LINES]
    result = word_map(embedder, sentences, "bank", SENSES)
    assert plot(result, tmp_path / "a" / "map.png").read_bytes()[:4] == b"\x89PNG"
    page = write_html(result, tmp_path / "map.html").read_text(encoding="utf-8")
    assert "http" not in page and "<script src" not in page  # self-contained: nothing fetched
    assert page.count("<svg") == len(result.layers)
    assert page.count("<circle") == 4 * len(result.layers)
    assert page.count('<circle cx="150.0" cy="150.0"') == 4  # the token layer: all centred
    assert "line 2 [finance]: she paid the bank a large fee ." in page
    data = json.loads(write_json(result, tmp_path / "map.json").read_text(encoding="utf-8"))
    assert [layer["name"] for layer in data["layers"]] == layer_names(embedder.n_layers)
    assert data["layers"][0]["context_free"] and data["layers"][0]["silhouette"] == 0.0
    assert [o["line"] for o in data["occurrences"]] == [1, 2, 4, 5]
    assert [o["label"] for o in data["occurrences"]] == ["river", "finance", "finance", "river"]
    assert all(len(o["points"]) == len(result.layers) for o in data["occurrences"])
    assert math.isclose(data["chance_nn_accuracy"], 1 / 3)


# --- a trained model: the demo's bank -------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    """A tiny biLM trained 100 steps on the built-in corpus (about 30 s on one thread)."""
    from train_helpers import compose_train_config

    from elmo_train.train import train

    directory = tmp_path_factory.mktemp("demo_model")
    overrides = [
        f"data.cache_dir={directory / 'cache'}",
        "data.batch_size=16",
        "data.num_workers=0",
        "trainer.max_steps=100",
        f"run_dir={directory / 'run'}",
        "demo=false",
        "test=false",
        "callbacks.progress_bar=null",
    ]
    train(compose_train_config(overrides))
    return directory / "run" / "model"


@pytest.mark.slow
def test_a_trained_model_tells_the_banks_apart_in_its_lstm_layers_not_its_token_layer(
    demo_model,
):
    sentences, senses = demo_occurrences("bank")
    result = word_map(Embedder.from_model_dir(demo_model), sentences, "bank", senses)
    token, *contextual = result.layers
    assert token.context_free and token.silhouette == 0.0
    assert token.nn_accuracy == pytest.approx(result.chance_accuracy, abs=1e-12)
    # The default model (elmo train, 1,368 steps) scores silhouettes 0.14 and 1-NN 0.88-0.93;
    # random weights pass too: the pairs differ in their words (see `demo_occurrences`).
    for layer in contextual:
        assert layer.silhouette > 0.05, layer
        assert layer.nn_accuracy > result.chance_accuracy + 0.25, layer
