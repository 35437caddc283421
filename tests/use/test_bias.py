"""The association test: WEAT statistics by hand, the word-set files, contexts from a corpus."""

import json
import math
import random
import re

import pytest
import torch

from elmo_train.errors import UserError
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import preset
from elmo_train.use.bias import (
    TEMPLATES,
    Z_95,
    association_test,
    associations,
    collect_contexts,
    effect_sizes,
    effect_variance,
    permutation_p_value,
    plot,
    random_effects,
    template_sentences,
    write_json,
)
from elmo_train.use.embedder import Embedder
from elmo_train.use.visualize import layer_names
from elmo_train.use.word_sets import (
    AssociationTest,
    WordSet,
    builtin_tests,
    load_test,
    read_test,
)

SETS = """\
# a tiny test
X fruit: apple pear
Y tools: hammer saw
A sunny: warm
B dark: cold
"""


@pytest.fixture(scope="module")
def embedder():
    torch.manual_seed(0)
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", "the", "apple", "."])
    return Embedder(LanguageModel(preset("tiny"), vocab_size=len(vocab)).bilm)


def write(tmp_path, text: str, name: str = "sets.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the statistics ------------------------------------------------------------------------------

A, B = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
# s = cos(w, a) - cos(w, b): x1 -> 1, x2 -> 0, y1 -> 0, y2 -> -1.
X = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
Y = torch.tensor([[3.0, 3.0], [0.0, 0.5]])


def test_effect_size_equals_a_hand_computation():
    s = associations(torch.cat([X, Y]), A, B)
    assert torch.allclose(s, torch.tensor([1.0, 0.0, 0.0, -1.0], dtype=torch.float64))
    # mean_x - mean_y = 1; sample std of (1, 0, 0, -1) = sqrt(2/3): d = sqrt(3/2).
    d = effect_sizes(s, 2)
    assert float(d) == pytest.approx(math.sqrt(1.5), abs=1e-12)
    # Swapping A and B (or X and Y) negates it exactly.
    assert float(effect_sizes(associations(torch.cat([X, Y]), B, A), 2)) == -float(d)
    assert float(effect_sizes(associations(torch.cat([Y, X]), A, B), 2)) == -float(d)
    # No spread: 0, not a division by zero.
    assert float(effect_sizes(torch.zeros(4, dtype=torch.float64), 2)) == 0.0


def test_effect_variance_is_hedges_olkins():
    d = torch.tensor([0.0, 2.0], dtype=torch.float64)
    assert effect_variance(d, 8, 8).tolist() == pytest.approx([0.25, 0.25 + 4 / 32])


def test_permutation_p_value_by_hand():
    # s = (1, 0 | 0, -1): of the 6 splits into 2 + 2, two ({1, 0a}, {1, 0b}) reach the
    # observed difference 1.
    s = torch.tensor([1.0, 0.0, 0.0, -1.0], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    assert permutation_p_value(s, 2, 6, generator) == (pytest.approx(1 / 3, abs=1e-12), True)
    # Too many splits for the budget: sampled, (1 + hits) / (1 + n), near the exact value.
    p, exact = permutation_p_value(s, 2, 5, generator)
    assert not exact and 0 < p <= 1 and p * 6 == round(p * 6)
    large = torch.linspace(1.0, -1.0, 20, dtype=torch.float64)  # X holds the 10 largest
    p, exact = permutation_p_value(large, 10, 2_000, generator)
    assert not exact and p == pytest.approx(1 / 2_001)


def test_random_effects_by_hand():
    # Effects 1 and 3, variances 1: Q = 2, df = 1, C = 1, tau^2 = 1; weights 1/2 each.
    combined = random_effects(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0]))
    assert combined.effect == pytest.approx(2.0) and combined.tau2 == pytest.approx(1.0)
    assert combined.se_pooled == pytest.approx(1.0)
    assert (combined.low, combined.high) == pytest.approx((2 - Z_95 * 2**0.5, 2 + Z_95 * 2**0.5))
    # Less spread than the variances explain: tau^2 = 0, the inverse-variance mean.
    combined = random_effects(torch.tensor([1.0, 1.5]), torch.tensor([1.0, 3.0]))
    assert combined.tau2 == 0.0
    assert combined.effect == pytest.approx((1.0 + 1.5 / 3) / (1 + 1 / 3))
    # One draw: its own effect and the classic interval of Cohen's d.
    combined = random_effects(torch.tensor([0.5]), torch.tensor([0.25]))
    assert (combined.effect, combined.low) == pytest.approx((0.5, 0.5 - Z_95 * 0.5))


# --- word sets -----------------------------------------------------------------------------------


def test_builtin_tests_are_the_published_lists():
    sizes = {name: [len(load_test(name).sets[r].words) for r in "XYAB"] for name in builtin_tests()}
    assert sizes == {
        "career-family": [8, 8, 8, 8],
        "flowers-insects": [25, 25, 25, 25],
        "math-arts": [8, 8, 8, 8],
        "science-arts": [8, 8, 8, 8],
    }
    career = load_test("career-family")
    assert career.sets["X"].words[:3] == ("John", "Paul", "Mike")
    assert career.sets["B"].name == "family" and "relatives" in career.sets["B"].words
    assert all("Caliskan" in load_test(name).source for name in builtin_tests())
    assert load_test("science-arts").mapped(str.lower).sets["X"].words[4:6] == ("einstein", "nasa")


