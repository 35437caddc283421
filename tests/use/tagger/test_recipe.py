"""`train_tagger` end to end on the context task (context_task.py): with the biLM's layers
(`elmo`) the tagger learns a rule that only the biLM can apply to unseen cue words; without a
biLM (`none`) it cannot do better than a guess."""

import json

import pytest
from context_task import train_bilm, write_splits

from elmo_train.use.tagger.features import BiLMSource
from elmo_train.use.tagger.network import TaggerConfig
from elmo_train.use.tagger.recipe import train_tagger
from elmo_train.use.tagger.training import TrainConfig


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("context")
    model, accuracy = train_bilm(root / "bilm")
    assert accuracy == 1.0  # the biLM knows every cue's class (the premise of the test)
    return (
        root,
        write_splits(root),
        BiLMSource.from_model_dir(model),
    )


def train(task, features: str) -> dict:
    root, paths, bilm = task
    return train_tagger(
        paths,
        root / features,
        TaggerConfig(features=features),
        TrainConfig(epochs=6, patience=6, batch_size=8, lr=0.005),
        None if features == "none" else bilm,
        root / "cache",
        "test",
    )


@pytest.mark.slow
def test_context_decides_the_tag_elmo_learns_it_none_cannot(task):
    elmo = train(task, "elmo")
    none = train(task, "none")
    # 32 test sentences, one entity each, cue words the tagger never saw: with the biLM's
    # layers it gets (nearly) all; without, a guess (26 of 32 or more: probability 3e-4).
    assert elmo["scores"]["test"]["f1"] >= 0.95
    assert none["scores"]["test"]["f1"] <= 0.8
    # The card's scalar mix is a distribution over the biLM's three layers.
    mix = elmo["scalar_mix"]
    assert mix["layers"] == ["token", "lstm 1", "lstm 2"]
    assert sum(mix["weights"]) == pytest.approx(1.0, abs=1e-6)
    assert none["scalar_mix"] is None and none["bilm"] is None
    root = task[0]
    assert json.loads((root / "elmo" / "card.json").read_text())["scores"] == elmo["scores"]
