"""bilm-tf's files: `options.json` (prediction options) and `weights.hdf5`.

`weights.hdf5` has exactly the datasets, shapes and orientation of bilm-tf's `dump_weights`,
so AllenNLP's `Elmo(options_file, weight_file)` loads it unchanged, and released ELMo weights
load here.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from elmo_train.errors import UserError
from elmo_train.model.bilm import BiLM
from elmo_train.model.config import BiLMConfig, CharCNNConfig, LSTMConfig
from elmo_train.model.lstm import LSTMStack

OPTIONS = "options.json"
WEIGHTS = "weights.hdf5"

# Accepted `n_characters`: 261 in bilm-tf training options, 262 in prediction options. Inside
# elmo-train the table always has 262 rows (row 0 = padding); the file stores rows 1..261.
_N_CHARACTERS = (261, 262)


# --- options.json -------------------------------------------------------------------------


def options_from_config(config: BiLMConfig) -> dict:
    cnn, lstm = config.char_cnn, config.lstm
    lstm_options = {
        "dim": lstm.dim,
        "projection_dim": lstm.projection_dim,
        "n_layers": lstm.n_layers,
        "use_skip_connections": lstm.use_skip_connections,
        "cell_clip": lstm.cell_clip,
        "proj_clip": lstm.proj_clip,
    }
    cnn_options = {
        "activation": cnn.activation,
        "embedding": {"dim": cnn.embedding_dim},
        "filters": [list(f) for f in cnn.filters],
        "n_highway": cnn.n_highway,
        "n_characters": 262,
        "max_characters_per_token": cnn.max_characters_per_token,
    }
    if not cnn.projection:  # our extensions: bilm-tf always projects (`CNN_proj`)
        cnn_options["projection"] = False
    if cnn.zero_padding_char:  # and learns the padding character
        cnn_options["zero_padding_char"] = True
    return {
        "lstm": {k: v for k, v in lstm_options.items() if v is not None},
        "char_cnn": cnn_options,
        "bidirectional": config.bidirectional,
        "dropout": config.dropout,
    }


def config_from_options(options: dict, source: str = OPTIONS) -> BiLMConfig:
    """A BiLMConfig from bilm-tf options (released prediction files or training options)."""
    try:
        lstm, cnn = options["lstm"], options["char_cnn"]
        n_characters = cnn.get("n_characters", 262)
        if n_characters not in _N_CHARACTERS:
            raise UserError(
                f"{source}: char_cnn.n_characters is {n_characters}; bilm-tf models use 261 "
                "(training) or 262 (prediction): fix the options file"
            )
        return BiLMConfig(
            char_cnn=CharCNNConfig(
                embedding_dim=cnn["embedding"]["dim"],
                filters=[list(f) for f in cnn["filters"]],
                n_highway=cnn.get("n_highway") or 0,
                activation=cnn.get("activation", "relu"),
                max_characters_per_token=cnn.get("max_characters_per_token", 50),
                projection=bool(cnn.get("projection", True)),
                zero_padding_char=bool(cnn.get("zero_padding_char", False)),
            ),
            lstm=LSTMConfig(
                dim=lstm["dim"],
                projection_dim=lstm.get("projection_dim", lstm["dim"]),
                n_layers=lstm.get("n_layers", 1),
                cell_clip=lstm.get("cell_clip"),
                proj_clip=lstm.get("proj_clip"),
                use_skip_connections=bool(lstm.get("use_skip_connections", False)),
            ),
            bidirectional=options.get("bidirectional", True),
            dropout=options.get("dropout", 0.0),
        )
    except KeyError as missing:
        raise UserError(
            f"{source}: required key {missing} is missing (word-input models are not "
            "supported; elmo-train reads character-CNN biLMs)"
        ) from None
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None


def read_options(path: str | Path) -> BiLMConfig:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: options file not found; pass the options.json of the model")
    try:
        options = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error}); fix or re-export it") from None
    return config_from_options(options, str(path))


def write_options(config: BiLMConfig, path: str | Path) -> None:
    Path(path).write_text(json.dumps(options_from_config(config), indent=2) + "\n")


# --- weights.hdf5 -------------------------------------------------------------------------


# Each dataset of the file is a view of the model's parameters in bilm-tf's layout: `read`
# gives the array bilm-tf stores, `write` copies such an array into the parameters.
@dataclass
class _Dataset:
    read: Callable[[], torch.Tensor]
    write: Callable[[torch.Tensor], None]


def _view(param: torch.Tensor, to_file=lambda t: t, from_file=lambda t: t) -> _Dataset:
    return _Dataset(lambda: to_file(param), lambda value: param.copy_(from_file(value)))


def _transposed(param: torch.Tensor) -> _Dataset:
    return _view(param, torch.t, torch.t)


def _lstm_kernel(w_x: torch.Tensor, w_h: torch.Tensor) -> _Dataset:
    """TF's kernel stacks the input and recurrent weights: rows [input; h]."""

    def write(value: torch.Tensor) -> None:
        w_x.copy_(value[: w_x.shape[0]])
        w_h.copy_(value[w_x.shape[0] :])

    return _Dataset(lambda: torch.cat([w_x, w_h]), write)


