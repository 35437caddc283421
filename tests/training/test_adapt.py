"""Domain adaptation: loading a model directory or released files, the vocabulary change (shared
softmax rows bit-identical, new rows fresh), the frozen-biLM warm-up, the experiment config."""

import dataclasses

import hydra
import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from elmo_train.config import config_dir, register_configs
from elmo_train.data.store import CorpusStore
from elmo_train.data.stream import BatchStream
from elmo_train.data.vocab_builder import build_vocabulary
from elmo_train.errors import UserError
from elmo_train.formats.bilm_tf import load_bilm
from elmo_train.formats.model_dir import save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import BiLMConfig, CharCNNConfig, LSTMConfig, SoftmaxConfig
from elmo_train.training.adapt import (
    FreezeBiLMWarmup,
    InitConfig,
    initialize,
    model_config_from_init,
)
from elmo_train.training.module import BiLMModule
from elmo_train.training.optim import OptimizerConfig

SPECIALS = ["<S>", "</S>", "<UNK>"]
GENERAL = Vocabulary([*SPECIALS, "the", "river", "bank", "cell", "of", "protein"])
DOMAIN_TEXT = [
    "the protein of the cell binds the kinase",
    "protein kinase activity in the cell",
    "the protein binds",
    "protein levels",
]


def config(softmax: str = "full", dropout: float = 0.1, dim: int = 16) -> BiLMConfig:
    return BiLMConfig(
        char_cnn=CharCNNConfig(embedding_dim=4, filters=[[1, 4], [2, 8]], n_highway=1),
        lstm=LSTMConfig(dim=dim, projection_dim=8, n_layers=2),
        softmax=SoftmaxConfig(kind=softmax, n_negatives=4),
        dropout=dropout,
    )


@pytest.fixture
def general_model(tmp_path):
    """A pretrained model directory whose softmax rows are all distinct (random biases too)."""
    lm = LanguageModel(config(), len(GENERAL))
    with torch.no_grad():
        lm.output.bias.copy_(torch.randn(len(GENERAL)))
    return save_model_dir(lm, GENERAL, tmp_path / "general"), lm


@pytest.fixture
def domain_vocab(tmp_path) -> Vocabulary:
    """What the datamodule builds from the domain corpus: sorted by the domain's counts."""
    path = tmp_path / "domain.txt"
    path.write_text("".join(line + "\n" for line in DOMAIN_TEXT))
    vocab, _ = build_vocabulary([path])
    return vocab


def test_vocabulary_change_keeps_shared_rows_bit_identical(general_model, domain_vocab):
    directory, general = general_model
    # Domain order: the 6, protein 4, cell 2, binds 2, kinase 2, of 1, ... (ties alphabetical).
    assert domain_vocab.words[3:8] == ["the", "protein", "binds", "cell", "kinase"]
    init = InitConfig(model=str(directory))
    cfg = model_config_from_init(init, config(softmax="sampled", dropout=0.3, dim=99))
    assert (cfg.lstm.dim, cfg.softmax.kind, cfg.dropout) == (16, "sampled", 0.3)
    lm = LanguageModel(cfg, len(domain_vocab))
    fresh = {k: v.clone() for k, v in lm.output.state_dict().items()}
    message = initialize(lm, init, domain_vocab)

    shared = [w for w in domain_vocab.words if w in GENERAL]
    assert shared == ["<S>", "</S>", "<UNK>", "the", "protein", "cell", "of"]  # the new order
    for word in shared:
        new, old = domain_vocab.index(word), GENERAL.index(word)
        assert torch.equal(lm.output.weight[new], general.output.weight[old]), word
        assert torch.equal(lm.output.bias[new], general.output.bias[old]), word
    for word in ("binds", "kinase", "activity", "levels", "in"):
        new = domain_vocab.index(word)
        assert torch.equal(lm.output.weight[new], fresh["weight"][new]), word
        assert lm.output.bias[new] == 0.0
    for name, tensor in general.bilm.state_dict().items():
        assert torch.equal(lm.bilm.state_dict()[name], tensor), name
    assert "7 of 12 rows copied" in message and "5 new words" in message
    assert "2 pretrained words dropped" in message  # river, bank


def test_same_vocabulary_copies_the_whole_softmax(general_model):
    directory, general = general_model
    init = InitConfig(model=str(directory))
    lm = LanguageModel(model_config_from_init(init, config()), len(GENERAL))
    initialize(lm, init, GENERAL)
    assert torch.equal(lm.output.weight, general.output.weight)
    assert torch.equal(lm.output.bias, general.output.bias)


