"""`elmo train` end to end on tiny data: every config, resume after SIGKILL and SIGTERM, DDP on CPU."""

import csv
import dataclasses
import logging
import math
import os
import re
import shutil
import signal
import stat
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import OmegaConf
from train_helpers import (
    compose_train_config,
    fast_overrides,
    train_subprocess,
)

from elmo_train.config import DataConfig, config_dir
from elmo_train.data.datamodule import ElmoDataModule
from elmo_train.errors import UserError
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.chars import PADDING_CHAR
from elmo_train.train import _world_size, train
from elmo_train.training.callbacks import RunProgressBar, StepCheckpoint
from elmo_train.training.module import BiLMModule
from elmo_train.training.preemption import Stopped

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))


def test_default_run_trains_evaluates_and_exports(corpus, cache, tmp_path):
    cfg = compose_train_config(fast_overrides(corpus, tmp_path, cache, steps=4))
    results = train(cfg)
    assert set(results) == {"valid", "test"}
    assert results["valid"]["ppl"] == pytest.approx(
        (results["valid"]["ppl_fwd"] * results["valid"]["ppl_bwd"]) ** 0.5, rel=1e-6
    )
    model = tmp_path / "model"
    for name in ("options.json", "weights.hdf5", "softmax.safetensors", "vocab.txt", "README.md"):
        assert (model / name).is_file(), name
    assert "perplexity (full softmax)" in (model / "README.md").read_text()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("override", [[], ["callbacks.progress_bar=null"]])
def test_progress_bar_is_ours_or_none(override, corpus, cache, tmp_path, monkeypatch):
    bars = []
    fit = L.Trainer.fit

    def recording_fit(trainer, *args, **kwargs):
        bars.append(trainer.progress_bar_callback)
        return fit(trainer, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "fit", recording_fit)
    overrides = [*override, "export=false", "test=false"]
    train(compose_train_config(overrides + fast_overrides(corpus, tmp_path, cache)))
    if override:  # switched off: not Lightning's default bar in its place
        assert bars == [None]
    else:
        assert len(bars) == 1 and isinstance(bars[0], RichProgressBar)


def test_progress_bar_counts_the_whole_run_after_a_resume(corpus, cache, tmp_path, monkeypatch):
    seen = []  # (steps shown, total shown) as each run ends

    def record(bar, *_):
        task = next(t for t in bar.progress.tasks if t.id == bar.train_progress_bar_id)
        seen.append((task.completed, task.total))

    monkeypatch.setattr(RunProgressBar, "on_train_end", record)
    common = [*fast_overrides(corpus, tmp_path, cache, steps=4), "checkpoint_every=2",
              "export=false", "test=false"]  # fmt: skip
    train(compose_train_config([*common, "trainer.max_steps=2"]))
    train(compose_train_config([*common, "resume=true"]))
    assert seen == [(2, 2), (4, 4)]  # Lightning's own bar: the steps left as the total


def test_val_splits_records_the_test_curve_at_every_validation(corpus, cache, tmp_path):
    overrides = ["data.val_splits=[valid,test]", "val_every=2", "export=false"]
    cfg = compose_train_config(overrides + fast_overrides(corpus, tmp_path, cache, steps=4))
    results = train(cfg)
    with open(tmp_path / "logs" / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row["val/ppl"]]
    assert [int(row["step"]) for row in rows[:2]] == [1, 3]  # validations after steps 2 and 4
    assert all(row["test/ppl"] and row["test/ppl"] != row["val/ppl"] for row in rows)
    # The validation at the last step scored the final weights: it is the result, not redone.
    assert len(rows) == 2
    assert float(rows[1]["test/ppl"]) == pytest.approx(results["test"]["ppl"], rel=1e-6)
    assert float(rows[1]["val/ppl"]) == pytest.approx(results["valid"]["ppl"], rel=1e-6)


def test_a_run_with_no_validation_batches_reports_only_what_it_scored(corpus, cache, tmp_path):
    # Lightning returns no metrics when limit_val_batches=0; the run still ends and exports.
    overrides = ["+trainer.limit_val_batches=0", "test=true"]
    results = train(compose_train_config(overrides + fast_overrides(corpus, tmp_path, cache)))
    assert set(results) == {"test"} and results["test"]["ppl"] > 1
    assert (tmp_path / "model" / "weights.hdf5").is_file()