def test_reads_a_users_file_with_commas_and_any_order(tmp_path):
    test = read_test(write(tmp_path, "B dark: cold, night\nA: warm\n" + SETS.splitlines()[1]
                           + "\nY tools: hammer\n"))  # fmt: skip
    assert test.sets["A"].name == "A" and test.sets["B"].words == ("cold", "night")
    assert test.sets["X"].words == ("apple", "pear")
    assert load_test(str(tmp_path / "sets.txt")).sets == test.sets
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + SETS.encode())  # as Windows editors save it
    assert read_test(bom).sets["X"].words == ("apple", "pear")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SETS.replace("A sunny: warm", "A sunny:"), "sets.txt:4: the A set (sunny) is empty"),
        (SETS.replace("B dark: cold\n", ""), "sets.txt: no B set"),
        (SETS + "X again: kiwi\n", "sets.txt:6: a second X set"),
        (SETS.replace("hammer saw", "hammer pear"), "'pear' in both X and Y"),
        (SETS.replace("hammer saw", "saw saw"), "'saw' listed twice in tools"),
        (SETS + "fruit apple\n", "sets.txt:6: expected 'ROLE name: word word ...'"),
    ],
)
def test_bad_word_sets_are_one_clear_error(tmp_path, text, message):
    with pytest.raises(UserError, match=re.escape(message)):
        read_test(write(tmp_path, text))


def test_lowercasing_that_merges_two_words_of_a_set_is_refused(tmp_path):
    test = read_test(write(tmp_path, SETS.replace("hammer saw", "Saw saw")))
    with pytest.raises(UserError, match=re.escape("'saw' listed twice in tools")):
        test.mapped(str.lower)


def test_unknown_test_names_the_builtins():
    with pytest.raises(UserError, match="neither a built-in test .*career-family.* nor a file"):
        load_test("career")


# --- contexts ------------------------------------------------------------------------------------


def test_contexts_sample_the_corpus_and_top_up_with_templates(tmp_path):
    lines = [f"the apple number {i} ." for i in range(50)] + ["a pear .", "the Hammer ."]
    corpus = write(tmp_path, "\n".join(lines) + "\n", "corpus.txt")
    contexts, stats, hints = collect_contexts(
        [corpus], ["apple", "pear", "Hammer", "saw"], 5, 0, False
    )
    apple = contexts["apple"]
    assert (apple.found, apple.from_corpus, apple.templates) == (50, 5, 0)
    assert len({" ".join(s) for s in apple.sentences}) == 5
    assert all(" ".join(s) in lines for s in apple.sentences)
    assert (
        collect_contexts([corpus], ["apple"], 5, 0, False)[0]["apple"].sentences == apple.sentences
    )
    other_seed = collect_contexts([corpus], ["apple"], 5, 1, False)[0]["apple"].sentences
    assert other_seed != apple.sentences
    pear = contexts["pear"]
    assert (pear.found, pear.from_corpus, pear.templates) == (1, 1, 4)
    assert pear.sentences[1:] == template_sentences("pear", 4, lowercase=False)
    saw = contexts["saw"]
    assert (saw.found, saw.templates) == (0, 5)
    assert stats.sentences == 52
    assert hints == {"Hammer": 0}
    # Templates keep the word's own form and capitalise the sentence unless lowercase.
    assert template_sentences("Amy", 6, False)[0] == ["This", "is", "Amy", "."]
    assert template_sentences("amy", 6, True)[4] == ["amy", "is", "here", "."]
    assert len(template_sentences("x", 100, True)) == len(TEMPLATES)


def test_association_test_runs_per_layer_and_writes_files(embedder, tmp_path):
    corpus = write(
        tmp_path,
        "the apple was warm .\nthe pear was warm today .\nthe hammer was cold .\n"
        "a saw is cold at night .\nthe warm apple .\n",
        "corpus.txt",
    )
    test = read_test(write(tmp_path, SETS))
    result = association_test(embedder, test, [corpus], n_contexts=3, draws=50, permutations=100)
    assert [layer.name for layer in result.layers] == layer_names(embedder.n_layers)
    token = result.layers[0]
    # Context-free: every draw gives the same effect, no between-draw variance.
    assert token.draws_low == pytest.approx(token.draws_high, abs=1e-6)
    assert token.combined.tau2 == 0.0
    assert result.p_exact  # 4 words: 6 splits
    assert {w: c.templates for w, c in result.contexts.items()} == {
        "apple": 1,
        "pear": 2,
        "hammer": 2,
        "saw": 2,
        "warm": 0,
        "cold": 1,
    }
    again = association_test(embedder, test, [corpus], n_contexts=3, draws=50, permutations=100)
    assert again.layers == result.layers  # seeded: the same draws, the same numbers
    data = json.loads(write_json(result, tmp_path / "bias.json").read_text(encoding="utf-8"))
    assert data["words"]["pear"] == {"corpus_lines": 1, "from_corpus": 1, "templates": 2}
    assert [layer["name"] for layer in data["layers"]] == layer_names(embedder.n_layers)
    assert plot(result, tmp_path / "forest.png").read_bytes()[:4] == b"\x89PNG"