def test_released_files_give_a_fresh_softmax(fixtures_dir, domain_vocab):
    model = fixtures_dir / "model"
    init = InitConfig(options=str(model / "options.json"), weights=str(model / "lm_weights.hdf5"))
    cfg = model_config_from_init(init, config())
    assert (cfg.lstm.dim, cfg.lstm.projection_dim, cfg.char_cnn.n_highway) == (64, 16, 2)
    lm = LanguageModel(cfg, len(domain_vocab))
    message = initialize(lm, init, domain_vocab)
    released = load_bilm(model / "options.json", model / "lm_weights.hdf5")
    for name, tensor in released.state_dict().items():
        assert torch.equal(lm.bilm.state_dict()[name], tensor), name
    assert lm.output.weight.shape == (len(domain_vocab), 16)
    assert lm.output.bias.abs().sum() == 0
    assert "fresh output layer" in message


def test_adaptive_softmax_is_reinitialised_across_vocabularies(general_model, domain_vocab):
    directory, _ = general_model
    init = InitConfig(model=str(directory))
    lm = LanguageModel(model_config_from_init(init, config(softmax="adaptive")), len(domain_vocab))
    fresh = {k: v.clone() for k, v in lm.output.state_dict().items()}
    message = initialize(lm, init, domain_vocab)
    assert all(torch.equal(v, fresh[k]) for k, v in lm.output.state_dict().items())
    assert "fresh output layer" in message and "adaptive" in message


def test_init_errors_name_the_keys(general_model, tmp_path):
    directory, _ = general_model
    with pytest.raises(UserError, match="init.weights is not set"):
        model_config_from_init(InitConfig(options="options.json"))
    with pytest.raises(UserError, match="not both"):
        model_config_from_init(InitConfig(model=str(directory), weights="w.hdf5"))
    with pytest.raises(UserError, match="model directory not found"):
        model_config_from_init(InitConfig(model=str(tmp_path / "missing")))
    built_elsewise = LanguageModel(config(dim=32), len(GENERAL))
    with pytest.raises(UserError, match="model_config_from_init"):
        initialize(built_elsewise, InitConfig(model=str(directory)), GENERAL)
    assert model_config_from_init(InitConfig()) is None
    assert "random" in initialize(built_elsewise, InitConfig(), GENERAL)


class _Snapshots(L.Callback):
    def __init__(self):
        self.bilm, self.output = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.bilm.append([p.detach().clone() for p in pl_module.lm.bilm.parameters()])
        self.output.append([p.detach().clone() for p in pl_module.lm.output.parameters()])


def _domain_module_and_batches(tmp_path) -> tuple[BiLMModule, DataLoader]:
    """A fresh BiLMModule over a 6-word domain vocabulary, and training batches of DOMAIN_TEXT."""
    vocab = Vocabulary([*SPECIALS, "the", "protein", "cell"])
    store = CorpusStore.from_sentences([s.split() for s in DOMAIN_TEXT], vocab, tmp_path / "s")
    module = BiLMModule(
        model=dataclasses.asdict(config()),
        vocab_size=len(vocab),
        optimizer=dataclasses.asdict(OptimizerConfig()),
    )
    stream = BatchStream(store, batch_size=2, window=4, training=True)
    return module, DataLoader(stream, batch_size=None)


def test_warmup_trains_only_the_output_layer_first(tmp_path):
    module, batches = _domain_module_and_batches(tmp_path)
    before = [p.detach().clone() for p in module.lm.bilm.parameters()]
    snapshots = _Snapshots()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=3,
        callbacks=[FreezeBiLMWarmup(steps=2), snapshots],
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, batches)
    for step in (0, 1):  # optimizer steps 1 and 2: biLM frozen, softmax learning
        assert all(torch.equal(a, b) for a, b in zip(snapshots.bilm[step], before, strict=True))
    assert not torch.equal(snapshots.output[1][0], snapshots.output[0][0])
    changed = [not torch.equal(a, b) for a, b in zip(snapshots.bilm[2], before, strict=True)]
    assert all(changed)  # step 3: the whole biLM trains


@pytest.mark.parametrize(("warmup", "max_steps"), [(200, 30), (3, 3)])
def test_a_warmup_as_long_as_the_run_is_refused(warmup, max_steps, tmp_path):
    # The biLM would leave the run bit-identical to the pretrained one, silently.
    module, batches = _domain_module_and_batches(tmp_path)
    before = [p.detach().clone() for p in module.parameters()]
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        callbacks=[FreezeBiLMWarmup(steps=warmup)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    with pytest.raises(UserError, match=f"softmax_warmup.steps={warmup} is not below"):
        trainer.fit(module, batches)
    assert all(torch.equal(a, b) for a, b in zip(module.parameters(), before, strict=True))


def test_experiment_config_composes():
    register_configs()
    overrides = ["experiment=domain_adapt", "init.model=runs/general/model", "data.train=t.txt"]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    assert cfg.init.model == "runs/general/model"
    assert cfg.data.train == "t.txt"
    assert cfg.callbacks.early_stopping.monitor == "val/ppl"
    warmup = hydra.utils.instantiate(cfg.callbacks.softmax_warmup)
    assert isinstance(warmup, FreezeBiLMWarmup) and warmup.steps == 200
