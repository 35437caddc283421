"""elmo-train: pretrain, adapt and use ELMo-style bidirectional language models.

The names AllenNLP users reach for:

    from elmo_train import Elmo, batch_to_ids
    elmo = Elmo.from_model_dir("runs/NAME/model", num_output_representations=1)
    vectors = elmo(batch_to_ids([["The", "bank", "of", "the", "river"]]))

`Embedder` gives every layer of each sentence; `LanguageModel` is the pure-torch biLM with its
output layer.
"""

from elmo_train.model.bilm import LanguageModel
from elmo_train.model.chars import batch_to_ids
from elmo_train.use.elmo import Elmo
from elmo_train.use.embedder import Embedder

__version__ = "0.1.0"
__all__ = ["Elmo", "Embedder", "LanguageModel", "batch_to_ids"]
