"""The LightningDataModule: text files to prepared stores to per-rank batch streams.

`prepare_data()` (local rank 0) builds, or finds in `cache_dir`, the tokenizer model, the
vocabulary and one corpus store per split; `setup()` opens them on every rank. The training
stream is infinite (bound it with `max_steps`; DDP needs it) and its order a pure function of
(seed, epoch, rank, world size, step), so resuming needs only the step: `state_dict()` holds
the batches consumed, and rank 0's checkpoint is enough for every rank.
"""

from __future__ import annotations

import logging
import os
import warnings
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch
from torch.utils.data import DataLoader

from elmo_train.data.files import resolve_inputs
from elmo_train.data.prepare import cache_key, default_cache_dir, prepare
from elmo_train.data.store import CorpusStore
from elmo_train.data.stream import BatchStream, training_rows
from elmo_train.data.tokenizer import make_tokenizer
from elmo_train.data.vocab_builder import build_vocabulary
from elmo_train.data.workers import ignore_sigterm_unless_from
from elmo_train.errors import UserError
from elmo_train.formats.atomic import writable_dir
from elmo_train.formats.vocab_file import Vocabulary

if TYPE_CHECKING:  # the typed config lives above the layers it configures
    from elmo_train.config import DataConfig

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")

# Above this share of out-of-vocabulary tokens a split shares almost no words with the
# vocabulary: the wrong file, or a vocabulary from other text (perplexity would count <UNK>s).
MAX_OOV_RATE = 0.9

# Evaluation streams define an exact `__len__` that already accounts for ranks and workers.
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")


class ElmoDataModule(L.LightningDataModule):
    """Batches of `data.train` (infinite, shuffled) and of `data.valid`/`data.test` (one exact
    pass), as the `DataConfig` says (elmo_train/config.py: every option and its checks).

    The vocabulary is `data.vocab` or built from `train` (saved under `cache_dir/vocab/`); the
    tokenizer is `whitespace` (bilm-tf) or `sentencepiece`, after Unicode normalisation
    `data.normalize`. Batches are packed rows (`stream`), contiguous rows (`contiguous`) or one
    sentence per row (`sentence`); see `stream.BatchStream`.
    """

    def __init__(self, config: DataConfig) -> None:
        super().__init__()
        self.config = config
        self.patterns = {"train": config.train, "valid": config.valid, "test": config.test}
        self.batch_size = config.batch_size
        self.window = config.window
        self.eval_batch_size = config.eval_batch_size or config.batch_size
        self.cache_dir = Path(os.path.expanduser(config.cache_dir or default_cache_dir()))
        self.val_splits = tuple(config.val_splits)
        self.vocab: Vocabulary | None = None
        self.stores: dict[str, CorpusStore] = {}
        self._start_step = 0

    # --- files, tokenizer, vocabulary, stores ---------------------------------------------

    def has_split(self, split: str) -> bool:
        return bool(self.patterns[split])

    def _files(self, split: str) -> list[Path]:
        pattern = self.patterns[split]
        return resolve_inputs([pattern] if isinstance(pattern, str) else list(pattern))

    def _tokenizer(self):
        config = self.config
        model = config.sp_model
        if config.tokenizer == "sentencepiece" and model is None:
            key = cache_key(self._files("train"), config.sp_vocab_size, config.normalize)
            model = self.cache_dir / "sentencepiece" / f"{key}.model"
        return make_tokenizer(
            config.tokenizer,
            model,
            normalize=config.normalize,
            train_paths=self._files("train"),
            vocab_size=config.sp_vocab_size,
        )

    def _vocabulary(self, tokenizer, build: bool) -> Vocabulary:
        config = self.config
        if config.vocab is not None:
            return Vocabulary.load(config.vocab)
        files = self._files("train")
        key = cache_key(files, tokenizer.identity(), config.vocab_min_count, config.vocab_max_size)
        path = self.cache_dir / "vocab" / f"{key}.txt"
        if build and not path.is_file():
            vocab, _ = build_vocabulary(
                files,
                tokenizer,
                config.vocab_min_count,
                config.vocab_max_size,
                num_proc=config.num_proc,
            )
            vocab.save(path)
            log.info(f"data: built a {len(vocab):,}-word vocabulary from data.train: {path}")
        return Vocabulary.load(path)

    def _open(self, build: bool) -> None:
        if self.stores:
            return
        writable_dir(self.cache_dir, "cache directory (data.cache_dir, $ELMO_TRAIN_CACHE)")
        tokenizer = self._tokenizer()
        self.vocab = self._vocabulary(tokenizer, build)
        for split in SPLITS:
            if self.has_split(split):
                store = prepare(
                    self._files(split),
                    self.vocab,
                    tokenizer,
                    self.cache_dir,
                    self.config.num_proc,
                    say=log.info if build else None,  # the console and train.log
                )
                self._require_shared_words(split, store)
                self.stores[split] = store
        if build and not self.has_split("valid"):
            log.info(
                "data: no data.valid: training without held-out perplexity (set data.valid=FILE)"
            )

    def _require_shared_words(self, split: str, store: CorpusStore) -> None:
        rate = store.meta["counts"]["oov_rate"]
        if rate > MAX_OOV_RATE:
            source = f"data.vocab={self.config.vocab}" if self.config.vocab else "data.train"
            raise UserError(
                f"data.{split}={self.patterns[split]}: {100 * rate:.1f}% of its tokens are outside "
                f"the {len(self.vocab):,}-word vocabulary of {source}, so it shares almost no "
                "words with it: check that the files are the right ones (same language, "
                "tokenization and data.normalize)"
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
        config = self.config
        rows = training_rows(config.mode, config.batch_size, world_size)
        if self.stores["train"].n_sentences < rows:
            raise UserError(
                f"data.train has {self.stores['train'].n_sentences} sentences, fewer than the "
                f"{rows} rows of data.mode={config.mode} on {world_size} rank(s): lower "
                "data.batch_size or give more text"
            )
        return BatchStream(
            self.stores["train"],
            batch_size=config.batch_size,
            window=config.window,
            mode=config.mode,
            training=True,
            seed=config.seed,
            shuffle=config.shuffle,
            shuffle_block=config.shuffle_block,
            rank=default_rank if rank is None else rank,
            world_size=world_size,
            start_step=self._start_step,
            max_sentence_tokens=config.max_sentence_tokens,
        )

    def eval_stream(self, split: str) -> BatchStream:
        """This rank's one exact pass over `split` (the same length on every rank)."""
        rank, world_size = self._rank_world()
        return BatchStream(
            self.stores[split],
            batch_size=self.eval_batch_size,
            window=self.config.window,
            mode=self.config.mode,
            training=False,
            rank=rank,
            world_size=world_size,
            max_sentence_tokens=self.config.max_sentence_tokens,
        )

    @property
    def steps_per_epoch(self) -> int:
        """Training batches per epoch on each rank (the trainer's world size, else 1)."""
        return self.train_stream().steps_per_epoch

    def _loader(self, dataset: BatchStream) -> DataLoader:
        # batch_size=None: the dataset yields whole batches, in order whatever num_workers.
        workers = {}
        if self.config.num_workers > 0:
            workers = {"prefetch_factor": self.config.prefetch_factor, "persistent_workers": True}
        return DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.config.num_workers,
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
