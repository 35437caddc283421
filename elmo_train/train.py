"""`elmo train`: the training recipe, top to bottom.

seed -> data -> model -> callbacks and loggers -> trainer -> fit -> evaluate -> export -> demo.
"""

import dataclasses
import math
import signal
import sys
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from elmo_train.config import config_dir, register_configs
from elmo_train.errors import UserError
from elmo_train.formats.model_dir import save_model_dir
from elmo_train.training.adapt import initialize, model_config_from_init
from elmo_train.training.checkpoint import AtomicCheckpointIO, resume_checkpoint
from elmo_train.training.module import BiLMModule

register_configs()


def instantiate(node: DictConfig, key: str, **kwargs):
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise UserError(f"{key}: {cause or error}; check the {key}.* keys of your config") from None


def train(cfg: DictConfig) -> dict:
    run_dir = Path(cfg.run_dir)
    ckpt_path = resume_checkpoint(cfg.resume, run_dir)

    # 1. Seed: data order and dropout/negatives are pure functions of (seed, step, rank).
    L.seed_everything(cfg.seed, workers=True)

    # 2. Data: prepare (cached) and open the corpus stores; the vocabulary sizes the softmax.
    datamodule = instantiate(cfg.data, "data")
    datamodule.prepare_data()
    datamodule.setup("fit")
    vocab = datamodule.vocab

    # 3. Model: with init.*, the pretrained architecture and weights (elmo_train/training/adapt.py).
    init = OmegaConf.to_object(cfg.init)
    model_config = OmegaConf.to_object(cfg.model)
    model_config = model_config_from_init(init, model_config) or model_config
    module = BiLMModule(
        model=dataclasses.asdict(model_config),
        vocab_size=len(vocab),
        optimizer=dataclasses.asdict(OmegaConf.to_object(cfg.optimizer)),
        seed=cfg.seed,
        vocab=list(vocab.words),
    )
    # A resumed run restores its own weights from the checkpoint instead.
    module.card.init = (
        f"init: resumed from {ckpt_path}" if ckpt_path else initialize(module.lm, init, vocab)
    )

    # 4. Callbacks and loggers (`callbacks.NAME=null` switches one off).
    callbacks = [instantiate(c, "callbacks") for c in cfg.callbacks.values() if c is not None]
    loggers = [instantiate(c, "logger") for c in cfg.logger.values() if c is not None]

    # 5. Trainer. The training stream is infinite, so its length is in steps; an epoch is the
    # real token count of the corpus split over all ranks.
    trainer = instantiate(
        cfg.trainer,
        "trainer",
        check_val_every_n_epoch=None,
        callbacks=callbacks,
        # `callbacks.progress_bar=null` means no bar, not Lightning's default one.
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
        logger=loggers or False,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
    )
    world_size = trainer.num_devices * trainer.num_nodes
    steps_per_epoch = datamodule.train_stream(world_size=world_size).steps_per_epoch
    max_steps = cfg.trainer.max_steps
    if max_steps is None or max_steps < 0:
        if cfg.epochs is None:
            raise UserError("set epochs=N or trainer.max_steps=N: the training length is unknown")
        max_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    trainer.fit_loop.epoch_loop.max_steps = max_steps  # known only now that ranks are
    trainer.val_check_interval = cfg.val_every or min(steps_per_epoch, max_steps)
    tokens_per_step = datamodule.batch_size * datamodule.window * world_size
    module.card.name = str(cfg.run_name)
    module.card.data = str(cfg.data.train)
    module.card.command = " ".join(["elmo train", *HydraConfig.get().overrides.task])
    module.config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    for logger in trainer.loggers:  # the resolved config, as wandb and TensorBoard show it
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    if trainer.is_global_zero:
        print(
            f"training {sum(p.numel() for p in module.parameters()):,} parameters for "
            f"{max_steps} steps ({max_steps / steps_per_epoch:.2f} epochs of "
            f"{steps_per_epoch} steps, {tokens_per_step} tokens per step) in {run_dir}"
        )
        print(module.card.init)

    # 6. Fit.
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    # 7. Evaluate: full-softmax held-out perplexities.
    # A validation at the final step already scored these weights (and the test split too
    # with data.val_splits=[valid,test]); only what it did not score is evaluated here.
    step, scored = module.fit_validation
    results = dict(scored) if step == trainer.global_step else {}
    if datamodule.has_split("valid") and "valid" not in results:
        results["valid"] = _split_metrics(trainer.validate(module, datamodule=datamodule), "val")
    if not cfg.test:
        results.pop("test", None)
    elif datamodule.has_split("test") and "test" not in results:
        results["test"] = _split_metrics(trainer.test(module, datamodule=datamodule), "test")
    results = {split: metrics for split, metrics in results.items() if metrics}
    if not trainer.is_global_zero:
        return results
    for split, metrics in results.items():
        figures = "  ".join(f"{name} {value:.2f}" for name, value in metrics.items())
        print(f"{split} perplexity (full softmax): {figures}")

    # 8. Export the model directory.
    if cfg.export:
        card = dataclasses.replace(
            module.card,
            steps=trainer.global_step,
            perplexities=results,
            tokens_seen=trainer.global_step * tokens_per_step,
            vocab_size=len(vocab),
        )
        model_dir = save_model_dir(module.lm, vocab, run_dir / "model", card, module.config_yaml)
        print(f"model directory: {model_dir}")

        # 9. Show what contextual embeddings are for (a model with ELMo layers; not Kim's LM).
        if cfg.demo and module.lm.bilm.has_elmo_layers:
            from elmo_train.use.embedder import Embedder
            from elmo_train.use.similarity import demo_report

            print(demo_report(Embedder(module.lm.bilm.cpu())))
    return results


def _split_metrics(outputs: list[dict], prefix: str) -> dict[str, float]:
    """The `prefix/` metrics of a validate or test call; none where it ran no batch
    (`+trainer.limit_val_batches=0`)."""
    metrics = outputs[0] if outputs else {}
    return {k.split("/", 1)[1]: float(v) for k, v in metrics.items() if k.startswith(f"{prefix}/")}


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except UserError as error:
        print(f"elmo: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except SIGTERMException:  # Lightning's, a SystemExit with status 0
        # Preemption: training stopped after a step or a validation, which StepCheckpoint saved.
        last = Path(cfg.run_dir) / "checkpoints" / "last.ckpt"
        then = "continue with resume=true" if last.is_file() else "no checkpoint yet: start again"
        if rank_zero_only.rank == 0:
            print(f"elmo: stopped by SIGTERM; {then} ({last.parent})", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None


if __name__ == "__main__":
    main()
