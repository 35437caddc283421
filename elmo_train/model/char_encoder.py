"""Character CNN token encoder: embedding -> convolutions -> max-pool -> highway -> projection.

bilm-tf `_build_word_char_embeddings`, with its initialisation. Shared by both directions.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from elmo_train.model.chars import N_CHARACTERS, PADDING_CHAR
from elmo_train.model.config import CharCNNConfig


class Highway(nn.Module):
    """y = t * relu(W_T x + b_T) + (1 - t) * x with t = sigmoid(W_C x + b_C).

    bilm-tf calls t the "carry" gate although it multiplies the transform; its bias starts at
    -2 so each layer starts close to the identity.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.transform = nn.Linear(dim, dim)
        self.gate = nn.Linear(dim, dim)
        for layer in (self.transform, self.gate):
            nn.init.normal_(layer.weight, std=math.sqrt(1.0 / dim))
        nn.init.zeros_(self.transform.bias)
        nn.init.constant_(self.gate.bias, -2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One matmul for both halves: (N, F) @ (F, 2F).
        weight = torch.cat([self.transform.weight, self.gate.weight])
        bias = torch.cat([self.transform.bias, self.gate.bias])
        transform, gate = F.linear(x, weight, bias).chunk(2, dim=-1)
        gate = torch.sigmoid(gate)
        return gate * torch.relu(transform) + (1.0 - gate) * x


class CharEncoder(nn.Module):
    """Maps char ids `(..., 50)` (0 = padding token) to context-free token embeddings `(..., P)`.

    On a CPU the CNN runs once per distinct token, on the columns its words need
    (`encode_types`): shapes that depend on the batch, which cost a CPU nothing. Elsewhere, or
    with `fixed_shapes` (a compiled graph), it runs on every position and all columns: the
    same function in shapes fixed by the batch size, so a GPU step needs no host sync.
    """

    def __init__(self, config: CharCNNConfig, output_dim: int):
        super().__init__()
        self.config = config
        self.output_dim = output_dim
        self.fixed_shapes: bool | None = None  # None: fixed shapes except on a CPU
        dim, n_filters = config.embedding_dim, config.n_filters
        # Row 0 is the padding token (all-zero char ids); it stays zero, as AllenNLP's loader.
        self.embedding = nn.Embedding(N_CHARACTERS, dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(dim, n, width) for width, n in config.filters)
        self.highways = nn.ModuleList(Highway(n_filters) for _ in range(config.n_highway))
        # bilm-tf projects only when the CNN width differs from the LSTM input width.
        self.projection = nn.Linear(n_filters, output_dim) if n_filters != output_dim else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        cfg = self.config
        nn.init.uniform_(self.embedding.weight, -1.0, 1.0)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.zero_padding_char_()
        for conv, (width, _) in zip(self.convs, cfg.filters, strict=True):
            if cfg.activation == "relu":
                nn.init.uniform_(conv.weight, -0.05, 0.05)  # "Kim et al 2015", as bilm-tf
            else:
                nn.init.normal_(conv.weight, std=math.sqrt(1.0 / (width * cfg.embedding_dim)))
            nn.init.zeros_(conv.bias)
        if self.projection is not None:
            nn.init.normal_(self.projection.weight, std=math.sqrt(1.0 / cfg.n_filters))
            nn.init.zeros_(self.projection.bias)

    @torch.no_grad()
    def zero_padding_char_(self) -> None:
        """With `zero_padding_char`, set the padding character's row to zero, as Kim et al.'s
        code does after every update. The row still gets its gradient, so the global norm that
        clipping divides by counts it, as theirs does: masking the row out instead trains at a
        larger effective step (docs/DECISIONS.md)."""
        if self.config.zero_padding_char:
            self.embedding.weight[PADDING_CHAR].zero_()

    def encode_types(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of `(N, C)` char-id rows, one row per token type: `(N, P)`.

        A row is constant after its word (padding chars), so every window that starts past the
        word is the same window and max-pooling needs only one of them: cutting the columns at
        the longest word + the widest filter is exact. Rows are sorted by word length and cut in
        two groups, split where the total work is least, so a batch's few long tokens do not
        make every short word pay for all C columns.
        """
        N, C = char_ids.shape
        if N == 0:
            return self.embedding.weight.new_zeros(0, self.output_dim)
        columns = torch.arange(1, C + 1, device=char_ids.device)
        lengths = ((char_ids != char_ids[:, -1:]) * columns).amax(dim=1)  # (N,) word extent
        lengths, order = lengths.sort()
        widest = max(width for width, _ in self.config.filters)
        spans = (lengths + widest).clamp(max=C)  # (N,) columns row i needs, non-decreasing
        # Work of splitting after row k: (k + 1) rows cut at spans[k], the rest at spans[-1].
        rows = torch.arange(1, N + 1, device=spans.device)
        work = rows * spans + (N - rows) * spans[-1]
        # The split and the cuts are read on the host: a sync on a GPU, where the training
        # step takes the fixed-shape path instead.
        split = int(work.argmin()) + 1
        groups = [(0, split), (split, N)] if split < N else [(0, N)]
        pooled = torch.cat(
            [self.pool(char_ids[order[a:b], : int(spans[b - 1])]) for a, b in groups]
        )  # (N, n_filters), sorted rows
        return self.transform(pooled.index_select(0, order.argsort()))  # input order

    def transform(self, pooled: torch.Tensor) -> torch.Tensor:
        """Highway layers and projection of the pooled features `(N, n_filters)`: `(N, P)`."""
        h = pooled
        for highway in self.highways:
            h = highway(h)
        return self.projection(h) if self.projection is not None else h

    def pool(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Max-pooled convolution features of `(N, C')` char-id rows: `(N, n_filters)`."""
        x = self.embedding(char_ids)  # (N, C', dim), channels last
        N, L, dim = x.shape
        activation = torch.relu if self.config.activation == "relu" else torch.tanh
        pooled = []
        for conv in self.convs:
            # The convolution as one GEMM over all windows (im2col is cheap at dim 16): ~1.3x
            # faster than Conv1d on CPU, fwd+bwd. max (not amax): its backward scatters into
            # the arg-max instead of re-comparing the whole (N, L', n) output.
            n, _, width = conv.weight.shape
            windows = x.unfold(1, width, 1).reshape(N * (L - width + 1), dim * width)
            y = torch.addmm(conv.bias, windows, conv.weight.view(n, dim * width).t())  # (N*L', n)
            # Max-pool over all valid positions, then the activation, as bilm-tf.
            pooled.append(activation(y.view(N, L - width + 1, n).max(dim=1).values))  # (N, n)
        return torch.cat(pooled, dim=-1)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        flat = char_ids.reshape(-1, char_ids.shape[-1])  # (N, 50)
        fixed = self.fixed_shapes if self.fixed_shapes is not None else flat.device.type != "cpu"
        if fixed:
            embedded = self.transform(self.pool(flat))  # (N, P)
        else:
            # The CNN runs once per distinct token in the batch (tokens follow Zipf's law);
            # indexing with `inverse` scatters the gradients of every occurrence onto its type.
            types, inverse = torch.unique(flat, dim=0, return_inverse=True)  # (U, 50), (N,)
            # index_select, not [inverse]: its backward sums each type's occurrences in a fixed
            # order; indexing's adds them from several threads in a run-dependent order.
            embedded = self.encode_types(types).index_select(0, inverse)  # (N, P)
        return embedded.view(*char_ids.shape[:-1], self.output_dim)
