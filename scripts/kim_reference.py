"""An independent plain-torch replica of Kim et al. 2016's LSTM-Char-Small and its Torch loop.

It checks our `kim_ptb_small` recipe against the paper's code path, not against our own: the
corpus as one token stream with `+` after every line, reshaped into 20 rows read in order;
char ids `{`, the word's characters, `}`, zero padding to the longest word; an `nn.Embedding`,
six `Conv1d`s (tanh, max over time), one highway layer with the gate bias shifted by -2, a
2-layer `nn.LSTM`; every parameter uniform in [-0.05, 0.05]; SGD at lr 1 on the loss summed
over the 35 steps and averaged over the 20 rows, gradient norm clipped at 5, lr halved when
validation perplexity improves by no more than 1. Variants change one thing at a time:
`projection` adds bilm-tf's 525 -> 300 linear map before the LSTM; `our_char_cnn` swaps in
`elmo_train`'s CharEncoder (bilm-tf char ids, learned padding over 50 columns);
`one_lstm_bias` fixes the LSTM's second bias vector at zero. Kim's LSTM, like `nn.LSTM`, has
two (its `i2h` and `h2h` linear maps), so under SGD the net bias of each gate learns at twice
the learning rate; bilm-tf's cell has one. `our_model` trains `elmo_train`'s whole
`kim_small` LanguageModel (bilm-tf char ids, `<S>` for `+`) with Kim's loop and batches,
its padding character learned as bilm-tf's; `our_model_zero_padding` the same with the
preset's (and Kim's) zeroed padding row, whose gradient counts in the clipped norm.
`our_lstm` swaps `elmo_train`'s LSTMStack (the `kim_small` preset's: fused, two biases) for
`nn.LSTM`.

    OMP_NUM_THREADS=2 python scripts/kim_reference.py ../shared/data/ptb --epochs 1
    OMP_NUM_THREADS=2 python scripts/kim_reference.py ../shared/data/ptb --epochs 25 --test
"""

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from elmo_train.model.bilm import LanguageModel
from elmo_train.model.char_encoder import CharEncoder
from elmo_train.model.chars import PADDING_CHAR, word_to_char_ids
from elmo_train.model.config import CharCNNConfig, preset
from elmo_train.model.lstm import LSTMStack, LSTMState

VARIANTS = (
    "kim",
    "projection",
    "our_char_cnn",
    "one_lstm_bias",
    "our_model",
    "our_model_zero_padding",
    "our_lstm",
)
FILTERS = [[width, 25 * width] for width in range(1, 7)]  # 525 features
EOS = "+"  # Kim's end-of-line token for PTB


def read_tokens(path: Path) -> list[str]:
    tokens = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            tokens += [*line.split(), EOS]
    return tokens


def kim_char_ids(words: list[str]) -> torch.Tensor:
    """`(V, L)`: 1 = `{`, the word's characters, 2 = `}`, 0-padded to the longest word."""
    alphabet = {c: i + 3 for i, c in enumerate(sorted({c for w in words for c in w}))}
    ids = torch.zeros(len(words), max(len(w) for w in words) + 2, dtype=torch.long)
    for row, word in enumerate(words):
        chars = [1, *(alphabet[c] for c in word), 2]
        ids[row, : len(chars)] = torch.tensor(chars)
    return ids


def row_batches(tokens: list[str], index: dict[str, int], rows: int, window: int):
    """Kim's BatchLoader: `rows` contiguous streams, cut into `window`-step (inputs, targets)."""
    ids = torch.tensor([index[t] for t in tokens])
    n = (len(ids) - 1) // (rows * window) * (rows * window)
    inputs, targets = ids[:n].view(rows, -1), ids[1 : n + 1].view(rows, -1)
    return list(zip(inputs.split(window, 1), targets.split(window, 1), strict=True))


def single_stream_batches(tokens: list[str], index: dict[str, int], window: int):
    """Kim's test protocol: the whole split as one row, nothing cut; the stream starts after a
    `+`, so every token (each word and each line's `+`) is a target once."""
    ids = torch.tensor([index[t] for t in [EOS, *tokens]])
    inputs, targets = ids[:-1].view(1, -1), ids[1:].view(1, -1)
    return list(zip(inputs.split(window, 1), targets.split(window, 1), strict=True))