def test_row_loss_reduction_is_the_token_loss_times_the_window(corpus, cache, tmp_path):
    # Kim et al.'s loss sums over the window's T = 6 steps: SGD at lr 0.1 then moves the
    # weights exactly as the per-token loss at lr 0.6 does, and not as at lr 0.1.
    def weights(name: str, lr: float, reduction: str) -> dict[str, torch.Tensor]:
        overrides = [
            "optimizer=sgd", f"optimizer.lr={lr}", f"optimizer.loss_reduction={reduction}",
            "export=false", "test=false", "val_every=100", "trainer.gradient_clip_val=null",
        ]  # fmt: skip
        cfg = compose_train_config(overrides + fast_overrides(corpus, tmp_path / name, cache))
        train(cfg)
        ckpt = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
        return ckpt["state_dict"]

    row = weights("row", 0.1, "row")
    token_times_t = weights("token6", 0.6, "token")
    token = weights("token", 0.1, "token")
    for name, value in row.items():
        torch.testing.assert_close(value, token_times_t[name], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(row["lm.output.weight"], token["lm.output.weight"])


@pytest.mark.parametrize("zero_padding_char", [False, True])
def test_kim_steps_are_plain_clipped_sgd_on_the_row_summed_loss(
    zero_padding_char, corpus, cache, tmp_path
):
    # Kim et al.'s Torch loop, written out: the loss summed over the window and averaged over
    # rows, the global gradient norm clipped (the padding character's row counted), w -= lr * g,
    # then the padding character's row zeroed. Lightning's loop (fused SGD, its clipping, our
    # loss scaling) must move the weights exactly so. Dropout off: no RNG. The clip is 2
    # rather than 5 so that some of these small batches are clipped and some not.
    overrides = [
        "experiment=kim_ptb_small", "model.dropout=0", "trainer.gradient_clip_val=2.0",
        "export=false", "test=false", f"model.char_cnn.zero_padding_char={zero_padding_char}",
    ]  # fmt: skip
    cfg = compose_train_config(overrides + fast_overrides(corpus, tmp_path, cache, steps=4))
    train(cfg)
    trained = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]

    L.seed_everything(cfg.seed)
    datamodule = ElmoDataModule(DataConfig.from_config(cfg.data))
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = BiLMModule(
        model=dataclasses.asdict(OmegaConf.to_object(cfg.model)),
        vocab_size=len(datamodule.vocab),
        optimizer=dataclasses.asdict(OmegaConf.to_object(cfg.optimizer)),
    )
    params, state, norms = list(module.parameters()), None, []
    for _, batch in zip(range(4), datamodule.train_dataloader(), strict=False):
        out = module.lm(batch, state)
        state = out.state.detach()
        (out.loss * cfg.data.window).backward()  # every position is a target here
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, 2.0)))
        with torch.no_grad():
            for param in params:
                param -= cfg.optimizer.lr * param.grad
                param.grad = None
            if zero_padding_char:
                module.lm.bilm.char_encoder.embedding.weight[PADDING_CHAR] = 0.0
    assert min(norms) < 2.0 < max(norms)  # steps with and without clipping
    for name, value in module.state_dict().items():
        torch.testing.assert_close(trained[name], value, rtol=0, atol=1e-6, msg=name)


def test_val_splits_must_start_with_valid(corpus, cache, tmp_path):
    cfg = compose_train_config(["data.val_splits=[test]", *fast_overrides(corpus, tmp_path, cache)])
    with pytest.raises(UserError, match="val_splits"):
        train(cfg)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_two_steps(experiment, corpus, cache, tmp_path):
    overrides = [f"experiment={experiment}", "trainer=cpu", "export=false", "test=false"]
    if experiment == "domain_adapt":
        init = tmp_path / "init"
        pretrain = compose_train_config(fast_overrides(corpus, init, cache))
        train(pretrain)
        overrides += [f"init.model={init / 'model'}", "callbacks.softmax_warmup.steps=1"]
    cfg = compose_train_config(overrides + fast_overrides(corpus, tmp_path, cache))
    assert cfg.trainer.accelerator == "cpu"
    results = train(cfg)
    assert results["valid"]["ppl_fwd"] > 1


@pytest.mark.parametrize(
    "group",
    ["trainer=ddp_cpu", "logger=tensorboard", "logger=wandb", "logger=none", "callbacks=audit"],
)
def test_config_groups_compose(group, corpus, cache, tmp_path):
    cfg = compose_train_config([group, *fast_overrides(corpus, tmp_path, cache)])
    OmegaConf.resolve(cfg)


