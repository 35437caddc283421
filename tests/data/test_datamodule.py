"""ElmoDataModule: text files to batches through the real store; resume through a Trainer."""

import dataclasses
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from elmo_train.config import DataConfig
from elmo_train.data.datamodule import ElmoDataModule
from elmo_train.errors import UserError
from elmo_train.model.batch import Batch

WORDS = "the a cat dog sat ran on under mat log big small red old".split()


def write_corpus(path: Path, n_sentences: int, seed: int) -> Path:
    generator = torch.Generator().manual_seed(seed)
    lines = []
    for _ in range(n_sentences):
        length = int(torch.randint(1, 15, (1,), generator=generator))
        picks = torch.randint(len(WORDS), (length,), generator=generator).tolist()
        lines.append(" ".join(WORDS[i] for i in picks))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path) -> dict[str, str]:
    return {
        "train": str(write_corpus(tmp_path / "train.txt", 300, 0)),
        "valid": str(write_corpus(tmp_path / "valid.txt", 37, 1)),
        "cache_dir": str(tmp_path / "cache"),
    }


def make(corpus: dict, **kw) -> ElmoDataModule:
    options = dict(batch_size=4, window=5, num_workers=0, num_proc=1, shuffle_block=64)
    dm = ElmoDataModule(DataConfig(**corpus, **{**options, **kw}))
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_smoke_through_the_real_store(corpus, caplog):
    with caplog.at_level(logging.INFO, logger="elmo_train.data.datamodule"):
        dm = make(corpus, num_workers=2)
    assert dm.vocab.words[:3] == ["<S>", "</S>", "<UNK>"] and len(dm.vocab) == len(WORDS) + 3
    assert "built a 17-word vocabulary" in caplog.text
    assert "prepare: 300 sentences" in caplog.text  # the report reaches the log (train.log)
    assert list((Path(corpus["cache_dir"]) / "vocab").glob("*.txt"))
    counts = dm.counts
    assert counts["train"]["sentences"] == 300 and set(counts) == {"train", "valid"}
    positions = counts["train"]["tokens"] + counts["train"]["sentences"]
    assert dm.steps_per_epoch == positions // 20
    batches = list(itertools.islice(dm.train_dataloader(), 6))
    assert batches[0].fwd_chars.shape == (4, 5, 50) and batches[0].reset.all()
    assert all(b.mask.all() for b in batches) and not batches[1].reset.any()
    assert_same(batches, list(itertools.islice(make(corpus).train_dataloader(), 6)))
    valid = list(dm.val_dataloader())
    valid_counts = counts["valid"]
    assert sum(int(b.mask.sum()) for b in valid) == (
        valid_counts["tokens"] + valid_counts["sentences"]
    )
    assert dm.test_dataloader() == [] and not dm.has_split("test")