class KimLM(nn.Module):
    def __init__(self, words: list[str], variant: str, hidden: int = 300):
        super().__init__()
        self.variant = variant
        if variant == "our_char_cnn":
            self.register_buffer(
                "chars", torch.tensor([word_to_char_ids("<S>" if w == EOS else w) for w in words])
            )
            cnn = CharCNNConfig(embedding_dim=15, filters=FILTERS, activation="tanh")
            self.encoder = CharEncoder(cnn, output_dim=525)
        else:
            self.register_buffer("chars", kim_char_ids(words))
            self.embedding = nn.Embedding(int(self.chars.max()) + 1, 15)
            self.convs = nn.ModuleList(nn.Conv1d(15, n, w) for w, n in FILTERS)
            self.transform, self.gate = nn.Linear(525, 525), nn.Linear(525, 525)
        self.projection = nn.Linear(525, hidden) if variant == "projection" else nn.Identity()
        lstm_input = hidden if variant == "projection" else 525
        if variant == "our_lstm":  # dropout between the layers, none on the highway output
            self.lstm = LSTMStack(preset("kim_small").lstm, lstm_input, 1, 0.5, False)
        else:
            self.lstm = nn.LSTM(lstm_input, hidden, num_layers=2, batch_first=True, dropout=0.5)
        self.output = nn.Linear(hidden, len(words))
        with torch.no_grad():
            for param in self.parameters():
                param.uniform_(-0.05, 0.05)
            self.padding_embedding().zero_()
            gate = self.encoder.highways[0].gate if variant == "our_char_cnn" else self.gate
            gate.bias -= 2.0  # Kim's HighwayMLP adds a constant -2 to the gate
            if variant == "our_lstm":  # the cell adds a forget bias of 1 that Kim's has not
                for bias in self.lstm.bias:  # (1, 4C), gates i, j, f, o
                    bias[:, 2 * hidden : 3 * hidden] -= 1.0
        if variant == "one_lstm_bias":  # one bias per gate, as bilm-tf's cell (and ours)
            for layer in range(self.lstm.num_layers):
                bias = getattr(self.lstm, f"bias_hh_l{layer}").requires_grad_(False)
                bias.zero_()

    def padding_embedding(self) -> torch.Tensor:
        """The embedding row that Kim keeps at zero (our CharEncoder: the padding token)."""
        embedding = self.encoder.embedding if self.variant == "our_char_cnn" else self.embedding
        return embedding.weight[0]

    def tokens(self, words: torch.Tensor) -> torch.Tensor:
        """Word ids `(B, T)` -> token embeddings `(B, T, 525)`."""
        # Each distinct word of the batch once (the same values and gradients, fewer convolutions).
        unique, inverse = torch.unique(words, return_inverse=True)
        if self.variant == "our_char_cnn":
            return _gather(self.encoder(self.chars[unique]), inverse)
        x = self.embedding(self.chars[unique]).transpose(1, 2)  # (U, 15, L)
        h = torch.cat([torch.tanh(conv(x).amax(-1)) for conv in self.convs], dim=-1)
        gate = torch.sigmoid(self.gate(h))
        h = gate * F.relu(self.transform(h)) + (1 - gate) * h  # (U, 525)
        return _gather(h, inverse)  # (B, T, 525)

    def forward(self, words: torch.Tensor, state):
        x = self.projection(self.tokens(words))  # (B, T, 525 or 300)
        if isinstance(self.lstm, LSTMStack):
            layers, state = self.lstm(x.unsqueeze(0), state)  # one direction
            hidden = layers[-1][0]
        else:
            hidden, state = self.lstm(x, state)
        return self.output(F.dropout(hidden, 0.5, self.training)), state


