"""Contextual embeddings from a trained biLM: sentences in, per-layer arrays out.

A model trained with `data.normalize` (NFC/NFKC) records it in its directory's config.yaml;
`Embedder.from_model_dir` applies the same normal form to every token, so `é` typed either way
gets the vector the model learned for it."""

from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from elmo_train.data.files import normalizer
from elmo_train.errors import UserError
from elmo_train.formats.bilm_tf import load_bilm
from elmo_train.formats.model_dir import load_bilm_dir, training_data
from elmo_train.model.bilm import BiLM
from elmo_train.model.chars import batch_to_ids, with_boundaries
from elmo_train.model.lstm import LSTMState


def require_elmo_layers(bilm: BiLM) -> BiLM:
    """`bilm` if ELMo can use its layers; a Kim et al. language model (no token projection,
    so a token layer wider than the LSTM's) is a one-line error."""
    if not bilm.has_elmo_layers:
        raise UserError(
            "this model feeds its char CNN straight into the LSTM (char_cnn.projection: false "
            "in options.json, Kim et al.'s language model), so its layers differ in width and "
            "it has no ELMo embeddings; use it with elmo evaluate"
        )
    return bilm


class Embedder:
    """Runs a biLM over tokenized sentences.

    Stateless by default: every sentence starts from a zero LSTM state, so the output of a
    sentence does not depend on its neighbours and sentences can be batched by length.
    `stateful=True` reproduces bilm-tf's `dump_bilm_embeddings`: sentences run in order and each
    batch row carries its LSTM state into the same row of the next batch.
    """

    def __init__(
        self, bilm: BiLM, device: str | torch.device = "cpu", normalize: str | None = None
    ):
        self.device = torch.device(device)
        self.bilm = require_elmo_layers(bilm).to(self.device).eval()
        self.normalize = normalize  # the Unicode normal form the model was trained on, or None
        self._normal = normalizer(normalize)

    @classmethod
    def from_model_dir(cls, directory: str | Path, device: str = "cpu") -> "Embedder":
        """The biLM of a model directory (its softmax is not needed) and its normal form."""
        normalize = training_data(directory).get("normalize")
        return cls(load_bilm_dir(directory), device, normalize)

    @classmethod
    def from_files(
        cls, options: str | Path, weights: str | Path, device: str = "cpu"
    ) -> "Embedder":
        return cls(load_bilm(options, weights), device)

    @property
    def n_layers(self) -> int:
        """Output layers: the token layer plus one per LSTM layer."""
        return self.bilm.n_layers + 1

    @property
    def dim(self) -> int:
        return self.bilm.output_dim

    @torch.no_grad()
    def embed_batch(
        self, sentences: list[list[str]], state: LSTMState | None = None
    ) -> tuple[list[torch.Tensor], LSTMState]:
        """`(n_layers + 1, n_tokens, dim)` per sentence, `<S>`/`</S>` removed, and the state."""
        if self.normalize is not None:
            sentences = [[self._normal(token) for token in s] for s in sentences]
        char_ids = batch_to_ids(with_boundaries(sentences)).to(self.device)  # (B, T+2, 50)
        out = self.bilm(char_ids, state)
        layers = torch.stack(out.activations, dim=1)  # (B, L+1, T+2, dim)
        embeddings = [layers[b, :, 1 : len(s) + 1].float().cpu() for b, s in enumerate(sentences)]
        return embeddings, out.state

    def embed(
        self, sentences: Iterable[list[str]], batch_size: int = 64, stateful: bool = False
    ) -> Iterator[torch.Tensor]:
        """Embeddings of every sentence, in input order."""
        if stateful:
            yield from self._embed_stateful(sentences, batch_size)
            return
        sentences = list(sentences)
        # Sort by length so each batch pads little; restore the input order on the way out.
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        done: dict[int, torch.Tensor] = {}
        next_out = 0
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            embeddings, _ = self.embed_batch([sentences[i] for i in indices])
            done.update(zip(indices, embeddings, strict=True))
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
        while next_out in done:
            yield done.pop(next_out)
            next_out += 1

    def _embed_stateful(
        self, sentences: Iterable[list[str]], batch_size: int
    ) -> Iterator[torch.Tensor]:
        state, batch = None, []
        for sentence in sentences:
            batch.append(sentence)
            if len(batch) == batch_size:
                embeddings, state = self._stateful_batch(batch, state)
                yield from embeddings
                batch = []
        if batch:
            embeddings, _ = self._stateful_batch(batch, state)
            yield from embeddings

    def _stateful_batch(self, batch, state):
        # A smaller last batch uses the first rows of the carried state, as bilm-tf.
        rows = (
            None
            if state is None
            else LSTMState(state.h[:, :, : len(batch)], state.c[:, :, : len(batch)])
        )
        return self.embed_batch(batch, rows)
