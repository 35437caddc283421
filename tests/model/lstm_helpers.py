"""The LSTM stack the LSTM tests share."""

import torch

from elmo_train.model.config import LSTMConfig
from elmo_train.model.lstm import LSTMStack


def clipped_stack(**kwargs) -> LSTMStack:
    """A float64 2-layer biLSTM stack (24 cells, 8-d projections) with weights 4× the usual, so
    that the cell and projection clips are active; `kwargs` are LSTMConfig fields."""
    config = LSTMConfig(dim=24, projection_dim=8, n_layers=2, **kwargs)
    stack = LSTMStack(config, input_dim=8, n_directions=2, dropout=0.0).double()
    with torch.no_grad():
        for p in stack.parameters():
            p.mul_(4.0)
    return stack