def test_wandb_offline_records_the_resolved_config(corpus, cache, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_train_config(
        ["logger=wandb", "export=false", "test=false", *fast_overrides(corpus, tmp_path, cache)]
    )
    train(cfg)
    import wandb

    wandb.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert runs, "no offline wandb run was written"
    # The run's config travels inside the offline record, which wandb's own service process
    # may still be writing after finish() returns.
    keys = (b"projection_dim", b"batch_size", b"run_dir")
    deadline = time.time() + 60
    while not all(key in runs[0].read_bytes() for key in keys) and time.time() < deadline:
        time.sleep(0.2)
    record = runs[0].read_bytes()
    assert all(key in record for key in keys), record[:200]


def test_bf16_mixed_precision_runs_on_cpu(corpus, cache, tmp_path):
    cfg = compose_train_config(
        ["trainer.precision=bf16-mixed", "export=false", "test=false",
         *fast_overrides(corpus, tmp_path, cache)]
    )  # fmt: skip
    results = train(cfg)
    assert 1 < results["valid"]["ppl"] < 1e6


def test_misspelled_key_is_an_error(corpus, cache, tmp_path):
    with pytest.raises(Exception, match="trian"):
        compose_train_config(["data.trian=x", *fast_overrides(corpus, tmp_path, cache)])
    with pytest.raises(Exception, match="dimm"):
        compose_train_config(["model.lstm.dimm=3", *fast_overrides(corpus, tmp_path, cache)])


def test_a_required_value_left_unset_is_one_line(corpus, cache, tmp_path):
    overrides = [o for o in fast_overrides(corpus, tmp_path, cache) if not o.startswith("data.")]
    with pytest.raises(UserError, match=r"^data.train is not set: give data.train=\.\.\.$"):
        train(compose_train_config(["data=text", *overrides]))


def _column(run_dir: Path, name: str) -> dict[int, float]:
    """`name` per step from the run's metrics.csv (each step at most once)."""
    with open(run_dir / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get(name)]
    values = {int(r["step"]): float(r[name]) for r in rows}
    assert len(values) == len(rows), f"a step logged {name} twice"
    return values


def _wait_while_running(process, ready) -> None:
    """Poll until `ready()` is true; the training process must still be running then."""
    deadline = time.time() + 600
    while not ready():
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline, "timed out waiting for the training process"
        time.sleep(0.01)


def _start_a_long_run_with_a_worker(corpus, cache, run_dir: Path):
    """A 200-step run in its own process group with one DataLoader worker, a few steps in."""
    overrides = [
        o for o in fast_overrides(corpus, run_dir, cache, steps=200) if "num_workers" not in o
    ]
    common = [*overrides, "data.num_workers=1", "checkpoint_every=1000", f"run_dir={run_dir}",
              "export=false", "test=false"]  # fmt: skip
    run = train_subprocess(common, cwd=run_dir, start_new_session=True)
    metrics = run_dir / "logs" / "metrics.csv"
    _wait_while_running(run, lambda: metrics.exists() and len(metrics.read_text().splitlines()) > 4)
    return common, run


def test_resume_from_step_checkpoints_continues_the_same_run(corpus, cache, tmp_path):
    # A checkpoint due on a validation step is written after that validation: Lightning resumes
    # it without validating again, so the score and the plateau halving must be in it. sgd with
    # threshold 1000 halves the lr at every validation after the first, so a checkpoint written
    # before the validation of step 6 resumes with twice the lr and different losses.
    common = [*fast_overrides(corpus, tmp_path, cache, steps=9), "checkpoint_every=2",
              "val_every=3", "callbacks.model_checkpoint.save_top_k=-1", "optimizer.name=sgd",
              "optimizer.lr=0.5", "optimizer.plateau_threshold=1000", "export=false",
              "test=false", "demo=false", "callbacks.progress_bar=null"]  # fmt: skip
    whole = tmp_path / "whole"
    train(compose_train_config([*common, f"run_dir={whole}"]))
    lr, loss, ppl = (_column(whole, name) for name in ("train/lr", "train/loss", "val/ppl"))
    assert sorted(ppl) == [2, 5, 8]
    assert lr[5] == lr[0] and lr[6] == lr[0] / 2  # the first validation has nothing to beat

    for start in (4, 6):  # a plain step checkpoint, and one on the validation of step 6
        checkpoint = whole / "checkpoints" / f"step_{start:07d}.ckpt"
        resumed = tmp_path / f"from_{start}"
        train(compose_train_config([*common, f"run_dir={resumed}", f"resume={checkpoint}"]))
        assert _column(resumed, "train/lr") == {s: lr[s] for s in range(start, 9)}
        assert _column(resumed, "train/loss") == pytest.approx(
            {s: loss[s] for s in range(start, 9)}, abs=1e-6
        )
        assert _column(resumed, "val/ppl") == pytest.approx(
            {s: ppl[s] for s in ppl if s >= start}, rel=1e-6
        )


def test_resume_from_a_step_checkpoint_is_exact_with_kims_zeroed_padding_row(
    corpus, cache, tmp_path
):
    # Kim's loop zeroes the padding character's row after every update; a checkpoint written at
    # the end of the batch must hold the zeroed row, or the resumed steps differ.
    common = [*fast_overrides(corpus, tmp_path, cache, steps=4), "experiment=kim_ptb_small",
              "trainer=cpu", "checkpoint_every=2", "callbacks.model_checkpoint.save_top_k=-1",
              "export=false", "test=false", "callbacks.progress_bar=null"]  # fmt: skip
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train(compose_train_config([*common, f"run_dir={whole}"]))
    checkpoint = whole / "checkpoints" / "step_0000002.ckpt"
    train(compose_train_config([*common, f"run_dir={resumed}", f"resume={checkpoint}"]))
    loss = _column(whole, "train/loss")
    assert _column(resumed, "train/loss") == {step: loss[step] for step in (2, 3)}


def test_resume_with_other_model_options_names_them(corpus, cache, tmp_path):
    common = [*fast_overrides(corpus, tmp_path, cache, steps=2), "export=false", "test=false"]
    train(compose_train_config(common))
    other = compose_train_config([*common, "model.lstm.dim=48", "resume=true"])
    with pytest.raises(UserError, match=r"last\.ckpt: its weights do not fit") as error:
        train(other)
    assert "model.lstm.dim=" in str(error.value) and "(now 48)" in str(error.value)
    assert "vocab_size" not in str(error.value)  # only what differs


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(corpus, cache, tmp_path):
    # The log is flushed every step, so the killed run leaves rows of steps it trained after
    # its last checkpoint: the resumed run replaces those and keeps the ones before. Every
    # checkpoint falls on a validation step, so it is written after that step's rows.
    common = [*fast_overrides(corpus, tmp_path, cache, steps=30), "checkpoint_every=6",
              "export=false", "test=false", "val_every=6",
              "+logger.csv.flush_logs_every_n_steps=1"]  # fmt: skip
    whole = train_subprocess([*common, f"run_dir={tmp_path / 'whole'}"], cwd=tmp_path)
    assert whole.wait(timeout=600) == 0, whole.stdout.read()

    killed_dir = tmp_path / "killed"
    killed = train_subprocess([*common, f"run_dir={killed_dir}"], cwd=tmp_path)
    last = killed_dir / "checkpoints" / "last.ckpt"  # what resume=true reads
    _wait_while_running(killed, last.exists)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, "the run ended before it was killed"

    resumed = train_subprocess([*common, f"run_dir={killed_dir}", "resume=true"], cwd=tmp_path)
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()
    for name in ("train/loss", "val/ppl"):  # the killed run's history, then the resumed run's
        uninterrupted, after_resume = _column(tmp_path / "whole", name), _column(killed_dir, name)
        assert after_resume == pytest.approx(uninterrupted, abs=1e-6), name
    assert sorted(after_resume) == [5, 11, 17, 23, 29]


@pytest.mark.parametrize(
    ("hook", "step"), [("on_train_batch_start", 5), ("on_validation_batch_start", 7)]
)
def test_sigterm_stops_after_the_step_or_validation_with_its_checkpoint(
    hook, step, corpus, cache, tmp_path, monkeypatch
):
    # Preemption in the middle of step 5, or of the validation at step 7: the run stops once it
    # is done, saves that step (none is due before step 1000 otherwise), and the resumed run
    # logs exactly what the uninterrupted one did.
    common = [*fast_overrides(corpus, tmp_path, cache, steps=12), "checkpoint_every=1000",
              "val_every=7", "export=false", "test=false", "callbacks.progress_bar=null"]  # fmt: skip
    train(compose_train_config([*common, f"run_dir={tmp_path / 'whole'}"]))

    hook_before = getattr(StepCheckpoint, hook)

    def preempt(callback, trainer, *args):
        if trainer.global_step == step - 1 + (hook == "on_validation_batch_start"):
            os.kill(os.getpid(), signal.SIGTERM)
        hook_before(callback, trainer, *args)

    with monkeypatch.context() as patch:
        patch.setattr(StepCheckpoint, hook, preempt)
        with pytest.raises(Stopped, match=f"stopped by SIGTERM after step {step}"):
            train(compose_train_config([*common, f"run_dir={tmp_path / 'stopped'}"]))
    saved = sorted(p.name for p in (tmp_path / "stopped" / "checkpoints").glob("*.ckpt"))
    assert saved == ["last.ckpt", f"step_{step:07d}.ckpt"]

    train(compose_train_config([*common, f"run_dir={tmp_path / 'stopped'}", "resume=true"]))
    for name in ("train/loss", "val/ppl"):
        uninterrupted = _column(tmp_path / "whole", name)
        assert _column(tmp_path / "stopped", name) == pytest.approx(uninterrupted, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signal_number", "whole_group", "exit_code"),
    [
        # `kill PID`: the main process only.
        (signal.SIGTERM, False, 143),
        # `pkill -f` / SLURM, and Ctrl-C, signal the whole process group, the DataLoader worker
        # too: it must live on until the main process has written the checkpoint and stopped it.
        (signal.SIGTERM, True, 143),
        (signal.SIGINT, True, 130),
    ],
    ids=["sigterm_main_process", "sigterm_process_group", "ctrl_c"],
)
def test_a_signal_finishes_the_step_saves_it_and_exits_with_the_resume_line(
    signal_number, whole_group, exit_code, corpus, cache, tmp_path
):
    common, run = _start_a_long_run_with_a_worker(corpus, cache, tmp_path)
    if whole_group:
        os.killpg(run.pid, signal_number)
    else:
        run.send_signal(signal_number)
    output = run.communicate(timeout=600)[0]
    assert run.returncode == exit_code, output
    assert f"elmo: stopped by {signal.Signals(signal_number).name} after step " in output
    assert "; continue with resume=true" in output
    assert "Traceback" not in output
    assert _saved_steps(tmp_path), output
    assert not list((tmp_path / "checkpoints").glob("*.partial")), output
    with pytest.raises(ProcessLookupError):  # the worker is gone too
        os.killpg(run.pid, 0)
    resumed = train_subprocess([*common, "resume=true"], cwd=tmp_path)
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()
    assert sorted(_column(tmp_path, "train/loss")) == list(range(200))


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_two_cpu_processes_see_disjoint_data_and_end_identical(corpus, cache, tmp_path):
    # Every sentence starts with its own id word, so targets tell which sentences a rank saw.
    lines = corpus["train"].read_text().splitlines()
    tagged = dict(corpus, train=tmp_path / "tagged.txt")
    tagged["train"].write_text("".join(f"sid{i} {line}\n" for i, line in enumerate(lines)))
    run = train_subprocess(
        [*fast_overrides(tagged, tmp_path / "ddp", cache, steps=3), "trainer=ddp_cpu",
         "callbacks=audit", "test=false"],
        cwd=tmp_path,
    )  # fmt: skip
    output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, output
    audits = [torch.load(tmp_path / "ddp" / "audit" / f"audit_rank{r}.pt") for r in (0, 1)]
    assert audits[0]["weights"] == audits[1]["weights"]
    assert audits[0]["steps"] == audits[1]["steps"] == [1, 2, 3]
    words = (tmp_path / "ddp" / "model" / "vocab.txt").read_text().split("\n")
    seen = [
        {words[i] for i in a["targets"].flatten().tolist() if words[i].startswith("sid")}
        for a in audits
    ]
    assert seen[0] and seen[1] and not seen[0] & seen[1]


# --- interruptions, damaged files, diverging runs ------------------------------------------


def poison(monkeypatch, steps: set[int]) -> None:
    """Give training steps `steps` (1-based) a NaN loss and gradients, as an overflow would."""
    current = {}
    training_step, forward = BiLMModule.training_step, LanguageModel.forward

    def step(module, batch, batch_idx):
        current["step"] = module.global_step + 1
        return training_step(module, batch, batch_idx)

    def nan_forward(lm, batch, state=None):
        out = forward(lm, batch, state)
        if lm.training and current.pop("step", None) in steps:
            out = dataclasses.replace(out, nll=[nll * float("nan") for nll in out.nll])
        return out

    monkeypatch.setattr(BiLMModule, "training_step", step)
    monkeypatch.setattr(LanguageModel, "forward", nan_forward)


def _saved_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*.ckpt"))


def test_a_nonfinite_step_stops_training_naming_it_and_the_last_good_checkpoint(
    corpus, cache, tmp_path, monkeypatch
):
    poison(monkeypatch, {5})
    common = [*fast_overrides(corpus, tmp_path, cache, steps=10), "checkpoint_every=2",
              "callbacks.model_checkpoint.save_top_k=-1", "test=false"]  # fmt: skip
    with pytest.raises(UserError) as error:
        train(compose_train_config(common))
    assert str(error.value).startswith("step 5: the loss or gradient norm is not finite")
    assert "last good checkpoint is step 4: resume=true" in str(error.value)
    assert _saved_steps(tmp_path) == [2, 4]  # nothing written after the bad step
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert not (tmp_path / "model").exists()


def test_skipped_nonfinite_steps_change_nothing_and_are_counted(
    corpus, cache, tmp_path, monkeypatch
):
    poison(monkeypatch, {3})
    common = [*fast_overrides(corpus, tmp_path, cache, steps=5), "checkpoint_every=1",
              "callbacks.model_checkpoint.save_top_k=-1", "skip_nonfinite_steps=1",
              "export=false", "test=false"]  # fmt: skip
    results = train(compose_train_config(common))
    assert results["valid"]["ppl"] > 1
    saved = {s: torch.load(tmp_path / "checkpoints" / f"step_{s:07d}.ckpt", weights_only=True)
             for s in (2, 3, 4)}  # fmt: skip
    for name, before in saved[2]["state_dict"].items():  # the bad step 3 moved nothing
        assert torch.equal(saved[3]["state_dict"][name], before), name
    assert str(saved[3]["optimizer_states"]) == str(saved[2]["optimizer_states"])
    assert not torch.equal(saved[4]["state_dict"]["lm.output.weight"],
                           saved[3]["state_dict"]["lm.output.weight"])  # fmt: skip
    counts = _column(tmp_path, "train/nonfinite_steps")
    assert (counts[1], counts[2], counts[4]) == (0, 1, 1)
    assert math.isnan(_column(tmp_path, "train/loss")[2])


def test_the_last_step_is_always_checkpointed(corpus, cache, tmp_path):
    common = [*fast_overrides(corpus, tmp_path, cache, steps=3), "checkpoint_every=2",
              "export=false", "test=false"]  # fmt: skip
    train(compose_train_config(common))
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_a_run_without_validation_data_checkpoints_its_steps(corpus, cache, tmp_path):
    # No data.valid: Lightning skips validation, so no checkpoint may wait for one.
    common = [*fast_overrides(corpus, tmp_path, cache, steps=4), "data.valid=null",
              "val_every=2", "checkpoint_every=2", "export=false", "test=false"]  # fmt: skip
    train(compose_train_config(common))
    assert _saved_steps(tmp_path) == [4]  # the newest step (save_top_k: 1)
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_a_copied_run_directory_resumes_from_its_newest_step_without_v1_copies(
    corpus, cache, tmp_path
):
    common = [*fast_overrides(corpus, tmp_path / "a", cache, steps=4), "checkpoint_every=2",
              "export=false", "test=false"]  # fmt: skip
    train(compose_train_config(common))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    copy = [f"run_dir={tmp_path / 'b'}", "resume=true"]
    train(compose_train_config([*common, *copy, "trainer.max_steps=6"]))
    names = sorted(p.name for p in (tmp_path / "b" / "checkpoints").glob("*.ckpt"))
    assert names == ["last.ckpt", "step_0000004.ckpt", "step_0000006.ckpt"]  # the resumed one kept
    train(compose_train_config([*common, *copy, "trainer.max_steps=8"]))
    assert _saved_steps(tmp_path / "b")[-1] == 8
    assert sorted(_column(tmp_path / "b", "train/loss")) == list(range(8))


def test_resume_auto_skips_damaged_checkpoints_and_says_which(corpus, cache, tmp_path, caplog):
    common = [*fast_overrides(corpus, tmp_path, cache, steps=6), "checkpoint_every=2",
              "callbacks.model_checkpoint.save_top_k=-1", "export=false", "test=false"]  # fmt: skip
    train(compose_train_config(common))
    checkpoints = tmp_path / "checkpoints"
    for name in ("last.ckpt", "step_0000006.ckpt"):
        data = bytearray((checkpoints / name).read_bytes())
        data[len(data) // 2 : len(data) // 2 + 2048] = os.urandom(2048)
        (checkpoints / name).write_bytes(data)
    with pytest.raises(UserError, match=r"last\.ckpt: damaged: its sha256 differs"):
        train(compose_train_config([*common, "resume=true", "trainer.max_steps=8"]))
    caplog.set_level(logging.INFO)
    train(compose_train_config([*common, "resume=auto", "trainer.max_steps=8"]))
    out = caplog.text
    assert "skipped last.ckpt (damaged: its sha256 differs from last.ckpt.sha256)" in out
    assert f"init: resumed from {checkpoints / 'step_0000004.ckpt'}" in out
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 8


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["random_bytes", "truncated"])
def test_resuming_a_damaged_last_checkpoint_is_one_line_and_exit_2(damage, corpus, cache, tmp_path):
    common = [*fast_overrides(corpus, tmp_path, cache, steps=2), "export=false", "test=false"]
    train(compose_train_config(common))
    last = tmp_path / "checkpoints" / "last.ckpt"
    data = bytearray(last.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2 :]
    else:
        data[len(data) // 2 : len(data) // 2 + 2048] = os.urandom(2048)
    last.write_bytes(data)
    run = train_subprocess([*common, "resume=true", "trainer.max_steps=4"], cwd=tmp_path)
    output = run.communicate(timeout=600)[0]
    assert run.returncode == 2, output
    errors = [line for line in output.splitlines() if line.startswith("elmo: error:")]
    assert len(errors) == 1 and f"{last}: damaged" in errors[0], output
    assert "Traceback" not in output and "PytorchStreamReader" not in output


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("checkpoint_every=0", "checkpoint_every=0: use 1 or more"),
        ("val_every=0", "val_every=0: use 1 or more"),
        ("epochs=-1", "epochs=-1.0: use a positive number"),
        ("skip_nonfinite_steps=-1", "skip_nonfinite_steps=-1: use 0 or more"),
        ("optimizer.lr=-1", "optimizer.lr must be positive"),
        ("trainer.max_steps=-1", "set epochs=N or trainer.max_steps=N"),
    ],
)
def test_bad_top_level_values_are_one_line(override, message, corpus, cache, tmp_path):
    overrides = [*fast_overrides(corpus, tmp_path, cache), override]
    if override.startswith("trainer.max_steps"):
        overrides.append("epochs=null")
    with pytest.raises(UserError, match=re.escape(message)):
        train(compose_train_config(overrides))
    assert not (tmp_path / "checkpoints").exists()  # refused before anything ran


