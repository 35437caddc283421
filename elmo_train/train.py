"""`elmo train`: the training recipe, top to bottom.

seed -> data -> model -> callbacks and loggers -> trainer -> fit -> evaluate -> export -> demo.
"""

import dataclasses
import logging
import math
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from elmo_train import runtime
from elmo_train.config import DataConfig, TrainConfig, config_dir, register_configs
from elmo_train.data.datamodule import ElmoDataModule
from elmo_train.errors import UserError
from elmo_train.formats.atomic import writable_dir
from elmo_train.formats.model_dir import save_model_dir
from elmo_train.training.adapt import initialize, model_config_from_init
from elmo_train.training.checkpoint import AtomicCheckpointIO, resume_checkpoint
from elmo_train.training.module import BiLMModule
from elmo_train.training.nonfinite import all_finite
from elmo_train.training.preemption import Preemption, Stopped

register_configs()
log = logging.getLogger(__name__)


def instantiate(node: DictConfig, key: str, **kwargs):
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise UserError(f"{key}: {cause or error}; check the {key}.* keys of your config") from None


def train(cfg: DictConfig) -> dict:
    # 0. Runtime: threads for the CPUs this process may use, minus DataLoader workers
    # (elmo_train/runtime.py); the checked config; a writable run directory; the newest intact
    # checkpoint to resume from.
    threads = runtime.set_threads(cfg.threads, workers=max(0, cfg.data.get("num_workers", 0)))
    if rank_zero_only.rank == 0:
        log.info(threads)
    config = _checked(cfg)
    run_dir = writable_dir(config.run_dir, "run directory (run_dir)")
    ckpt_path = resume_checkpoint(config.resume, run_dir)

    # 1. Seed: data order and dropout/negatives are pure functions of (seed, step, rank).
    L.seed_everything(config.seed, workers=True)

    # 2. Data: prepare (cached) and open the corpus stores; the vocabulary sizes the softmax.
    data_config = DataConfig.from_config(cfg.data)  # typed and checked (elmo_train/config.py)
    datamodule = ElmoDataModule(data_config)
    datamodule.prepare_data()
    datamodule.setup("fit")
    vocab = datamodule.vocab

    # 3. Model: with init.*, the pretrained architecture and weights (training/adapt.py).
    model_config = model_config_from_init(config.init, config.model) or config.model
    module = BiLMModule(
        model=dataclasses.asdict(model_config),
        vocab_size=len(vocab),
        optimizer=dataclasses.asdict(config.optimizer),
        seed=config.seed,
        vocab=list(vocab.words),
        skip_nonfinite_steps=config.skip_nonfinite_steps,
        compile=config.compile,
    )
    # A resumed run restores its own weights from the checkpoint instead.
    module.card.init = (
        f"init: resumed from {ckpt_path}"
        if ckpt_path
        else initialize(module.lm, config.init, vocab)
    )
    module.card.name = str(config.run_name)
    module.card.data = str(cfg.data.train)
    module.card.command = " ".join(["elmo train", *HydraConfig.get().overrides.task])
    module.config_yaml = OmegaConf.to_yaml(cfg, resolve=True)

    # 4. Callbacks and loggers (`callbacks.NAME=null` switches one off), and the stop on
    # SIGTERM or Ctrl-C after a step, saved (training/preemption.py).
    callbacks = [instantiate(c, "callbacks") for c in cfg.callbacks.values() if c is not None]
    preemption = Preemption()
    loggers = [instantiate(c, "logger") for c in cfg.logger.values() if c is not None]

    # 5. Trainer. The training stream is infinite, so the run's length is in steps; an epoch
    # is the real token count of the corpus split over all ranks.
    world_size = _world_size(config.trainer)
    steps_per_epoch = datamodule.train_stream(world_size=world_size).steps_per_epoch
    max_steps = config.trainer.get("max_steps")
    if max_steps is None or max_steps < 0:
        max_steps = max(1, math.ceil(config.epochs * steps_per_epoch))
    # Without data.valid Lightning skips its validations, so checkpoints must not wait for one.
    no_validation = {} if datamodule.has_split("valid") else {"limit_val_batches": 0}
    trainer = instantiate(
        cfg.trainer,
        "trainer",
        **no_validation,
        max_steps=max_steps,
        val_check_interval=config.val_every or steps_per_epoch,  # not moved by max_steps
        check_val_every_n_epoch=None,
        callbacks=[*callbacks, preemption],
        # `callbacks.progress_bar=null` means no bar, not Lightning's default one.
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
        logger=loggers or False,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
    )
    if trainer.num_devices * trainer.num_nodes != world_size:
        raise UserError(
            f"trainer.devices={config.trainer.get('devices')}: give the number of devices per "
            "node (trainer.devices=N) so that the run's length in steps is known"
        )
    for logger in trainer.loggers:  # the resolved config, as wandb and TensorBoard show it
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    tokens_per_step = datamodule.batch_size * datamodule.window * world_size
    if trainer.is_global_zero:
        log.info(
            f"training {sum(p.numel() for p in module.parameters()):,} parameters for "
            f"{max_steps} steps ({max_steps / steps_per_epoch:.2f} epochs of "
            f"{steps_per_epoch} steps, {tokens_per_step} tokens per step) in {run_dir}"
        )
        log.info(module.card.init)

    # 6. Fit.
    with preemption.handling_signals():
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    preemption.raise_if_stopped(trainer.global_step)

    # 7. Evaluate: full-softmax held-out perplexities.
    results = _held_out_perplexities(trainer, module, datamodule, config.test)
    if not trainer.is_global_zero:
        return results
    for split, metrics in results.items():
        figures = "  ".join(f"{name} {value:.2f}" for name, value in metrics.items())
        log.info(f"{split} perplexity (full softmax): {figures}")

    # 8. Export the model directory (never one with NaN weights).
    if config.export:
        if not all_finite(module.parameters()):
            raise UserError(f"step {trainer.global_step}: the weights are not finite; not exported")
        card = dataclasses.replace(
            module.card,
            steps=trainer.global_step,
            perplexities=results,
            tokens_seen=trainer.global_step * tokens_per_step,
            vocab_size=len(vocab),
        )
        model_dir = save_model_dir(module.lm, vocab, run_dir / "model", card, module.config_yaml)
        log.info(f"model directory: {model_dir}")

        # 9. Show what contextual embeddings are for (a model with ELMo layers, not Kim's LM),
        # on the built-in corpus's sentences: on other text its words mean nothing.
        if config.demo and data_config.builtin and module.lm.bilm.has_elmo_layers:
            from elmo_train.use.embedder import Embedder
            from elmo_train.use.similarity import demo_report

            log.info(demo_report(Embedder(module.lm.bilm.cpu())))
    return results


