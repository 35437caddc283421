"""ELMo representations for downstream models: AllenNLP's `Elmo` and `ScalarMix`, on our biLM.

`Elmo` takes character ids of sentences *without* `<S>`/`</S>` (what AllenNLP's `batch_to_ids`
and `elmo_train.batch_to_ids` produce; the ids are the same, so either works), adds the boundaries,
runs the biLM once, and returns `num_output_representations` learned mixes of its layers (paper
Eq. 1): `gamma * sum_j softmax(s)_j h_j`. The biLM is stateless here (every call starts from a
zero LSTM state), so a sentence's vectors never depend on the batch it came in, unlike
AllenNLP's stateful `_ElmoBiLm`.

Layer norm before mixing (`layer_norm`):

- `"token"`: a real per-token LayerNorm without affine parameters, over the feature dimension of
  each layer's vector at each position (padding positions stay zero).
- `"allennlp"`: AllenNLP's `do_layer_norm=True`, reproduced exactly: one mean and one standard
  deviation per layer, over all unmasked elements of the whole batch tensor (so a sentence's
  output depends on the rest of its batch, and padding positions are not zero).
- `None` (default, as AllenNLP and the paper's tutorial): no normalisation.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from elmo_train.formats.bilm_tf import load_bilm
from elmo_train.formats.model_dir import load_bilm_dir
from elmo_train.model.bilm import BiLM
from elmo_train.model.chars import BOS_TOKEN, EOS_TOKEN, word_to_char_ids
from elmo_train.use.embedder import require_elmo_layers

LAYER_NORMS = ("token", "allennlp")
_TOKEN_NORM_EPS = 1e-5  # torch's LayerNorm default
_ALLENNLP_NORM_EPS = 1e-13  # allennlp.nn.util.tiny_value_of_dtype(torch.float32)


def add_sentence_boundaries(char_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`(B, T, C)` ids and their mask `(B, T)` -> `(B, T + 2, C)` with `<S>` and `</S>` around each row."""
    B, T, C = char_ids.shape
    lengths = mask.sum(dim=1)  # (B,)
    out = char_ids.new_zeros(B, T + 2, C)
    out[:, 1:-1] = char_ids * mask.unsqueeze(-1)
    out[:, 0] = char_ids.new_tensor(word_to_char_ids(BOS_TOKEN, C))
    rows = torch.arange(B, device=char_ids.device)
    out[rows, lengths + 1] = char_ids.new_tensor(word_to_char_ids(EOS_TOKEN, C))
    return out