def test_the_trainer_is_built_with_the_run_length_in_steps(corpus, cache, tmp_path, monkeypatch):
    built = {}
    init = L.Trainer.__init__

    def recording_init(trainer, *args, **kwargs):
        built.update(kwargs)
        init(trainer, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "__init__", recording_init)
    overrides = ["trainer.max_steps=-1", "epochs=0.03", "export=false", "test=false"]
    cfg = compose_train_config([*fast_overrides(corpus, tmp_path, cache), *overrides])
    train(cfg)
    datamodule = ElmoDataModule(DataConfig.from_config(cfg.data))
    datamodule.prepare_data()
    datamodule.setup("fit")
    steps_per_epoch = datamodule.train_stream(world_size=1).steps_per_epoch
    assert built["max_steps"] == math.ceil(0.03 * steps_per_epoch) > 1
    assert built["val_check_interval"] == steps_per_epoch


@pytest.mark.parametrize(
    ("trainer", "world_size"),
    [
        ({"accelerator": "cpu", "devices": 1}, 1),
        ({"accelerator": "cpu", "devices": 2, "num_nodes": 1}, 2),
        ({"accelerator": "cpu", "devices": "auto"}, 1),
        ({"accelerator": "gpu", "devices": [0, 1], "num_nodes": 2}, 4),
        ({"accelerator": "gpu", "devices": "0,1,2"}, 3),
        ({"accelerator": "gpu", "devices": "8", "num_nodes": 2}, 16),
    ],
)
def test_world_size_is_read_from_the_trainer_arguments(trainer, world_size):
    assert _world_size(trainer) == world_size


