"""A tiny task where only a pretrained biLM can tell the tag, and the biLM that knows it.

Every sentence is `CUE BANK .`; BANK is `B-RIVER` after a cue word of class A and `B-MONEY`
after one of class B. Cue words are random 4-letter strings and each one's class is drawn at
random, so nothing in a word's spelling tells its class: it is a fact about the word, as a
word's meaning is. The tagger's dev and test sentences use cue words its training sentences
never have, so on its own it can only guess, and a guess is right half the time whatever it
learned (26 or more of the 32 test cues right by guessing: probability 3e-4). The biLM is
trained, as a language model without tags, on `CUE BANK RIVER .` / `CUE BANK MONEY .` for the
cues of all three splits, as ELMo's biLM reads unlabelled text of the task's domain: its
forward state at BANK must predict RIVER or MONEY, so it carries the cue's class, and a tagger
reading its layers can learn from the training cues where the class is and read it for the
unseen ones.
"""

import random
from pathlib import Path

import torch

from elmo_train.formats.model_dir import save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.batch import Batch
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.chars import batch_to_ids
from elmo_train.model.config import BiLMConfig, CharCNNConfig, LSTMConfig, SoftmaxConfig

N_CUES = {"train": 24, "dev": 12, "test": 16}  # per class
TYPES = ("RIVER", "MONEY")  # class A, class B
VOCAB = ["<S>", "</S>", "<UNK>", "BANK", "RIVER", "MONEY", "."]


def cues() -> dict[str, tuple[list[str], list[str]]]:
    """Distinct random cue words per split and class (A, B)."""
    rng = random.Random(0)
    words: set[str] = set()
    total = 2 * sum(N_CUES.values())
    while len(words) < total:
        words.add("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(4)))
    shuffled = sorted(words)
    rng.shuffle(shuffled)
    out = {}
    for split, n in N_CUES.items():
        out[split] = (shuffled[:n], shuffled[n : 2 * n])
        shuffled = shuffled[2 * n :]
    return out


def write_splits(directory: Path, repeats: int = 2) -> dict[str, Path]:
    """train.tsv, dev.tsv, test.tsv; each training cue `repeats` times, shuffled."""
    rng = random.Random(1)
    paths = {}
    for split, classes in cues().items():
        sentences = [
            (cue, entity) for cues_of, entity in zip(classes, TYPES, strict=True) for cue in cues_of
        ]
        sentences *= repeats if split == "train" else 1
        rng.shuffle(sentences)
        blocks = [f"{cue}\tO\nBANK\tB-{entity}\n.\tO\n" for cue, entity in sentences]
        paths[split] = directory / f"{split}.tsv"
        paths[split].write_text("\n".join(blocks), encoding="utf-8")
    return paths


def _lm_batch(sentences: list[list[str]]) -> Batch:
    """Sentence-mode batch: every row one sentence, zero state (all rows one length)."""
    index = {w: i for i, w in enumerate(VOCAB)}

    def ids(rows):
        return torch.tensor([[index.get(w, 2) for w in row] for row in rows])

    fwd_in = [["<S>", *s] for s in sentences]
    bwd_in = [["</S>", *s[::-1]] for s in sentences]
    B, T = len(sentences), len(fwd_in[0])
    return Batch(
        fwd_chars=batch_to_ids(fwd_in),
        fwd_targets=ids([[*s, "</S>"] for s in sentences]),
        mask=torch.ones(B, T, dtype=torch.bool),
        reset=torch.ones(B, dtype=torch.bool),
        bwd_chars=batch_to_ids(bwd_in),
        bwd_targets=ids([[*s[::-1], "<S>"] for s in sentences]),
    )


def train_bilm(directory: Path, steps: int = 150) -> tuple[Path, float]:
    """A tiny biLM trained on the unlabelled task text; its model directory and the accuracy
    with which its forward LM predicts RIVER/MONEY after BANK, over every cue."""
    torch.manual_seed(0)
    corpus = [
        [cue, "BANK", entity, "."]
        for classes in cues().values()
        for cues_of, entity in zip(classes, TYPES, strict=True)
        for cue in cues_of
    ]
    config = BiLMConfig(
        char_cnn=CharCNNConfig(embedding_dim=8, filters=[[1, 16], [2, 16], [3, 32]], n_highway=1),
        lstm=LSTMConfig(dim=32, projection_dim=16, n_layers=2),
        softmax=SoftmaxConfig(kind="full"),
        dropout=0.0,
    )
    lm = LanguageModel(config, len(VOCAB))
    optimizer = torch.optim.Adam(lm.parameters(), lr=0.01)
    batch = _lm_batch(corpus)
    for _ in range(steps):
        loss = lm(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    lm.eval()
    with torch.no_grad():
        _, layers, _ = lm.bilm.run_streams(batch.fwd_chars, batch.bwd_chars)
        after_bank = lm.output.log_probs(layers[-1][0][:, 2]).argmax(dim=-1)  # input <S> CUE BANK
        accuracy = float((after_bank == batch.fwd_targets[:, 2]).double().mean())
    save_model_dir(lm, Vocabulary(VOCAB), directory)
    return directory, accuracy