def test_a_corpus_without_any_test_word_is_one_clear_error(embedder, tmp_path):
    corpus = write(tmp_path, "nothing to see here .\n", "corpus.txt")
    test = read_test(write(tmp_path, SETS))
    with pytest.raises(UserError, match="none of the 6 words of sets occurs in"):
        association_test(embedder, test, [corpus], n_contexts=2, draws=10)


def test_unreadable_corpus_lines_are_counted_in_the_error(embedder, tmp_path):
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes("caf\xe9 apple pear .\n".encode("latin-1"))  # not UTF-8: skipped
    test = read_test(write(tmp_path, SETS))
    with pytest.raises(UserError, match=r"skipped 1 lines .*\(first: .*latin1.txt:1\)"):
        association_test(embedder, test, [corpus], n_contexts=2, draws=10)


# --- a trained model with a planted association ---------------------------------------------------

FRUIT = ("apple", "pear", "plum", "grape", "melon", "lemon", "mango", "peach")
TOOLS = ("hammer", "drill", "wrench", "chisel", "pliers", "shovel", "ladder", "bucket")
SUNNY = ("sunny", "bright", "cheerful", "golden", "lovely", "sweet", "gentle", "happy")
RUSTY = ("rusty", "broken", "grim", "dull", "filthy", "muddy", "gloomy", "harsh")
NEUTRAL = (
    "table chair door window basket kettle parcel coat red blue heavy small new cheap dusty round"
).split()


def planted_corpus(n: int, seed: int) -> list[str]:
    """Sentences that each draw all their words from one topic: fruit with sunny words, tools
    with rusty ones, or the neutral words. The topic is all a language model can learn to
    predict them by, so both directions carry it: X = fruit co-occurs with A = sunny."""
    rng = random.Random(seed)
    topics = (FRUIT + SUNNY, TOOLS + RUSTY, tuple(NEUTRAL))
    return [" ".join(rng.choices(topics[i % 3], k=rng.randint(4, 8))) + " ." for i in range(n)]


def sets_test(name: str, x, y, a, b) -> AssociationTest:
    words = {"X": x, "Y": y, "A": a, "B": b}
    return AssociationTest(name, {r: WordSet(r, tuple(w)) for r, w in words.items()})


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A tiny biLM trained 600 steps on the planted corpus (about a minute on one thread)."""
    from train_helpers import compose_train_config

    from elmo_train.train import train

    directory = tmp_path_factory.mktemp("planted")
    (directory / "train.txt").write_text("\n".join(planted_corpus(6000, 0)) + "\n")
    (directory / "valid.txt").write_text("\n".join(planted_corpus(60, 1)) + "\n")
    overrides = [
        "data=text",
        f"data.train={directory / 'train.txt'}",
        f"data.valid={directory / 'valid.txt'}",
        f"data.cache_dir={directory / 'cache'}",
        "data.batch_size=16",
        "data.window=20",
        "data.num_workers=0",
        "trainer.max_steps=600",
        f"run_dir={directory / 'run'}",
        "demo=false",
        "test=false",
        "callbacks.progress_bar=null",
    ]
    train(compose_train_config(overrides))
    return Embedder.from_model_dir(directory / "run" / "model"), [directory / "train.txt"]


@pytest.mark.slow
def test_a_planted_association_is_large_and_significant_and_mirrors_when_swapped(planted):
    embedder, corpus = planted
    forward = association_test(
        embedder, sets_test("planted", FRUIT, TOOLS, SUNNY, RUSTY), corpus, draws=1_000
    )
    swapped = association_test(
        embedder, sets_test("swapped", FRUIT, TOOLS, RUSTY, SUNNY), corpus, draws=1_000
    )
    assert forward.p_exact  # C(16, 8) = 12,870 splits
    for plain, mirror in zip(forward.layers, swapped.layers, strict=True):
        # Measured: 1.87 in every layer (the maximum for 8 + 8 words is 1.94); an untrained
        # biLM gives -0.84 to 0.57, its intervals covering 0.
        assert plain.combined.effect > 1.2 and plain.combined.low > 0, plain
        assert plain.p_value < 0.05, plain
        assert mirror.combined.effect < -1.2 and mirror.combined.high < 0, mirror
        assert mirror.p_value > 0.95, mirror


@pytest.mark.slow
def test_random_word_sets_have_intervals_that_cover_zero(planted):
    embedder, corpus = planted
    words = random.Random(0).sample(NEUTRAL, 16)
    result = association_test(
        embedder,
        sets_test("random", words[:4], words[4:8], words[8:12], words[12:]),
        corpus,
        draws=1_000,
    )
    for layer in result.layers:  # measured: effects -0.12 to -0.04, intervals about +-1.4
        assert layer.combined.low < 0 < layer.combined.high, layer
