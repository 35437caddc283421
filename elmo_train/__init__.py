"""elmo-train: pretrain, adapt and use ELMo-style bidirectional language models.

The names AllenNLP users reach for, with AllenNLP's call:

    from elmo_train import Elmo, batch_to_ids
    elmo = Elmo("runs/NAME/model/options.json", "runs/NAME/model/weights.hdf5", 1)
    vectors = elmo(batch_to_ids([["The", "bank", "of", "the", "river"]]))
    # or Elmo.from_model_dir("runs/NAME/model", 1)

`Embedder` gives every layer of each sentence; `LanguageModel` is the pure-torch biLM with its
output layer.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from elmo_train.model.bilm import LanguageModel
    from elmo_train.model.chars import batch_to_ids
    from elmo_train.use.elmo import Elmo
    from elmo_train.use.embedder import Embedder

__version__ = "0.1.0"
__all__ = ["Elmo", "Embedder", "LanguageModel", "batch_to_ids"]

# Imported on first use (PEP 562), not with the package: the `elmo` command must set OpenMP's
# environment before torch loads (elmo_train/runtime.py).
_EXPORTS = {
    "Elmo": "elmo_train.use.elmo",
    "Embedder": "elmo_train.use.embedder",
    "LanguageModel": "elmo_train.model.bilm",
    "batch_to_ids": "elmo_train.model.chars",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
