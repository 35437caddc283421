"""Typed model configs and the presets of the papers.

Field names follow bilm-tf's `options.json` (`lstm.dim` is the cell size, `projection_dim` the
LSTM output and token-embedding size) so a config reads like the released options files.
"""

from dataclasses import dataclass, field

from elmo_train.model.chars import MAX_CHARS

ELMO_FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]  # "2048cnn"


@dataclass
class CharCNNConfig:
    embedding_dim: int = 16
    filters: list[list[int]] = field(default_factory=lambda: [list(f) for f in ELMO_FILTERS])
    n_highway: int = 1
    activation: str = "relu"  # relu | tanh, applied after the max-pool
    # The data pipeline and the embedder encode every token in 50 columns, as bilm-tf's
    # released models; the field is kept for options.json and checked, not configurable.
    max_characters_per_token: int = MAX_CHARS
    # true: bilm-tf's `CNN_proj` maps the n_filters features to lstm.projection_dim when they
    # differ. false: they go straight into the first LSTM layer, as Kim et al. 2016; the token
    # layer is then n_filters wide, so the model is a language model with no ELMo layers.
    projection: bool = True
    # true: the padding character after each word embeds as a zero vector, as in Kim et al.'s
    # code: its row is reset to zero after every optimizer step, and its gradient counts in
    # the clipped norm. false: bilm-tf learns its embedding like any other character's.
    zero_padding_char: bool = False

    @property
    def n_filters(self) -> int:
        return sum(n for _, n in self.filters)


@dataclass
class LSTMConfig:
    dim: int = 1024  # memory cell size
    projection_dim: int = 128  # LSTM output and token-embedding size; == dim: no projection
    n_layers: int = 2
    cell_clip: float | None = 3.0
    proj_clip: float | None = 3.0
    use_skip_connections: bool = True  # residual from the second layer on, as bilm-tf
    # true: a second bias on the recurrent input, as Torch's i2h + h2h linear maps (Kim et al.
    # 2016) and nn.LSTM. The cell adds their sum, so the function is the same, but under SGD
    # each gate's net bias then learns at twice the rate: Kim's recipe was tuned with it.
    # bilm-tf's cell has one `B`; exported weights store the sum there.
    recurrent_bias: bool = False
    # "clipped": the exact bilm-tf cell (clipping, any config). "compiled": the same cell with its
    # pointwise update fused by torch.compile; "triton": fused by a hand-written Triton kernel
    # (CUDA; both eager, with a warning, where they cannot run). "fused": torch's nn.LSTM
    # kernel (cuDNN on GPU), only for configs with both clips off.
    impl: str = "clipped"


@dataclass
class SoftmaxConfig:
    kind: str = "sampled"  # full | sampled | adaptive
    n_negatives: int = 8192  # sampled: unique log-uniform negatives per batch
    cutoffs: list[int] = field(default_factory=lambda: [4000, 20000, 100000])  # adaptive
    div_value: float = 4.0  # adaptive
    eval_chunk_size: int = 32768  # vocabulary rows per chunk for exact log-probabilities


@dataclass
class BiLMConfig:
    char_cnn: CharCNNConfig = field(default_factory=CharCNNConfig)
    lstm: LSTMConfig = field(default_factory=LSTMConfig)
    softmax: SoftmaxConfig = field(default_factory=SoftmaxConfig)
    bidirectional: bool = True  # false: forward LM only (Kim et al. 2016)
    dropout: float = 0.1  # on every LSTM layer's input and on the top output, as bilm-tf
    # false: no dropout on the token embeddings entering the first LSTM layer (Kim et al. 2016:
    # "except on the initial Highway to LSTM layer"); bilm-tf drops them too.
    dropout_token_embeddings: bool = True
    # Kim et al. 2016: every parameter uniform in [-a, a] (the net forget-gate bias too; the
    # highway gate bias around -2).
    # None: bilm-tf's initialisation of each layer.
    init_uniform: float | None = None

    def __post_init__(self) -> None:
        validate(self)