class OurLM(nn.Module):
    """`elmo_train`'s LanguageModel (the `kim_small` preset, with its own initialisation) behind
    KimLM's interface, so Kim's loop and batches train it: the `our_model` variant."""

    def __init__(self, words: list[str], zero_padding: bool = False):
        super().__init__()
        chars = [word_to_char_ids("<S>" if w == EOS else w) for w in words]
        self.register_buffer("chars", torch.tensor(chars))
        config = preset("kim_small")
        config.char_cnn.zero_padding_char = zero_padding
        self.lm = LanguageModel(config, len(words))

    def padding_embedding(self) -> torch.Tensor:
        """The row Kim's loop zeroes after each step: the padding character with
        `zero_padding`, else the padding token (always zero)."""
        encoder = self.lm.bilm.char_encoder
        return encoder.embedding.weight[PADDING_CHAR if encoder.config.zero_padding_char else 0]

    def forward(self, words: torch.Tensor, state):
        _, layers, state = self.lm.bilm.run_streams(self.chars[words], None, state)
        top = F.dropout(layers[-1][0], 0.5, self.training)  # (B, T, 300)
        return F.linear(top, self.lm.output.weight, self.lm.output.bias), state


def detached(state):
    """The carried state without its graph: nn.LSTM's (h, c) or our LSTMState."""
    return state.detach() if isinstance(state, LSTMState) else tuple(s.detach() for s in state)


def perplexity(model: KimLM, batches) -> float:
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for inputs, targets in batches:
            logits, state = model(inputs, state)
            total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
            count += targets.numel()
    return math.exp(total / count)


def train(
    data: Path,
    variant: str = "kim",
    epochs: int = 1,
    seed: int = 0,
    rows: int = 20,
    test: bool = False,
    lr: float = 1.0,
) -> list[float]:
    """Kim's training loop; prints and returns the validation perplexity after each epoch, and
    with `test` the final model's test perplexity (`main.lua`'s `eval_split(3)`). `lr`: the
    starting learning rate (Kim's is 1)."""
    torch.manual_seed(seed)
    train_tokens, valid_tokens = read_tokens(data / "train.txt"), read_tokens(data / "valid.txt")
    words = sorted(set(train_tokens))
    index = {w: i for i, w in enumerate(words)}
    train_batches = row_batches(train_tokens, index, rows, window=35)
    valid_batches = row_batches(valid_tokens, index, rows, window=35)
    if variant.startswith("our_model"):
        model = OurLM(words, zero_padding=variant == "our_model_zero_padding")
    else:
        model = KimLM(words, variant)
    state, history = None, []
    start = time.perf_counter()
    for step in range(epochs * len(train_batches)):
        inputs, targets = train_batches[step % len(train_batches)]
        model.train()
        logits, state = model(inputs, state)
        state = detached(state)  # truncated BPTT, state carried
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # per token
        (loss * targets.shape[1]).backward()  # summed over the window, mean over rows
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        with torch.no_grad():
            for param in model.parameters():
                if param.grad is not None:
                    param -= lr * param.grad
                    param.grad = None
            model.padding_embedding().zero_()
        if (step + 1) % len(train_batches) == 0:
            history.append(perplexity(model, valid_batches))
            if len(history) > 2 and history[-2] - history[-1] < 1.0:  # main.lua: epoch 3 on
                lr /= 2
            elapsed = time.perf_counter() - start
            print(
                f"epoch {len(history)} step {step + 1} valid ppl {history[-1]:.2f} "
                f"next lr {lr:g} ({elapsed:.0f} s)",
                flush=True,
            )
    if test:
        test_split = single_stream_batches(read_tokens(data / "test.txt"), index, window=35)
        print(f"test ppl {perplexity(model, test_split):.2f}", flush=True)
    return history


def _gather(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`rows[index]` with a backward that sums repeats in a fixed order (indexing's does not)."""
    return rows.index_select(0, index.reshape(-1)).view(*index.shape, rows.shape[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a directory with train.txt and valid.txt")
    parser.add_argument("--variant", choices=VARIANTS, default="kim")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test", action="store_true", help="score test.txt after training")
    args = parser.parse_args()
    train(args.data, args.variant, args.epochs, args.seed, test=args.test)


if __name__ == "__main__":
    main()