def test_a_second_ctrl_c_aborts_at_once(corpus, cache, tmp_path, monkeypatch):
    hook_before = StepCheckpoint.on_train_batch_start

    def impatient(callback, trainer, *args):
        if trainer.global_step == 3:  # inside step 4
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the first: finish the step
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the second: now
        hook_before(callback, trainer, *args)

    monkeypatch.setattr(StepCheckpoint, "on_train_batch_start", impatient)
    common = [*fast_overrides(corpus, tmp_path, cache, steps=8), "checkpoint_every=2",
              "callbacks.progress_bar=null"]  # fmt: skip
    with pytest.raises(Stopped, match="aborted by SIGINT") as stop:
        train(compose_train_config(common))
    assert stop.value.step is None
    assert _saved_steps(tmp_path) == [2]  # step 4 was not saved
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


@pytest.mark.slow
@pytest.mark.parametrize("where", ["run_dir", "hydra.run.dir", "a_file"])
def test_an_unusable_run_directory_is_one_line_and_exit_2(where, corpus, cache, tmp_path):
    (tmp_path / "taken").write_text("a file, not a directory\n")
    overrides = [o for o in fast_overrides(corpus, tmp_path, cache) if "run_dir" not in o]
    target = {
        "run_dir": "run_dir=/proc/elmo-test/run",
        "hydra.run.dir": "hydra.run.dir=/proc/elmo-test/run",
        "a_file": f"run_dir={tmp_path / 'taken'}",
    }[where]
    run = train_subprocess([*overrides, target], cwd=tmp_path)
    output = run.communicate(timeout=600)[0]
    assert run.returncode == 2, output
    assert output.strip().splitlines()[-1].startswith("elmo: error: "), output
    assert ("/proc/elmo-test/run" if where != "a_file" else "is a file") in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_checkpoints_and_the_model_directory_follow_the_umask(corpus, cache, tmp_path):
    run = train_subprocess(
        [*fast_overrides(corpus, tmp_path / "run", cache), "test=false"],
        cwd=tmp_path,
        preexec_fn=lambda: os.umask(0o022),
    )
    output = run.communicate(timeout=600)[0]
    assert run.returncode == 0, output
    for directory in ("checkpoints", "model"):
        path = tmp_path / "run" / directory
        assert stat.S_IMODE(path.stat().st_mode) == 0o755, path
        files = list(path.iterdir())
        assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in files), [
            (f.name, oct(f.stat().st_mode)) for f in files
        ]
    assert {"last.ckpt", "last.ckpt.sha256"} <= {
        f.name for f in (tmp_path / "run" / "checkpoints").iterdir()
    }


