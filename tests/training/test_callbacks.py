"""StepCheckpoint and `validation_follows`: pinned to how Lightning schedules validation."""

import pytest
from train_helpers import compose_train_config, fast_overrides

from elmo_train.train import train
from elmo_train.training.callbacks import StepCheckpoint, validation_follows
from elmo_train.training.module import BiLMModule


@pytest.mark.parametrize("validation", [["val_every=3"], ["+trainer.limit_val_batches=0"]])
def test_validation_follows_predicts_lightnings_validations(
    validation, corpus, cache, tmp_path, monkeypatch
):
    # Every step: what validation_follows said after the batch, and whether Lightning then
    # validated; also after resuming mid-run, from Lightning's restored loop counters.
    predicted, validated = [], []
    batch_end = StepCheckpoint.on_train_batch_end

    def record(callback, trainer, *args):
        if validation_follows(trainer):
            predicted.append(trainer.global_step)
        batch_end(callback, trainer, *args)

    def validation_start(module):
        if module.trainer.state.fn == "fit":
            validated.append(module.global_step)

    monkeypatch.setattr(StepCheckpoint, "on_train_batch_end", record)
    monkeypatch.setattr(BiLMModule, "on_validation_start", validation_start, raising=False)
    common = [*fast_overrides(corpus, tmp_path, cache, steps=7), *validation,
              "checkpoint_every=4", "export=false", "test=false"]  # fmt: skip
    train(compose_train_config(common))
    train(compose_train_config([*common, "resume=true", "trainer.max_steps=11"]))
    expected = [3, 6, 9] if validation == ["val_every=3"] else []
    assert validated == expected
    assert predicted == validated