def validate(config: BiLMConfig) -> None:
    """All model-config checks in one place; raises ValueError naming the key."""
    cnn, lstm, softmax = config.char_cnn, config.lstm, config.softmax
    if cnn.activation not in ("relu", "tanh"):
        raise ValueError(f"model.char_cnn.activation must be relu or tanh, got {cnn.activation!r}")
    if not cnn.filters or any(len(f) != 2 or min(f) < 1 for f in cnn.filters):
        raise ValueError(f"model.char_cnn.filters must be [[width, count], ...], got {cnn.filters}")
    if cnn.max_characters_per_token != MAX_CHARS:
        raise ValueError(
            f"model.char_cnn.max_characters_per_token must be {MAX_CHARS} (every released ELMo "
            f"and elmo-train's data pipeline encode {MAX_CHARS} characters per token), got "
            f"{cnn.max_characters_per_token}"
        )
    if max(w for w, _ in cnn.filters) > MAX_CHARS:
        raise ValueError(f"model.char_cnn.filters: a width exceeds the {MAX_CHARS} char columns")
    if lstm.projection_dim > lstm.dim:
        raise ValueError("model.lstm.projection_dim must be <= model.lstm.dim")
    if lstm.n_layers < 1:
        raise ValueError("model.lstm.n_layers must be >= 1")
    if lstm.impl not in ("clipped", "compiled", "triton", "fused"):
        raise ValueError(
            f"model.lstm.impl must be clipped, compiled, triton or fused, got {lstm.impl!r}"
        )
    if lstm.impl == "fused" and (lstm.cell_clip is not None or lstm.proj_clip is not None):
        raise ValueError(
            "model.lstm.impl=fused cannot clip: set model.lstm.cell_clip=null and "
            "model.lstm.proj_clip=null, or use model.lstm.impl=clipped"
        )
    if softmax.kind not in ("full", "sampled", "adaptive"):
        raise ValueError(
            f"model.softmax.kind must be full, sampled or adaptive, got {softmax.kind!r}"
        )
    if config.init_uniform is not None and config.init_uniform <= 0:
        raise ValueError("model.init_uniform must be positive (or null for bilm-tf's init)")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError("model.dropout must be in [0, 1)")


def _elmo(dim: int, proj: int, n_highway: int) -> BiLMConfig:
    return BiLMConfig(
        char_cnn=CharCNNConfig(n_highway=n_highway),
        lstm=LSTMConfig(dim=dim, projection_dim=proj),
    )


def _kim(filters: list[list[int]], n_highway: int, dim: int) -> BiLMConfig:
    # Kim et al. 2016 Table 2: char dim 15, tanh CNN, no clipping, no residual, dropout 0.5,
    # forward LM only; their Torch LSTM's two bias vectors and zeroed padding character. The
    # highway output feeds the LSTM directly, and the LSTM has no projection (projection_dim
    # == dim).
    return BiLMConfig(
        char_cnn=CharCNNConfig(
            embedding_dim=15,
            filters=filters,
            n_highway=n_highway,
            activation="tanh",
            projection=False,
            zero_padding_char=True,
        ),
        lstm=LSTMConfig(
            dim=dim,
            projection_dim=dim,
            cell_clip=None,
            proj_clip=None,
            use_skip_connections=False,
            recurrent_bias=True,
            impl="fused",
        ),
        softmax=SoftmaxConfig(kind="full"),
        bidirectional=False,
        dropout=0.5,
        dropout_token_embeddings=False,
        init_uniform=0.05,
    )


PRESETS = {
    "elmo_small": lambda: _elmo(1024, 128, 1),  # 2x1024_128_2048cnn_1xhighway
    "elmo_medium": lambda: _elmo(2048, 256, 1),  # 2x2048_256_2048cnn_1xhighway
    "elmo_original": lambda: _elmo(4096, 512, 2),  # 2x4096_512_2048cnn_2xhighway
    "kim_small": lambda: _kim([[w, 25 * w] for w in range(1, 7)], 1, 300),
    "kim_large": lambda: _kim([[w, min(200, 50 * w)] for w in range(1, 8)], 2, 650),
    "tiny": lambda: BiLMConfig(
        char_cnn=CharCNNConfig(
            embedding_dim=8, filters=[[1, 16], [2, 16], [3, 32], [4, 64]], n_highway=1
        ),
        lstm=LSTMConfig(dim=128, projection_dim=32),
        softmax=SoftmaxConfig(kind="full"),
        dropout=0.1,
    ),
}


def preset(name: str) -> BiLMConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