def _sampled_run(corpus, cache, run_dir: Path, *extra: str) -> dict[int, float]:
    overrides = [*fast_overrides(corpus, run_dir, cache, steps=4), "export=false", "test=false"]
    train(compose_train_config([*overrides, "model.softmax.kind=sampled",
                                "model.softmax.n_negatives=16", *extra]))  # fmt: skip
    return _column(run_dir, "train/loss")


def test_sampled_softmax_trains_with_row_sparse_updates_equal_to_dense(
    corpus, cache, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    sparse = _sampled_run(corpus, cache, tmp_path / "sparse")
    assert "output layer: row-sparse updates" in caplog.text
    dense = _sampled_run(corpus, cache, tmp_path / "dense", "optimizer.sparse_updates=false")
    assert "output layer: dense updates (optimizer.sparse_updates=false)" in caplog.text
    # Same negatives, same update up to float summation order: the losses of steps 2-4 show it.
    assert sparse.keys() == dense.keys() and len(sparse) == 4
    for step in sparse:
        assert math.isclose(sparse[step], dense[step], rel_tol=1e-4), step


@pytest.mark.slow
def test_compile_switch_compiles_the_lstm_or_says_why_not(corpus, cache, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    # No dropout: inductor draws its own masks (its RNG is not eager's).
    eager = _sampled_run(corpus, cache, tmp_path / "eager", "model.dropout=0")
    compiled = _sampled_run(
        corpus, cache, tmp_path / "compiled", "model.dropout=0", "compile.target=lstm"
    )
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("compile:")]
    assert said[0] == "compile: none (eager)"
    assert said[1] == "compile: lstm (inductor, default)" or said[1].startswith("compile: eager,")
    for step in eager:  # the compiled LSTM computes the same function
        assert math.isclose(eager[step], compiled[step], rel_tol=1e-4), step
