"""The LightningModule: bilm-tf's training loop on top of the pure-torch LanguageModel.

LSTM state is carried (detached) per batch row across training batches and reset where the
batch says so: bilm-tf's truncated BPTT with backprop cut at the batch boundary. Validation
perplexity is always the exact full softmax, token-weighted, per direction.
"""

import dataclasses
import logging
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
from elmo_train.training.compile import CompileConfig, compile_bilm
from elmo_train.training.nonfinite import NonFiniteGuard, all_finite
from elmo_train.training.optim import (
    OptimizerConfig,
    PlateauHalving,
    build_optimizer,
    clip_gradients_,
    enable_sparse_updates,
    grad_norm,
    warmup_decay,
)

log = logging.getLogger(__name__)


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
        skip_nonfinite_steps: int = 0,
        compile: CompileConfig | None = None,
    ):
        super().__init__()
        # Plain containers only, so checkpoints load with torch.load(weights_only=True). The
        # run's tolerance of non-finite steps and its compilation are the run's config, not
        # the model's.
        self.save_hyperparameters(ignore=["vocab", "skip_nonfinite_steps", "compile"])
        self.compile_config = compile or CompileConfig()
        self._compiled = False
        self.model_config = model_config_from_dict(model)
        self.optimizer_config = OptimizerConfig(**optimizer)
        self.lm = LanguageModel(self.model_config, vocab_size)
        self.vocab = vocab  # saved in checkpoints so `elmo export` can write vocab.txt
        self.card = ModelCard()  # how the model was made, saved for `elmo export`
        self.config_yaml = ""  # the resolved training config, saved for `elmo export`
        self.plateau = PlateauHalving(self.optimizer_config)
        self.guard = NonFiniteGuard(skip_nonfinite_steps)
        self._good_checkpoint: int | None = None  # step of the newest checkpoint saved or resumed
        self._step_loss = torch.zeros(())
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
        if not self._compiled:  # the first batch gives the shapes to compile for
            self._compiled = True
            state = continued_state(self._train_state, batch)
            with self.trainer.precision_plugin.forward_context():
                line = compile_bilm(
                    self.lm.bilm, self.compile_config, lambda: self.lm(batch, state).loss
                )
            if self.trainer.is_global_zero:
                log.info(line)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        out = self.lm(batch, continued_state(self._train_state, batch))
        self._train_state = out.state.detach()
        self._step_loss = out.loss.detach()
        sampled = "_sampled" if self.model_config.softmax.kind == "sampled" else ""
        # On the bar only on CPU: a GPU would sync every step to show it (ProgressLog reads it
        # every few seconds instead).
        self.log("train/loss", out.loss, prog_bar=self.device.type == "cpu")
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        for name, nll in zip(self.directions, out.nll, strict=True):
            self.log(f"train/ppl_{name}{sampled}", torch.exp(nll.detach()))
        if self.optimizer_config.loss_reduction == "row":  # summed over steps, mean over rows
            return out.loss * out.n_targets / batch.mask.shape[0]
        return out.loss

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        # After the update, as Kim's loop, and before any callback can checkpoint the step.
        self.lm.bilm.char_encoder.zero_padding_char_()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        every = self.trainer.log_every_n_steps
        if every and self.global_step % every == 0:  # metrics are logged now
            self._stop_if_diverged()
            if self.guard.allowed:
                self.log("train/nonfinite_steps", float(self.guard.bad_steps()))
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

    def on_fit_start(self) -> None:
        # A GradScaler (16-bit mixed precision) skips steps whose gradients overflow by design.
        self.guard.check_gradients = self.trainer.precision != "16-mixed"

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        """Clip at the global norm (bilm-tf's all_clip_norm_val) and judge the step: a step whose
        loss or gradient norm is not finite is dropped on CPU and zeroed on a GPU (see
        `NonFiniteGuard`). The norm is computed once, here;
        on CPU the verdict is read at once, on a GPU only when metrics or checkpoints are."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        params = [p for p in params if p.grad is not None]
        if gradient_clip_val is not None and gradient_clip_algorithm != "value":
            norm = clip_gradients_(params, gradient_clip_val)  # the norm before clipping
        else:
            norm = grad_norm(params)
            if gradient_clip_val is not None:
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        loss = self.trainer.strategy.reduce(self._step_loss, reduce_op="sum")  # ranks agree
        sync = self.device.type == "cpu"
        finite = self.guard.judge(params, norm, loss, self.global_step + 1, sync)
        if self._train_state is not None:  # after a bad step the next batch starts from zero
            h, c = self._train_state.h, self._train_state.c
            self._train_state = LSTMState(torch.where(finite, h, 0), torch.where(finite, c, 0))
        if sync:
            self._stop_if_diverged()

    def _stop_if_diverged(self) -> None:
        """One line, once more steps were not finite than `skip_nonfinite_steps` allows."""
        step = self.guard.stop_step()  # reads the device
        if step is None:
            return
        allowed = self.guard.allowed
        skipped = (
            f" ({allowed} such steps skipped before it: skip_nonfinite_steps)" if allowed else ""
        )
        raise UserError(
            f"step {step}: the loss or gradient norm is not finite{skipped}; training stopped. "
            f"{self._restart_hint()}, with a lower optimizer.lr or skip_nonfinite_steps=N"
        )

    def _restart_hint(self) -> str:
        if self._good_checkpoint is None:
            return "No checkpoint yet: start again"
        return f"The last good checkpoint is step {self._good_checkpoint}: resume=true from it"

    def on_train_end(self) -> None:
        self._stop_if_diverged()

    def configure_optimizers(self):
        # Only the softmax rows a batch touches are updated where that is exact (bilm-tf's
        # sparse Adagrad; training/optim.py); clipping by value cannot take sparse gradients.
        if self.trainer.gradient_clip_algorithm != "value":
            line = enable_sparse_updates(
                self.lm.output, self.optimizer_config, self.trainer.world_size
            )
            if line and self.trainer.is_global_zero:
                log.info(line)
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
        # Lightning calls this before it writes anything: no checkpoint of a diverged run.
        self._stop_if_diverged()
        if not all_finite(self.parameters()):
            raise UserError(
                f"step {self.global_step}: the weights are not finite, so no checkpoint was "
                f"written. {self._restart_hint()}, with a lower optimizer.lr"
            )
        self._good_checkpoint = self.global_step
        checkpoint["nonfinite"] = self.guard.state_dict()
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
        self.guard.load_state_dict(checkpoint.get("nonfinite", {"bad_steps": 0}))
        self._good_checkpoint = checkpoint["global_step"]
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