def assert_same(a: list[Batch], b: list[Batch]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for field in dataclasses.fields(x):
            assert torch.equal(getattr(x, field.name), getattr(y, field.name)), field.name


def test_state_dict_follows_the_trainer_and_sets_the_start(corpus):
    dm = make(corpus)
    assert dm.state_dict() == {"batches_consumed": 0}
    dm.trainer = SimpleNamespace(
        global_step=3, accumulate_grad_batches=2, global_rank=1, world_size=2
    )
    assert dm.state_dict() == {"batches_consumed": 6}
    stream = dm.train_stream()
    assert (stream.rank, stream.world_size) == (1, 2)
    dm.trainer = None
    full = list(itertools.islice(dm.train_dataloader(), 10))
    resumed = make(corpus)
    resumed.load_state_dict({"batches_consumed": 6})
    assert_same(list(itertools.islice(resumed.train_dataloader(), 4)), full[6:])


def test_bad_options_are_user_errors(corpus):
    with pytest.raises(UserError, match="data.mode"):
        DataConfig(**corpus, mode="documents")
    with pytest.raises(UserError, match="data.window"):
        DataConfig(**corpus, window=0)
    too_many_rows = make(corpus, mode="contiguous", batch_size=301)
    with pytest.raises(UserError, match="300 sentences, fewer than the 301 rows"):
        too_many_rows.train_dataloader()


class Recorder(L.LightningModule):
    """Records the batches it trains on and the validation targets it sees."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[Batch] = []
        self.val_targets = 0

    def training_step(self, batch, batch_idx):
        self.seen.append(batch.to("cpu"))
        return (self.weight * batch.mask.float()).sum()

    def validation_step(self, batch, batch_idx):
        self.val_targets += int(batch.mask.sum())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(dm, max_steps: int, ckpt_path=None) -> tuple[Recorder, L.Trainer]:
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=max_steps,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
    )
    module = Recorder()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module, trainer


def test_trainer_resume_sees_the_uninterrupted_batches(corpus, tmp_path):
    uninterrupted, _ = fit(make(corpus, num_workers=1), 7)
    first, trainer = fit(make(corpus, num_workers=1), 4)
    ckpt = tmp_path / "step4.ckpt"
    trainer.save_checkpoint(ckpt)
    assert torch.load(ckpt, weights_only=True)["ElmoDataModule"] == {"batches_consumed": 4}
    resumed, _ = fit(make(corpus, num_workers=1), 7, ckpt_path=ckpt)
    assert_same(first.seen + resumed.seen, uninterrupted.seen)
    assert not resumed.seen[0].reset.any()  # carried states come back from the checkpoint
    valid = make(corpus).counts["valid"]
    assert first.val_targets == valid["tokens"] + valid["sentences"]


class WorkerPids(torch.utils.data.IterableDataset):
    """Yields the pid of the worker process that produced each item."""

    def __iter__(self):
        while True:
            yield os.getpid()


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _proc_state(pid) in ("Z", "gone"):
            return True
        time.sleep(0.05)
    return False


def _proc_state(pid: int) -> str:
    try:  # the third field of /proc/PID/stat; a zombie has exited and waits to be reaped
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


@pytest.mark.skipif(not hasattr(signal, "sigwaitinfo"), reason="needs sigwaitinfo (Linux)")
def test_workers_outlive_a_sigterm_from_outside_but_not_one_from_the_main_process(corpus):
    # SLURM and `pkill -f` signal the workers too: the main process must stay the one to stop
    # them (its SIGTERM checkpoint needs them alive), yet its own terminate() must still work.
    batches = iter(make(corpus, num_workers=1)._loader(WorkerPids()))
    worker = next(batches)
    assert worker != os.getpid()
    subprocess.run(["kill", "-TERM", str(worker)], check=True)  # sent by another process
    assert not _gone(worker, timeout=1.0)
    assert [next(batches) for _ in range(3)] == [worker] * 3
    os.kill(worker, signal.SIGTERM)  # sent by the main process, as multiprocessing does at exit
    assert _gone(worker)
    del batches


# --- the typed data config ------------------------------------------------------------------


def test_every_data_key_is_typed_and_checked(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from elmo_train.config import config_dir, register_configs

    register_configs()
    mine = tmp_path / "configs" / "data"
    mine.mkdir(parents=True)
    (mine / "mine.yaml").write_text("defaults:\n  - text\ntrain: t.txt\nbatchsize: 8\n")
    search = f"hydra.searchpath=[file://{tmp_path / 'configs'}]"
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["data=ptb"])
        data = OmegaConf.to_object(cfg.data)
        assert isinstance(data, DataConfig) and (data.batch_size, data.window) == (20, 35)
        assert data.cache_dir is None  # one default: data.prepare.default_cache_dir()
        with pytest.raises(Exception, match="batchsize"):  # a misspelled key in a YAML file
            compose("train", overrides=["data=mine", search])
        added = compose("train", overrides=["+data.batchsize=8"])  # Hydra lets `+` add it
        with pytest.raises(
            UserError, match=r"data.batchsize is not .* \(did you mean data.batch_size"
        ):
            DataConfig.from_config(added.data)
        with pytest.raises(Exception, match="batch_size"):  # a value of the wrong type
            compose("train", overrides=["data.batch_size=many"])
    for key, value, message in [
        ("mode", "documents", "data.mode=documents: use one of stream, contiguous, sentence"),
        ("normalize", "NFD", "data.normalize=NFD: use one of null, NFC, NFKC"),
        ("eval_batch_size", 0, "data.eval_batch_size=0: use 1 or more"),
        ("num_workers", -1, "data.num_workers=-1: use 0 or more"),
        ("vocab_max_size", 3, "data.vocab_max_size=3: use 4 or more"),
        ("val_splits", ["test"], "data.val_splits=['test']: use [valid] or [valid, test]"),
        ("train", [], "data.train is not set"),
    ]:
        with pytest.raises(UserError, match=re.escape(message)):
            DataConfig(**{"train": "t.txt", key: value})


def test_own_training_file_with_the_demo_validation_set_is_refused(tmp_path):
    """`elmo train data.train=mine.txt` without `data=text` kept the demo's validation text."""
    mine = tmp_path / "mine.txt"
    mine.write_text("a sentence of my own .\n", encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "elmo_train", "train", f"data.train={mine}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and run.stderr.splitlines()[-1] == (
        f"elmo: error: data.train={mine} replaces the built-in corpus, but data.valid is still "
        "the built-in demo's: add data=text to train on your own files (with data.valid=FILE "
        "for held-out perplexity)"
    )
    assert DataConfig(train=str(mine), valid=None).valid is None  # data=text: fine
    from elmo_train.demo.corpus import corpus_path

    assert DataConfig(train=str(corpus_path("train")), valid=str(corpus_path("valid"))).builtin


def test_validation_sharing_almost_no_words_with_the_vocabulary_is_refused(corpus, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("ein Hund lief über die Wiese\n" * 10 + "the cat sat\n", encoding="utf-8")
    with pytest.raises(UserError) as caught:
        make({**corpus, "valid": str(other)})
    assert str(caught.value) == (
        f"data.valid={other}: 95.2% of its tokens are outside the 17-word vocabulary of "
        "data.train, so it shares almost no words with it: check that the files are the right "
        "ones (same language, tokenization and data.normalize)"
    )


def test_normalize_makes_one_word_of_both_spellings_and_keys_the_cache(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the caf\u00e9 .\nthe cafe\u0301 .\n" * 5, encoding="utf-8")
    common = {"train": str(text), "cache_dir": str(tmp_path / "cache")}
    plain, nfc = make(common, batch_size=2), make({**common, "normalize": "NFC"}, batch_size=2)
    assert "cafe\u0301" in plain.vocab and "caf\u00e9" in plain.vocab
    assert "cafe\u0301" not in nfc.vocab and len(nfc.vocab) == len(plain.vocab) - 1
    assert plain.stores["train"].path != nfc.stores["train"].path
    assert nfc.stores["train"].meta["tokenizer"]["normalize"] == "NFC"