class ScalarMix(nn.Module):
    """`gamma * sum_j softmax(s)_j * h_j` over `n_layers` tensors (paper Eq. 1).

    `initial_scalar_parameters` are the pre-softmax weights `s` (default all 0: equal weights);
    `trainable=False` freezes `s` and `gamma`, e.g. `[-9e10, 1, -9e10]` selects layer 1, as in
    AllenNLP. The weights are one tensor, not a `ParameterList` (which `nn.DataParallel` replicas
    lose, allennlp#5097).
    """

    def __init__(
        self,
        n_layers: int,
        layer_norm: str | None = None,
        initial_scalar_parameters: list[float] | None = None,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        if layer_norm not in (None, *LAYER_NORMS):
            raise ValueError(f"layer_norm must be None, 'token' or 'allennlp', got {layer_norm!r}")
        initial = initial_scalar_parameters or [0.0] * n_layers
        if len(initial) != n_layers:
            raise ValueError(f"{len(initial)} initial scalar parameters for {n_layers} layers")
        self.n_layers = n_layers
        self.layer_norm = layer_norm
        self.scalar_parameters = nn.Parameter(torch.tensor(initial), requires_grad=trainable)
        self.gamma = nn.Parameter(torch.tensor([1.0]), requires_grad=trainable)

    @property
    def weights(self) -> torch.Tensor:
        """The normalised layer weights `softmax(s)`, `(n_layers,)`."""
        return torch.softmax(self.scalar_parameters, dim=0)

    def forward(
        self, tensors: list[torch.Tensor], mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`n_layers` tensors `(B, T, D)` and the mask `(B, T)` of real positions -> `(B, T, D)`."""
        if len(tensors) != self.n_layers:
            raise ValueError(f"{len(tensors)} tensors for a mix of {self.n_layers} layers")
        if self.layer_norm is not None:
            if mask is None:
                mask = torch.ones(tensors[0].shape[:-1], dtype=torch.bool, device=tensors[0].device)
            keep = mask.unsqueeze(-1).to(tensors[0].dtype)  # (B, T, 1)
            norm = _token_norm if self.layer_norm == "token" else _allennlp_norm
            tensors = [norm(t, keep) for t in tensors]
        weights = self.weights.to(tensors[0].dtype)
        mixed = sum(w * t for w, t in zip(weights.unbind(), tensors, strict=True))
        return self.gamma.to(mixed.dtype) * mixed


def _token_norm(tensor: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Each position's vector to zero mean, unit variance over features; padding stays zero."""
    return F.layer_norm(tensor, tensor.shape[-1:], eps=_TOKEN_NORM_EPS) * keep


def _allennlp_norm(tensor: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """AllenNLP's `ScalarMix._do_layer_norm`: one mean and std over every unmasked element."""
    n = keep.sum() * tensor.shape[-1]
    masked = tensor * keep
    mean = masked.sum() / n
    variance = (((masked - mean) * keep) ** 2).sum() / n
    return (tensor - mean) / torch.sqrt(variance + _ALLENNLP_NORM_EPS)


class Elmo(nn.Module):
    """AllenNLP's `Elmo`, with its signature: one biLM pass, `num_output_representations` scalar
    mixes, dropout.

    `Elmo(options_file, weight_file, num_output_representations)` loads bilm-tf's
    `options.json` + `weights.hdf5` (released ELMo files, or those in a model directory);
    `module=` takes a `BiLM` instead (`from_model_dir` does that). `requires_grad=True` fine-tunes
    the biLM with the downstream model; by default its parameters are frozen. The biLM always
    runs without its training dropout, as AllenNLP's `_ElmoBiLm`; `dropout` applies to each
    mixed representation. `scalar_mix_parameters` fixes every mix's pre-softmax weights and
    freezes the mixes. `do_layer_norm=True` is AllenNLP's whole-batch norm (`layer_norm=
    "allennlp"`); `layer_norm="token"` is a per-token one.

    `vocab_to_cache` (and `forward`'s `word_inputs`) are accepted so AllenNLP code runs
    unchanged, and change nothing: in AllenNLP they only spare the char CNN by looking up its
    output for known words, and our char CNN already runs once per distinct token of a batch
    (`CharEncoder.forward`); the vectors are the same either way.
    """

    def __init__(
        self,
        options_file: str | Path | None,
        weight_file: str | Path | None,
        num_output_representations: int,
        requires_grad: bool = False,
        do_layer_norm: bool = False,
        dropout: float = 0.5,
        vocab_to_cache: list[str] | None = None,
        keep_sentence_boundaries: bool = False,
        scalar_mix_parameters: list[float] | None = None,
        module: BiLM | None = None,
        layer_norm: str | None = None,
    ) -> None:
        super().__init__()
        if module is not None and (options_file is not None or weight_file is not None):
            raise ValueError("pass either options_file and weight_file, or module, not both")
        if module is None and (options_file is None or weight_file is None):
            raise ValueError("Elmo needs options_file and weight_file (or a BiLM as module=)")
        if do_layer_norm and layer_norm not in (None, "allennlp"):
            raise ValueError(f"do_layer_norm=True is layer_norm='allennlp', not {layer_norm!r}")
        bilm = module if module is not None else load_bilm(options_file, weight_file)
        self.bilm = require_elmo_layers(bilm)
        for parameter in self.bilm.parameters():
            parameter.requires_grad_(requires_grad)
        self.keep_sentence_boundaries = keep_sentence_boundaries
        self.dropout = nn.Dropout(p=dropout)
        self.scalar_mixes = nn.ModuleList(
            ScalarMix(
                bilm.n_layers + 1,
                layer_norm="allennlp" if do_layer_norm else layer_norm,
                initial_scalar_parameters=scalar_mix_parameters,
                trainable=scalar_mix_parameters is None,
            )
            for _ in range(num_output_representations)
        )
        self.bilm.eval()

    @classmethod
    def from_model_dir(
        cls, directory: str | Path, num_output_representations: int, **kwargs
    ) -> "Elmo":
        bilm = load_bilm_dir(directory)
        return cls(None, None, num_output_representations, module=bilm, **kwargs)

    def get_output_dim(self) -> int:
        return self.bilm.output_dim

    def train(self, mode: bool = True) -> "Elmo":
        super().train(mode)
        self.bilm.eval()  # no dropout inside the biLM, even while fine-tuning it
        return self

    def forward(
        self, inputs: torch.Tensor, word_inputs: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Char ids `(B, T, 50)` without boundaries (any leading dims) -> representations.

        Returns `{"elmo_representations": k x (B, T, D), "mask": (B, T)}`; with
        `keep_sentence_boundaries` both have `T + 2` steps, `<S>` first and `</S>` after each
        row's last token.
        """
        leading = inputs.shape[:-2]
        char_ids = inputs.reshape(-1, *inputs.shape[-2:])  # (B, T, 50)
        mask = (char_ids > 0).any(dim=-1)  # (B, T)
        with_boundaries = add_sentence_boundaries(char_ids, mask)  # (B, T+2, 50)
        out = self.bilm(with_boundaries)
        representations = []
        for mix in self.scalar_mixes:
            mixed = mix(out.activations, out.mask)  # (B, T+2, D)
            if not self.keep_sentence_boundaries:
                mixed = mixed[:, 1:-1] * mask.unsqueeze(-1).to(mixed.dtype)  # (B, T, D)
            representations.append(self.dropout(mixed))
        mask = out.mask if self.keep_sentence_boundaries else mask
        return {
            "elmo_representations": [r.view(*leading, *r.shape[-2:]) for r in representations],
            "mask": mask.view(*leading, mask.shape[-1]),
        }
