"""A frozen biLM's layers for every sentence of a file, computed once and cached on disk.

The cache file is keyed by the model (a hash of `options.json` + `weights.hdf5`, and the
Unicode normal form it was trained with) and the text
(a hash of the sentences' tokens), so a second tagger on the same files and biLM (another seed,
other features, more epochs) reads it instead of running the biLM. One `.npy` array per file,
`(n_tokens, L, D)` float32, sentences one after another; it is written beside its final name
and renamed into place, so concurrent runs never read half of one, and read memory-mapped, so
a large biLM's layers never have to fit in RAM. Each sentence runs alone from a zero LSTM
state (`Embedder`'s stateless mode): its features depend only on its own tokens.
"""

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from elmo_train.errors import UserError
from elmo_train.formats.atomic import file_sha256
from elmo_train.formats.bilm_tf import OPTIONS, WEIGHTS, load_bilm
from elmo_train.formats.model_dir import training_data, verify_checksums
from elmo_train.use.embedder import Embedder


@dataclass
class BiLMSource:
    """A biLM's two bilm-tf files, how the user named them, and the Unicode normal form it was
    trained with (`data.normalize`; the features see tokens in that form, as `Embedder`'s)."""

    options: Path
    weights: Path
    source: str
    normalize: str | None = None

    def __post_init__(self) -> None:
        for path in (self.options, self.weights):
            if not Path(path).is_file():
                raise UserError(f"{path}: not found; give the biLM's options.json and weights.hdf5")

    @classmethod
    def from_model_dir(cls, directory: str | Path) -> "BiLMSource":
        directory = Path(directory)
        for name in (OPTIONS, WEIGHTS):
            if not (directory / name).is_file():
                raise UserError(
                    f"{directory / name} not found; --model takes a model directory (elmo export)"
                )
        verify_checksums(directory, (OPTIONS, WEIGHTS))
        normalize = training_data(directory).get("normalize")
        return cls(directory / OPTIONS, directory / WEIGHTS, str(directory), normalize)

    def digest(self) -> str:
        """sha256 of the two files (and the normal form, if any): the biLM's identity."""
        digest = file_sha256(self.options, self.weights)
        return digest if self.normalize is None else f"{digest}-{self.normalize}"


@dataclass
class SplitFeatures:
    """The biLM layers of a list of sentences."""

    array: np.ndarray  # (n_tokens, L, D), memory-mapped
    offsets: np.ndarray  # (n_sentences + 1,): sentence i is array[offsets[i] : offsets[i + 1]]

    @property
    def n_layers(self) -> int:
        return self.array.shape[1]

    @property
    def dim(self) -> int:
        return self.array.shape[2]

    def sentence(self, i: int) -> torch.Tensor:
        """(L, n_tokens, D) of sentence i."""
        rows = np.array(self.array[self.offsets[i] : self.offsets[i + 1]])  # (n, L, D)
        return torch.from_numpy(rows).transpose(0, 1)


@dataclass
class CacheReport:
    """Where a split's features came from and how long they took."""

    path: Path
    computed: bool  # false: read from the cache
    seconds: float
    n_sentences: int
    n_tokens: int

    def line(self, name: str) -> str:
        rate = self.n_sentences / max(self.seconds, 1e-9)
        how = "computed" if self.computed else "read from the cache"
        return (
            f"biLM features of {name}: {self.n_sentences:,} sentences ({self.n_tokens:,} tokens) "
            f"{how} in {self.seconds:.1f} s ({rate:,.0f} sentences/s)"
        )


class BiLMFeatures:
    """The layers of a biLM, per sentence, through the cache."""

    def __init__(
        self, bilm: BiLMSource, cache_dir: Path, device: str = "cpu", batch_size: int = 64
    ):
        self.bilm = bilm
        self.model_key = bilm.digest()
        self.cache_dir = Path(cache_dir)
        self.device = device
        self.batch_size = batch_size
        self._embedder: Embedder | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:  # loaded only when a split is not in the cache
            bilm = load_bilm(self.bilm.options, self.bilm.weights)
            self._embedder = Embedder(bilm, self.device, self.bilm.normalize)
        return self._embedder

    def path(self, sentences: list[list[str]]) -> Path:
        text_key = hashlib.sha256(json.dumps(sentences, ensure_ascii=False).encode()).hexdigest()
        model_key = hashlib.sha256(self.model_key.encode()).hexdigest()
        return self.cache_dir / f"{model_key[:24]}-{text_key[:24]}.npy"

    def of(self, sentences: list[list[str]]) -> tuple[SplitFeatures, CacheReport]:
        """Every sentence's layers, from the cache or computed (and cached) now."""
        start = time.perf_counter()
        lengths = np.array([len(s) for s in sentences], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        path = self.path(sentences)
        computed = not (path.exists() and _rows(path) == offsets[-1])
        if computed:
            self._compute(sentences, offsets, path)
        array = np.load(path, mmap_mode="r")
        report = CacheReport(
            path, computed, time.perf_counter() - start, len(sentences), int(offsets[-1])
        )
        return SplitFeatures(array, offsets), report

    def _compute(self, sentences: list[list[str]], offsets: np.ndarray, path: Path) -> None:
        embedder = self.embedder
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        shape = (int(offsets[-1]), embedder.n_layers, embedder.dim)
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=shape)
        vectors = embedder.embed(sentences, batch_size=self.batch_size)
        for i, layers in enumerate(vectors):  # (L, n, D), input order
            array[offsets[i] : offsets[i + 1]] = layers.transpose(0, 1).numpy()
        array.flush()
        del array
        os.replace(partial, path)


def _rows(path: Path) -> int:
    """The first dimension of an .npy file (-1 if it cannot be read)."""
    try:
        return np.load(path, mmap_mode="r").shape[0]
    except (OSError, ValueError):
        return -1