def _lstm_bias(lstm: LSTMStack, layer: int, direction: int) -> _Dataset:
    """TF's single `B`: the net bias of a cell with `recurrent_bias` (read back into `bias`)."""

    def write(value: torch.Tensor) -> None:
        lstm.bias[layer][direction].copy_(value)
        if lstm.config.recurrent_bias:
            lstm.bias_h[layer][direction].zero_()

    return _Dataset(lambda: lstm.net_bias(layer)[direction], write)


def _datasets(bilm: BiLM) -> dict[str, _Dataset]:
    enc, lstm = bilm.char_encoder, bilm.lstm
    table = {"char_embed": _view(enc.embedding.weight[1:])}  # no padding row in the file
    for i, conv in enumerate(enc.convs):
        # Conv1d (n, d, w) <-> TF conv2d (1, w, d, n)
        table[f"CNN/W_cnn_{i}"] = _view(
            conv.weight,
            lambda w: w.permute(2, 1, 0).unsqueeze(0),
            lambda w: w.squeeze(0).permute(2, 1, 0),
        )
        table[f"CNN/b_cnn_{i}"] = _view(conv.bias)
    for k, highway in enumerate(enc.highways):
        table[f"CNN_high_{k}/W_carry"] = _transposed(highway.gate.weight)
        table[f"CNN_high_{k}/b_carry"] = _view(highway.gate.bias)
        table[f"CNN_high_{k}/W_transform"] = _transposed(highway.transform.weight)
        table[f"CNN_high_{k}/b_transform"] = _view(highway.transform.bias)
    if enc.projection is not None:
        table["CNN_proj/W_proj"] = _transposed(enc.projection.weight)
        table["CNN_proj/b_proj"] = _view(enc.projection.bias)
    for d in range(bilm.n_directions):
        for layer in range(bilm.n_layers):
            cell = f"RNN_{d}/RNN/MultiRNNCell/Cell{layer}/LSTMCell"
            table[f"{cell}/W_0"] = _lstm_kernel(lstm.weight_x[layer][d], lstm.weight_h[layer][d])
            table[f"{cell}/B"] = _lstm_bias(lstm, layer, d)
            if lstm.has_projection:
                table[f"{cell}/W_P_0"] = _view(lstm.weight_proj[layer][d])
    return table


def save_weights(bilm: BiLM, path: str | Path) -> None:
    with h5py.File(path, "w") as f, torch.no_grad():
        for name, dataset in _datasets(bilm).items():
            f.create_dataset(name, data=dataset.read().float().cpu().numpy())


def load_weights(bilm: BiLM, path: str | Path) -> None:
    """Copy every dataset of a bilm-tf weight file into `bilm`, checking names, shapes and that
    every value is finite (a damaged file must not become a NaN model)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: weight file not found; pass the weights.hdf5 of the model")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise UserError(f"{path}: not a readable HDF5 file ({error})") from None
    with f, torch.no_grad():
        for name, dataset in _datasets(bilm).items():
            dataset.write(
                torch.from_numpy(_read_dataset(f, name, tuple(dataset.read().shape), path))
            )


def _read_dataset(f: h5py.File, name: str, expected: tuple, path: Path) -> np.ndarray:
    try:
        if name not in f:
            raise UserError(
                f"{path}: dataset {name!r} is missing (expected shape {expected}); the weights "
                "do not match the options file"
            )
        found = tuple(f[name].shape)
        if found != expected:
            raise UserError(
                f"{path}: dataset {name!r} has shape {found}, expected {expected} from the "
                "options file; use the options.json that belongs to these weights"
            )
        value = np.asarray(f[name], dtype=np.float32)
    except (OSError, RuntimeError, ValueError, KeyError) as error:  # damaged chunks or metadata
        raise UserError(
            f"{path}: dataset {name!r} cannot be read ({error}); the file is corrupt: "
            "re-export or re-download it"
        ) from None
    if not np.isfinite(value).all():
        raise UserError(
            f"{path}: dataset {name!r} holds NaN or infinite values; the file is corrupt: "
            "re-export or re-download it"
        )
    return value


def load_bilm(options: str | Path, weights: str | Path) -> BiLM:
    bilm = BiLM(read_options(options))
    load_weights(bilm, weights)
    return bilm.eval()
