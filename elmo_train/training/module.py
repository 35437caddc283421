"""The LightningModule: bilm-tf's training loop on top of the pure-torch LanguageModel.

LSTM state is carried (detached) per batch row across training batches and reset where the
batch says so: bilm-tf's truncated BPTT with backprop cut at the batch boundary. Validation
perplexity is always the exact full softmax, token-weighted, per direction.
"""

import dataclasses
import math
import resource
import time
from collections import deque

import lightning as L
import torch

from elmo_train.errors import UserError
from elmo_train.formats.model_dir import ModelCard
from elmo_train.model.batch import Batch
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import BiLMConfig, CharCNNConfig, LSTMConfig, SoftmaxConfig
from elmo_train.model.lstm import LSTMState
from elmo_train.training.optim import OptimizerConfig, PlateauHalving, build_optimizer, warmup_decay


def model_config_from_dict(model: dict) -> BiLMConfig:
    nested = {"char_cnn": CharCNNConfig, "lstm": LSTMConfig, "softmax": SoftmaxConfig}
    return BiLMConfig(**{k: nested[k](**v) if k in nested else v for k, v in model.items()})


class BiLMModule(L.LightningModule):
    def __init__(
        self,
        model: dict,
        vocab_size: int,
        optimizer: dict,
        seed: int = 0,
        vocab: list[str] | None = None,
    ):
        super().__init__()
        # Plain containers only, so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["vocab"])
        self.model_config = model_config_from_dict(model)
        self.optimizer_config = OptimizerConfig(**optimizer)
        self.lm = LanguageModel(self.model_config, vocab_size)
        self.vocab = vocab  # saved in checkpoints so `elmo export` can write vocab.txt
        self.card = ModelCard()  # how the model was made, saved for `elmo export`
        self.config_yaml = ""  # the resolved training config, saved for `elmo export`
        self.plateau = PlateauHalving(self.optimizer_config)
        self._train_state: LSTMState | None = None
        self._val_states: list[LSTMState | None] = []
        self._val_sums: list[torch.Tensor] = []
        self.fit_validation: tuple[int, dict[str, dict[str, float]]] = (-1, {})  # step, scores
        self._step_ends: deque[float] = deque(maxlen=21)  # wall clock of recent step ends

    @property
    def directions(self) -> list[str]:
        return ["fwd", "bwd"][: self.lm.bilm.n_directions]

    # --- training -------------------------------------------------------------------------

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # Dropout masks and softmax negatives are a pure function of (seed, step, rank), so a
        # resumed run draws exactly what an uninterrupted one would, and ranks draw apart.
        torch.manual_seed(hash((self.hparams.seed, self.global_step, self.global_rank)) % 2**63)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        out = self.lm(batch, continued_state(self._train_state, batch))
        self._train_state = out.state.detach()
        sampled = "_sampled" if self.model_config.softmax.kind == "sampled" else ""
        self.log("train/loss", out.loss, prog_bar=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        for name, nll in zip(self.directions, out.nll, strict=True):
            self.log(f"train/ppl_{name}{sampled}", torch.exp(nll.detach()))
        if self.optimizer_config.loss_reduction == "row":  # summed over steps, mean over rows
            return out.loss * out.n_targets / batch.mask.shape[0]
        return out.loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.lm.bilm.char_encoder.zero_padding_char_()  # after the optimizer step, as Kim's loop
        # Wall time between step ends over a window: data loading included, and no device
        # sync needed (queued GPU work evens out over the window).
        self._step_ends.append(time.perf_counter())
        if len(self._step_ends) < 2:
            return
        step_time = (self._step_ends[-1] - self._step_ends[0]) / (len(self._step_ends) - 1)
        positions = batch.mask.numel() * self.trainer.world_size  # padding included
        self.log("perf/tokens_per_sec", positions / step_time, prog_bar=True)
        if self.trainer.max_steps > 0:
            remaining = self.trainer.max_steps - self.global_step
            self.log("perf/eta_min", remaining * step_time / 60, prog_bar=True)
        if torch.cuda.is_available():
            self.log("perf/peak_memory_gb", torch.cuda.max_memory_allocated() / 2**30)
        else:  # ru_maxrss is in KiB on Linux
            self.log("perf/peak_rss_gb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)

    # --- validation: exact full softmax, token-weighted, state carried as bilm-tf's test ------

    def _eval_splits(self) -> tuple[str, ...]:
        datamodule = getattr(self.trainer, "datamodule", None)
        return getattr(datamodule, "val_splits", ("valid",))

    def on_validation_epoch_start(self) -> None:
        # One carried state and one (D + 1,) sum (NLL per direction, targets) per dataloader.
        splits = self._eval_splits()
        self._val_states = [None] * len(splits)
        self._val_sums = [
            torch.zeros(len(self.directions) + 1, device=self.device, dtype=torch.float64)
            for _ in splits
        ]

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx=0):
        out = self.lm(batch, continued_state(self._val_states[dataloader_idx], batch))
        self._val_states[dataloader_idx] = out.state
        n = out.n_targets.double()
        self._val_sums[dataloader_idx] += torch.stack([*(nll.double() * n for nll in out.nll), n])

    def _log_perplexities(self, index: int, prefix: str) -> dict[str, float]:
        sums = self.trainer.strategy.reduce(self._val_sums[index], reduce_op="sum")
        metrics = perplexities(sums, self.directions)
        for name, value in metrics.items():
            self.log(f"{prefix}/{name}", value, sync_dist=False)
        return metrics

    def on_validation_epoch_end(self) -> None:
        scores = {}
        for index, split in enumerate(self._eval_splits()):
            scores[split] = self._log_perplexities(index, "val" if split == "valid" else split)
        if self.trainer.sanity_checking or self.trainer.state.fn != "fit":
            return
        # What the weights of this step scored: a validation at the last step is not repeated.
        self.fit_validation = (self.global_step, scores)
        if self.optimizer_config.name == "sgd":
            self.plateau.step(self.optimizers().optimizer, scores["valid"]["ppl"])

    def test_step(self, batch, batch_idx) -> None:
        self.validation_step(batch, batch_idx)

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def on_test_epoch_end(self) -> None:
        self._log_perplexities(0, "test")

    # --- optimiser ------------------------------------------------------------------------

    def configure_optimizers(self):
        # Lightning refuses to clip the gradients of a fused optimizer under mixed precision.
        fused = "mixed" not in str(self.trainer.precision)
        optimizer = build_optimizer(self.optimizer_config, self.parameters(), fused)
        if self.optimizer_config.name != "adamw":
            return optimizer
        schedule = warmup_decay(self.optimizer_config, self.trainer.max_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # --- checkpoints: everything needed to continue exactly --------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["vocab"] = self.vocab
        checkpoint["card"] = self.card.to_dict()
        checkpoint["config_yaml"] = self.config_yaml
        checkpoint["plateau"] = self.plateau.state_dict()
        if self._train_state is not None:
            # Every rank carries its own rows; gather them so each rank can take its own back.
            h = self.all_gather(self._train_state.h)
            c = self.all_gather(self._train_state.c)
            checkpoint["lstm_state"] = {
                "h": h.cpu(),
                "c": c.cpu(),
                "world_size": self.trainer.world_size,
            }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Lightning calls this before it loads the weights: a run resumed with other model
        # options gets one line naming them, not a state_dict traceback.
        self._check_fits(checkpoint)
        self.vocab = checkpoint.get("vocab")
        self.card = ModelCard.from_dict(checkpoint.get("card") or {})
        self.config_yaml = checkpoint.get("config_yaml", "")
        self.plateau.load_state_dict(checkpoint["plateau"])
        saved = checkpoint.get("lstm_state")
        if saved is not None:
            h, c = saved["h"], saved["c"]
            if saved["world_size"] > 1:
                h, c = h[self.global_rank], c[self.global_rank]
            self._train_state = LSTMState(h.to(self.device), c.to(self.device))

    def _check_fits(self, checkpoint: dict) -> None:
        shapes = {name: tuple(t.shape) for name, t in checkpoint["state_dict"].items()}
        if shapes == {name: tuple(t.shape) for name, t in self.state_dict().items()}:
            return
        saved = checkpoint["hyper_parameters"]
        then = _flat({"model": saved["model"], "vocab_size": saved["vocab_size"]})
        now = _flat({"model": self.hparams.model, "vocab_size": self.hparams.vocab_size})
        defaults = _flat({"model": dataclasses.asdict(BiLMConfig())})  # keys added since
        changed = [
            f"{key}={then.get(key, defaults.get(key))} (now {now.get(key)})"
            for key in sorted(then.keys() | now.keys())
            if then.get(key, defaults.get(key)) != now.get(key)
        ]
        raise UserError(
            f"{self.trainer.ckpt_path}: its weights do not fit this run's model; the run was "
            f"started with {', '.join(changed) or 'another model'}: resume with those options"
        )


def continued_state(state: LSTMState | None, batch: Batch) -> LSTMState | None:
    """The state `batch` continues from (bilm-tf: carried across batches), zero in the rows
    its stream restarts; None (a zero state) at the start or when the row count changed."""
    if state is None or state.batch_size != batch.reset.shape[0]:
        return None
    return state.reset_rows(batch.reset)


def _flat(tree: dict, prefix: str = "") -> dict:
    """Nested dicts as one dict of dotted keys: {"model": {"dropout": 0.5}} -> model.dropout."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def perplexities(sums: torch.Tensor, directions: list[str]) -> dict[str, float]:
    """`sums` = (NLL sum per direction..., target count). bilm-tf's combined figure is the
    exp of the mean of the directions' cross-entropies."""
    count = sums[-1].clamp(min=1)
    entropies = [(sums[d] / count).item() for d in range(len(directions))]
    metrics = {f"ppl_{name}": math.exp(h) for name, h in zip(directions, entropies, strict=True)}
    metrics["ppl"] = math.exp(sum(entropies) / len(entropies))
    metrics["loss"] = sum(entropies) / len(entropies)
    return metrics
