"""The LightningDataModule: text files to prepared stores to per-rank batch streams.

`prepare_data()` (local rank 0) builds, or finds in `cache_dir`, the tokenizer model, the
vocabulary and one corpus store per split; `setup()` opens them on every rank. The training
stream is infinite (bound it with `max_steps`; DDP needs it) and its order a pure function of
(seed, epoch, rank, world size, step), so resuming needs only the step: `state_dict()` holds
the batches consumed, and rank 0's checkpoint is enough for every rank.
"""

import hashlib
import json
import os
import warnings
from functools import partial
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from elmo_train.data.files import resolve_inputs
from elmo_train.data.prepare import prepare
from elmo_train.data.store import CorpusStore
from elmo_train.data.stream import MODES, BatchStream, training_rows
from elmo_train.data.tokenizer import TOKENIZERS, make_tokenizer
from elmo_train.data.vocab_builder import build_vocabulary
from elmo_train.data.workers import ignore_sigterm_unless_from
from elmo_train.errors import UserError
from elmo_train.formats.vocab_file import Vocabulary

SPLITS = ("train", "valid", "test")

# Evaluation streams define an exact `__len__` that already accounts for ranks and workers.
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")


class ElmoDataModule(L.LightningDataModule):
    """Batches of `train` (infinite, shuffled) and of `valid`/`test` (one exact pass).

    `train`, `valid`, `test`: files or globs. `vocab`: a bilm-tf vocab.txt, or None to build
    one from `train` (saved under `cache_dir/vocab/`). `tokenizer`: `whitespace` (bilm-tf) or
    `sentencepiece` with `sp_model` (trained on `train` with `sp_vocab_size` pieces if the file
    does not exist; None keeps it in the cache). Batches are `(batch_size, window)` packed rows
    (`mode="stream"`), the same from contiguous parts of the corpus in order (`mode="contiguous"`,
    Kim et al.), or one sentence per row (`mode="sentence"`); see `stream.BatchStream`.
    `val_splits`: the splits scored at every validation, in order (`["valid", "test"]` records
    the test curve too; `valid` stays first: learning-rate schedules watch it).
    """

    def __init__(
        self,
        train: list[str] | str,
        valid: list[str] | str | None = None,
        test: list[str] | str | None = None,
        vocab: str | None = None,
        batch_size: int = 64,
        window: int = 20,
        eval_batch_size: int | None = None,
        mode: str = "stream",
        tokenizer: str = "whitespace",
        sp_model: str | None = None,
        sp_vocab_size: int = 8000,
        vocab_min_count: int = 1,
        vocab_max_size: int | None = None,
        num_workers: int = 1,
        prefetch_factor: int = 4,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_block: int = 65536,
        max_sentence_tokens: int = 400,
        cache_dir: str = "~/.cache/elmo-train",
        num_proc: int = 2,
        val_splits: list[str] | tuple[str, ...] = ("valid",),
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise UserError(f"data.mode={mode!r}: use one of {', '.join(MODES)}")
        if tokenizer not in TOKENIZERS:
            raise UserError(f"data.tokenizer={tokenizer!r}: use one of {', '.join(TOKENIZERS)}")
        for key, value in (
            ("batch_size", batch_size),
            ("window", window),
            ("eval_batch_size", eval_batch_size or 1),
            ("prefetch_factor", prefetch_factor),
            ("shuffle_block", shuffle_block),
            ("max_sentence_tokens", max_sentence_tokens),
            ("num_proc", num_proc),
        ):
            if value < 1:
                raise UserError(f"data.{key}={value}: use 1 or more")
        if num_workers < 0 or seed < 0:
            raise UserError("data.num_workers and data.seed must be 0 or more")
        if not train:
            raise UserError("data.train is empty: give the training text files or globs")
        val_splits = tuple(val_splits)
        if not val_splits or val_splits[0] != "valid" or not set(val_splits) <= {"valid", "test"}:
            raise UserError(
                f"data.val_splits={list(val_splits)}: use [valid] or [valid, test] (valid first)"
            )
        if "test" in val_splits and not test:
            raise UserError("data.val_splits includes test but data.test is not set")
        self.patterns = {"train": train, "valid": valid, "test": test}
        self.vocab_path = vocab
        self.batch_size = batch_size
        self.window = window
        self.eval_batch_size = eval_batch_size or batch_size
        self.mode = mode
        self.tokenizer_kind = tokenizer
        self.sp_model = sp_model
        self.sp_vocab_size = sp_vocab_size
        self.vocab_min_count = vocab_min_count
        self.vocab_max_size = vocab_max_size
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.seed = seed
        self.shuffle = shuffle
        self.shuffle_block = shuffle_block
        self.max_sentence_tokens = max_sentence_tokens
        self.cache_dir = Path(os.path.expanduser(cache_dir))
        self.num_proc = num_proc
        self.val_splits = val_splits
        self.vocab: Vocabulary | None = None
        self.stores: dict[str, CorpusStore] = {}
        self._start_step = 0

    # --- files, tokenizer, vocabulary, stores ---------------------------------------------

    def has_split(self, split: str) -> bool:
        return bool(self.patterns[split])

    def _files(self, split: str) -> list[Path]:
        pattern = self.patterns[split]
        return resolve_inputs([pattern] if isinstance(pattern, str) else list(pattern))

    def _train_key(self, *extra) -> str:
        """Hash of the training files (path, size, mtime) and `extra`: names derived artefacts."""
        inputs = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in self._files("train")]
        material = json.dumps([inputs, *extra], sort_keys=True)
        return hashlib.sha256(material.encode()).hexdigest()[:20]

    def _tokenizer(self):
        if self.tokenizer_kind != "sentencepiece":
            return make_tokenizer(self.tokenizer_kind)
        model = self.sp_model
        if model is None:
            model = (
                self.cache_dir / "sentencepiece" / f"{self._train_key(self.sp_vocab_size)}.model"
            )
        return make_tokenizer(
            "sentencepiece",
            model,
            train_paths=self._files("train"),
            vocab_size=self.sp_vocab_size,
        )

    def _built_vocab_path(self, tokenizer) -> Path:
        described = {k: v for k, v in tokenizer.describe().items() if k != "model"}
        key = self._train_key(described, self.vocab_min_count, self.vocab_max_size)
        return self.cache_dir / "vocab" / f"{key}.txt"

    def _vocabulary(self, tokenizer, build: bool) -> Vocabulary:
        if self.vocab_path is not None:
            return Vocabulary.load(self.vocab_path)
        path = self._built_vocab_path(tokenizer)
        if build and not path.is_file():
            vocab, _ = build_vocabulary(
                self._files("train"),
                tokenizer,
                self.vocab_min_count,
                self.vocab_max_size,
                num_proc=self.num_proc,
            )
            vocab.save(path)
            print(f"data: built a {len(vocab):,}-word vocabulary from data.train: {path}")
        return Vocabulary.load(path)

    def _open(self, build: bool) -> None:
        if self.stores:
            return
        tokenizer = self._tokenizer()
        self.vocab = self._vocabulary(tokenizer, build)
        for split in SPLITS:
            if self.has_split(split):
                self.stores[split] = prepare(
                    self._files(split),
                    self.vocab,
                    tokenizer,
                    self.cache_dir,
                    self.num_proc,
                    verbose=build,
                )

    def prepare_data(self) -> None:
        """Build (or reuse from `cache_dir`) tokenizer model, vocabulary and stores."""
        self._open(build=True)

    def setup(self, stage: str | None = None) -> None:
        """Open what `prepare_data` built (every rank; cheap when it already ran here)."""
        self._open(build=False)

    @property
    def counts(self) -> dict[str, dict]:
        """Per split, the store's counts (sentences, tokens, types, OOV rate, ...)."""
        return {split: store.meta["counts"] for split, store in self.stores.items()}

    # --- streams --------------------------------------------------------------------------

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def train_stream(self, rank: int | None = None, world_size: int | None = None) -> BatchStream:
        """This rank's infinite training stream from the start step (see `load_state_dict`)."""
        if "train" not in self.stores:
            raise RuntimeError("call prepare_data() and setup() before asking for batches")
        default_rank, default_world = self._rank_world()
        world_size = default_world if world_size is None else world_size
        rows = training_rows(self.mode, self.batch_size, world_size)
        if self.stores["train"].n_sentences < rows:
            raise UserError(
                f"data.train has {self.stores['train'].n_sentences} sentences, fewer than the "
                f"{rows} rows of data.mode={self.mode} on {world_size} rank(s): lower "
                "data.batch_size or give more text"
            )
        return BatchStream(
            self.stores["train"],
            batch_size=self.batch_size,
            window=self.window,
            mode=self.mode,
            training=True,
            seed=self.seed,
            shuffle=self.shuffle,
            shuffle_block=self.shuffle_block,
            rank=default_rank if rank is None else rank,
            world_size=world_size,
            start_step=self._start_step,
            max_sentence_tokens=self.max_sentence_tokens,
        )

    def eval_stream(self, split: str) -> BatchStream:
        """This rank's one exact pass over `split` (the same length on every rank)."""
        rank, world_size = self._rank_world()
        return BatchStream(
            self.stores[split],
            batch_size=self.eval_batch_size,
            window=self.window,
            mode=self.mode,
            training=False,
            rank=rank,
            world_size=world_size,
            max_sentence_tokens=self.max_sentence_tokens,
        )

    @property
    def steps_per_epoch(self) -> int:
        """Training batches per epoch on each rank (the trainer's world size, else 1)."""
        return self.train_stream().steps_per_epoch

    def _loader(self, dataset: BatchStream) -> DataLoader:
        # batch_size=None: the dataset yields whole batches, in order whatever num_workers.
        workers = {}
        if self.num_workers > 0:
            workers = {"prefetch_factor": self.prefetch_factor, "persistent_workers": True}
        return DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=partial(ignore_sigterm_unless_from, os.getpid()),
            **workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_stream())

    def val_dataloader(self) -> DataLoader | list:
        if "valid" not in self.stores:
            return []
        loaders = [self._loader(self.eval_stream(split)) for split in self.val_splits]
        return loaders[0] if len(loaders) == 1 else loaders

    def test_dataloader(self) -> DataLoader | list:
        return self._loader(self.eval_stream("test")) if "test" in self.stores else []

    # --- resume ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, int]:
        """Training batches consumed on each rank: the stream position, a pure function of the step."""
        if self.trainer is None:
            return {"batches_consumed": self._start_step}
        return {"batches_consumed": self.trainer.global_step * self.trainer.accumulate_grad_batches}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """The next `train_dataloader()` starts where the checkpointed run stopped."""
        self._start_step = int(state_dict["batches_consumed"])
