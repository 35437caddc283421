"""Domain adaptation: start training from a pretrained biLM instead of random weights.

`init.model=DIR` continues from an elmo-train model directory (biLM and softmax);
`init.options=FILE init.weights=FILE` starts from released bilm-tf/AllenNLP files, which have no
softmax, so the output layer starts fresh. The architecture (char CNN, LSTM, directions) comes
from the pretrained model; the training recipe (softmax kind, dropout) from `model.*`.

The vocabulary may change, unlike bilm-tf's `restart.py` (#197): the new vocabulary is the domain
corpus's own, sorted by the domain's frequencies (so the log-uniform sampler stays valid). The
softmax row (weight and bias) of every word in both vocabularies is copied bit for bit to the
word's new id; words new to the model keep the fresh rows of a new output layer (as
`FullSoftmax` initialises them); words absent from the domain vocabulary are dropped. An adaptive
softmax's clusters depend on the frequency order, so it is re-initialised unless the vocabulary is
unchanged. `FreezeBiLMWarmup` trains only the output layer for the first steps, so fresh rows do
not send large gradients into the pretrained biLM.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_info

from elmo_train.errors import UserError
from elmo_train.formats.bilm_tf import OPTIONS, load_weights, options_from_config, read_options
from elmo_train.formats.model_dir import load_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import BiLMConfig
from elmo_train.model.softmax import AdaptiveSoftmax, FullSoftmax, OutputLayer


@dataclass
class InitConfig:
    """Start from trained weights instead of random ones (domain adaptation)."""

    model: str | None = None  # an elmo-train model directory
    options: str | None = None  # released bilm-tf options.json ...
    weights: str | None = None  # ... and weights.hdf5 (no softmax: a fresh output layer)


def _source(init: InitConfig) -> str | None:
    """ "model", "files" or None (random initialisation); checks the keys go together."""
    if init.model is not None:
        if init.options is not None or init.weights is not None:
            raise UserError(
                "give either init.model=DIR or init.options=FILE init.weights=FILE, not both"
            )
        return "model"
    if init.options is None and init.weights is None:
        return None
    if init.options is None or init.weights is None:
        missing = "init.options" if init.options is None else "init.weights"
        raise UserError(
            f"{missing} is not set: released models need both init.options=options.json and "
            "init.weights=weights.hdf5"
        )
    return "files"


def _architecture(config: BiLMConfig) -> dict:
    """What the weights fix: the options bilm-tf writes, without the training-only ones."""
    options = options_from_config(config)
    options.pop("dropout")
    return options


def _check_architecture(pretrained: BiLMConfig, built: BiLMConfig, source: str) -> None:
    if _architecture(pretrained) != _architecture(built):
        raise UserError(
            f"{source}: the model was built with another architecture than this pretrained one; "
            "build it with elmo_train.adapt.model_config_from_init(cfg.init, ...)"
        )


def model_config_from_init(init: InitConfig, base: BiLMConfig | None = None) -> BiLMConfig | None:
    """The config to build the model with when starting from pretrained weights (None if not).

    Architecture from the pretrained options; the training recipe (`softmax`, the dropouts)
    from `base` (the run's `model.*`) when given, as is `lstm.impl` unless it is `fused` and
    the pretrained LSTM clips.
    """
    source = _source(init)
    if source is None:
        return None
    options = Path(init.model) / OPTIONS if source == "model" else Path(init.options)
    if source == "model" and not Path(init.model).is_dir():
        raise UserError(f"init.model={init.model}: model directory not found")
    config = read_options(options)
    if base is None:
        return config
    lstm = config.lstm
    if base.lstm.impl != "fused" or (lstm.cell_clip is None and lstm.proj_clip is None):
        lstm = dataclasses.replace(lstm, impl=base.lstm.impl)
    return dataclasses.replace(
        config,
        lstm=lstm,
        softmax=dataclasses.replace(base.softmax),
        dropout=base.dropout,
        dropout_token_embeddings=base.dropout_token_embeddings,
    )


def initialize(lm: LanguageModel, init: InitConfig, vocab: Vocabulary) -> str:
    """Load the pretrained weights named by `init` into `lm`; returns what was done, one line.

    `lm` must have been built with `model_config_from_init(init, ...)` and `len(vocab)` words.
    """
    source = _source(init)
    if source is None:
        return "init: random initialisation (no init.model or init.options/init.weights)"
    assert lm.vocab_size == len(vocab), "the output layer must have one row per vocabulary word"
    if source == "files":
        _check_architecture(read_options(init.options), lm.config, init.options)
        load_weights(lm.bilm, init.weights)  # checks every dataset's shape against the options
        return (
            f"init: biLM from {init.weights}; fresh output layer for {len(vocab):,} words "
            "(released weights have no softmax)"
        )
    pretrained, pretrained_vocab = load_model_dir(init.model)
    _check_architecture(pretrained.config, lm.config, init.model)
    lm.bilm.load_state_dict(pretrained.bilm.state_dict())
    softmax = transfer_output_layer(pretrained.output, pretrained_vocab, lm.output, vocab)
    return f"init: biLM from {init.model}; {softmax}"


@torch.no_grad()
def transfer_output_layer(
    source: OutputLayer, source_vocab: Vocabulary, target: OutputLayer, target_vocab: Vocabulary
) -> str:
    """Copy the pretrained softmax into a freshly initialised one, word by word; one line."""
    if isinstance(source, AdaptiveSoftmax) or isinstance(target, AdaptiveSoftmax):
        same = type(source) is type(target) and source_vocab.words == target_vocab.words
        if same and _same_shapes(source, target):
            target.load_state_dict(source.state_dict())
            return f"output layer copied ({len(target_vocab):,} words, same vocabulary)"
        return (
            f"fresh output layer for {len(target_vocab):,} words (an adaptive softmax is not "
            "mapped across vocabularies or softmax kinds: its clusters follow the word order)"
        )
    assert isinstance(source, FullSoftmax) and isinstance(target, FullSoftmax)
    shared = [w for w in target_vocab.words if w in source_vocab]
    if shared:
        to_ids = torch.tensor([target_vocab.index(w) for w in shared], device=target.weight.device)
        from_ids = torch.tensor(
            [source_vocab.index(w) for w in shared], device=source.weight.device
        )
        target.weight[to_ids] = source.weight[from_ids].to(target.weight)
        target.bias[to_ids] = source.bias[from_ids].to(target.bias)
    new = len(target_vocab) - len(shared)
    dropped = len(source_vocab) - len(shared)
    return (
        f"output layer: {len(shared):,} of {len(target_vocab):,} rows copied from the pretrained "
        f"softmax, {new:,} new words with fresh rows, {dropped:,} pretrained words dropped"
    )


def _same_shapes(source: torch.nn.Module, target: torch.nn.Module) -> bool:
    a, b = source.state_dict(), target.state_dict()
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)


class FreezeBiLMWarmup(Callback):
    """Train only the output layer for the first `steps` optimizer steps.

    The biLM's gradients are dropped before each of those steps (before gradient clipping, so the
    clip norm is the output layer's), and an optimizer skips parameters without gradients, so
    AdamW's weight decay leaves them alone too. The parameters keep `requires_grad`, so DDP's
    gradient buckets are unchanged, and the schedule is a function of the step, so a resumed
    run does the same.
    """

    def __init__(self, steps: int = 0) -> None:
        if steps < 0:
            raise UserError(f"callbacks.softmax_warmup.steps={steps}: use 0 or more")
        self.steps = steps

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and 0 < trainer.max_steps <= self.steps:
            raise UserError(
                f"callbacks.softmax_warmup.steps={self.steps} is not below the run's "
                f"{trainer.max_steps} steps: the biLM would stay exactly the pretrained one; "
                "train longer or lower callbacks.softmax_warmup.steps (0 turns it off)"
            )

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.global_step < self.steps:
            rank_zero_info(
                f"adapt: training only the output layer until step {self.steps} (biLM frozen)"
            )

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step < self.steps:
            for parameter in pl_module.lm.bilm.parameters():
                parameter.grad = None
        elif trainer.global_step == self.steps and self.steps > 0:
            rank_zero_info(f"adapt: step {self.steps}, training the whole biLM from now on")