def _held_out_perplexities(
    trainer: L.Trainer, module: BiLMModule, datamodule: ElmoDataModule, test: bool
) -> dict[str, dict[str, float]]:
    """Per split, the full-softmax perplexities of the final weights.

    A validation at the final step already scored them (and the test split too with
    data.val_splits=[valid,test]); only what it did not score is evaluated here.
    """
    step, scored = module.fit_validation
    results = dict(scored) if step == trainer.global_step else {}
    if datamodule.has_split("valid") and "valid" not in results:
        results["valid"] = _split_metrics(trainer.validate(module, datamodule=datamodule), "val")
    if not test:
        results.pop("test", None)
    elif datamodule.has_split("test") and "test" not in results:
        results["test"] = _split_metrics(trainer.test(module, datamodule=datamodule), "test")
    return {split: metrics for split, metrics in results.items() if metrics}


def _checked(cfg: DictConfig) -> TrainConfig:
    """The typed config; every value checked (`__post_init__` of each dataclass)."""
    try:
        return OmegaConf.to_object(cfg)
    except ValueError as error:  # the model's and optimizer's checks
        raise UserError(str(error)) from None
    except MissingMandatoryValue as error:  # e.g. data=text without data.train
        raise UserError(f"{error.full_key} is not set: give {error.full_key}=...") from None


def _world_size(trainer: dict) -> int:
    """The processes the Trainer will run: devices per node (a count, a list, or all that the
    accelerator has: "auto", -1) times nodes, read from its arguments before it is built."""
    devices = trainer.get("devices", "auto")
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, str) and "," in devices:
        devices = [d for d in devices.split(",") if d.strip()]
    if devices in ("auto", -1):
        gpu = trainer.get("accelerator") in ("gpu", "cuda", "auto")
        devices = max(1, torch.cuda.device_count()) if gpu else 1
    count = len(devices) if isinstance(devices, list) else int(devices)
    return count * int(trainer.get("num_nodes", 1))


def _split_metrics(outputs: list[dict], prefix: str) -> dict[str, float]:
    """The `prefix/` metrics of a validate or test call; none where it ran no batch
    (`+trainer.limit_val_batches=0`)."""
    metrics = outputs[0] if outputs else {}
    return {k.split("/", 1)[1]: float(v) for k, v in metrics.items() if k.startswith(f"{prefix}/")}


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> None:
    # Lightning's lines and progress lines in runs/<name>/train.log; no adverts, no deprecations.
    runtime.configure_logging()
    runtime.quiet_warnings()
    try:
        train(cfg)
    except UserError as error:
        print(f"elmo: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except Stopped as stop:  # SIGTERM or Ctrl-C: the step is saved (training/preemption.py)
        if rank_zero_only.rank == 0:
            print(stop.report(Path(cfg.run_dir) / "checkpoints"), file=sys.stderr)
        raise SystemExit(128 + stop.signum) from None


if __name__ == "__main__":
    main()
