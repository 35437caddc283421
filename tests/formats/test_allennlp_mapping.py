"""An exported model read the way AllenNLP's `Elmo(options_file, weight_file)` reads it gives our
activations.

AllenNLP is not a dependency, so its load conventions and forward pass are re-implemented here
from its source (`allennlp/modules/elmo.py::_ElmoCharacterEncoder`, `highway.py`,
`elmo_lstm.py::ElmoLstm.load_weights`, `lstm_cell_with_projection.py`): the file's gate order
i, j, f, o reordered to i, f, g, o, +1 on the forget bias, the carry gate negated into AllenNLP's
highway, a zero padding row prepended to the char embedding, conv kernels transposed.
"""

import json

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from elmo_train.formats.model_dir import save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.chars import BOS_TOKEN, EOS_TOKEN, batch_to_ids, word_to_char_ids
from elmo_train.model.config import BiLMConfig, CharCNNConfig, LSTMConfig, SoftmaxConfig
from elmo_train.use.elmo import Elmo
from elmo_train.use.embedder import Embedder

CELL_CLIP, PROJ_CLIP = 0.8, 0.5  # small, so clipping is active and tested
SENTENCES = [
    ["The", "bank", "raised", "its", "rates", "."],
    ["a", "heron", "on", "the", "bank"],
    ["ok"],
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(3)
    config = BiLMConfig(
        char_cnn=CharCNNConfig(embedding_dim=4, filters=[[1, 4], [2, 6], [3, 6]], n_highway=2),
        lstm=LSTMConfig(
            dim=12,
            projection_dim=5,
            n_layers=2,
            cell_clip=CELL_CLIP,
            proj_clip=PROJ_CLIP,
            use_skip_connections=True,
        ),
        softmax=SoftmaxConfig(kind="full"),
    )
    lm = LanguageModel(config, vocab_size=4)
    with torch.no_grad():  # random everything (biases too), so every mapping matters
        for name, p in lm.bilm.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 if "lstm" in name else 0.3))
        lm.bilm.char_encoder.embedding.weight[0].zero_()
    directory = tmp_path_factory.mktemp("export") / "model"
    save_model_dir(lm, Vocabulary(["<S>", "</S>", "<UNK>", "bank"]), directory)
    return directory


# --- AllenNLP's conventions, re-implemented ----------------------------------------------------


def load_allennlp(options: dict, path) -> dict:
    """The tensors AllenNLP builds from a bilm-tf weight file."""
    w = {}
    with h5py.File(path, "r") as f:
        char_embed = np.asarray(f["char_embed"])  # (261, d)
        w["char_embed"] = torch.from_numpy(
            np.concatenate([np.zeros((1, char_embed.shape[1]), np.float32), char_embed])
        )  # (262, d): id 0 is padding
        cnn = options["char_cnn"]
        w["convs"] = []
        for i in range(len(cnn["filters"])):
            kernel = np.asarray(f["CNN"][f"W_cnn_{i}"])  # (1, w, d, n)
            weight = np.transpose(kernel.squeeze(axis=0), axes=(2, 1, 0))  # (n, d, w)
            w["convs"].append(
                (torch.from_numpy(weight), torch.from_numpy(np.asarray(f["CNN"][f"b_cnn_{i}"])))
            )
        w["highways"] = []
        for k in range(cnn["n_highway"]):
            g = f[f"CNN_high_{k}"]
            weight = np.concatenate(
                [np.transpose(g["W_transform"]), -np.transpose(g["W_carry"])], axis=0
            )  # (2D, D)
            bias = np.concatenate([g["b_transform"], -np.asarray(g["b_carry"])])
            w["highways"].append((torch.from_numpy(weight), torch.from_numpy(bias)))
        w["proj"] = (
            torch.from_numpy(np.transpose(f["CNN_proj"]["W_proj"])),
            torch.from_numpy(np.asarray(f["CNN_proj"]["b_proj"])),
        )
        lstm = options["lstm"]
        cell, proj = lstm["dim"], lstm["projection_dim"]
        w["lstm"] = {}
        for layer in range(lstm["n_layers"]):
            for direction in range(2):
                g = f[f"RNN_{direction}"]["RNN"]["MultiRNNCell"][f"Cell{layer}"]["LSTMCell"]
                tf_weights = np.transpose(g["W_0"])  # (4c, in + h)
                torch_weights = tf_weights.copy()
                for torch_w, tf_w in [
                    [torch_weights[:, :proj], tf_weights[:, :proj]],
                    [torch_weights[:, proj:], tf_weights[:, proj:]],
                ]:
                    torch_w[cell : 2 * cell] = tf_w[2 * cell : 3 * cell]
                    torch_w[2 * cell : 3 * cell] = tf_w[cell : 2 * cell]
                tf_bias = np.asarray(g["B"]).copy()
                tf_bias[2 * cell : 3 * cell] += 1  # TF's forget_bias, added at run time
                torch_bias = tf_bias.copy()
                torch_bias[cell : 2 * cell] = tf_bias[2 * cell : 3 * cell]
                torch_bias[2 * cell : 3 * cell] = tf_bias[cell : 2 * cell]
                w["lstm"][layer, direction] = {
                    "input": torch.from_numpy(torch_weights[:, :proj]),  # (4c, in), no bias
                    "state": torch.from_numpy(torch_weights[:, proj:]),  # (4c, h)
                    "bias": torch.from_numpy(torch_bias),
                    "projection": torch.from_numpy(np.transpose(g["W_P_0"])),  # (h, c)
                }
    return w


def allennlp_token_embedding(w: dict, options: dict, char_ids: torch.Tensor) -> torch.Tensor:
    """`_ElmoCharacterEncoder.forward`: `(B, T, 50)` -> `(B, T, proj)`."""
    B, T, C = char_ids.shape
    x = F.embedding(char_ids.view(-1, C), w["char_embed"]).transpose(1, 2)  # (B*T, d, 50)
    activation = torch.relu if options["char_cnn"]["activation"] == "relu" else torch.tanh
    convs = [
        activation(F.conv1d(x, weight, bias).max(dim=-1).values) for weight, bias in w["convs"]
    ]
    h = torch.cat(convs, dim=-1)
    for weight, bias in w["highways"]:  # allennlp/modules/highway.py
        nonlinear, gate = F.linear(h, weight, bias).chunk(2, dim=-1)
        gate = torch.sigmoid(gate)
        h = gate * h + (1 - gate) * torch.relu(nonlinear)
    return F.linear(h, *w["proj"]).view(B, T, -1)


def allennlp_cell(p: dict, inputs: torch.Tensor, go_forward: bool, options: dict) -> torch.Tensor:
    """`LstmCellWithProjection` over one sentence `(n, in)`, one time step at a time."""
    cell, proj = options["lstm"]["dim"], options["lstm"]["projection_dim"]
    memory, state = torch.zeros(cell), torch.zeros(proj)
    outputs = torch.zeros(inputs.shape[0], proj)
    steps = range(inputs.shape[0]) if go_forward else reversed(range(inputs.shape[0]))
    for t in steps:
        projected = inputs[t] @ p["input"].T + state @ p["state"].T + p["bias"]  # (4c,)
        i, f, g, o = projected.split(cell)
        memory = torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(f) * memory
        memory = memory.clamp(-options["lstm"]["cell_clip"], options["lstm"]["cell_clip"])
        state = (torch.sigmoid(o) * torch.tanh(memory)) @ p["projection"].T
        state = state.clamp(-options["lstm"]["proj_clip"], options["lstm"]["proj_clip"])
        outputs[t] = state
    return outputs


def allennlp_activations(w: dict, options: dict, sentence: list[str]) -> list[torch.Tensor]:
    """`_ElmoBiLm.forward` for one sentence: token layer `[x; x]`, then each biLSTM layer."""
    ids = torch.tensor([[word_to_char_ids(t) for t in [BOS_TOKEN, *sentence, EOS_TOKEN]]])
    tokens = allennlp_token_embedding(w, options, ids)[0]  # (n + 2, proj)
    activations = [torch.cat([tokens, tokens], dim=-1)]
    fwd, bwd = tokens, tokens
    for layer in range(options["lstm"]["n_layers"]):
        fwd_out = allennlp_cell(w["lstm"][layer, 0], fwd, True, options)
        bwd_out = allennlp_cell(w["lstm"][layer, 1], bwd, False, options)
        if layer != 0 and options["lstm"]["use_skip_connections"]:
            fwd_out, bwd_out = fwd_out + fwd, bwd_out + bwd
        activations.append(torch.cat([fwd_out, bwd_out], dim=-1))
        fwd, bwd = fwd_out, bwd_out
    return activations


# --- the tests ---------------------------------------------------------------------------------


def test_options_are_what_allennlp_requires(exported):
    options = json.loads((exported / "options.json").read_text())
    assert options["lstm"]["use_skip_connections"] is True  # _ElmoBiLm refuses models without
    assert options["char_cnn"]["n_characters"] == 262
    with h5py.File(exported / "weights.hdf5", "r") as f:
        assert f["char_embed"].shape[0] == 261
        assert not any("softmax" in name for name in f)


def test_allennlp_loading_gives_our_activations(exported):
    options = json.loads((exported / "options.json").read_text())
    weights = load_allennlp(options, exported / "weights.hdf5")
    embedder = Embedder.from_model_dir(exported)
    ours = list(embedder.embed(SENTENCES))  # (3, n, 10) each, boundaries removed
    clipped = 0
    for sentence, got in zip(SENTENCES, ours, strict=True):
        with torch.no_grad():
            expected = allennlp_activations(weights, options, sentence)
        for layer in range(3):
            torch.testing.assert_close(got[layer], expected[layer][1:-1], rtol=1e-5, atol=1e-5)
        clipped += int((expected[1].abs() == PROJ_CLIP).sum())
    assert clipped > 0  # the first layer's projection clip was hit: the clipping is compared


def test_allennlp_style_elmo_input_gives_the_same_layers(exported):
    options = json.loads((exported / "options.json").read_text())
    weights = load_allennlp(options, exported / "weights.hdf5")
    elmo = Elmo(
        exported / "options.json",
        exported / "weights.hdf5",
        1,
        keep_sentence_boundaries=True,
        scalar_mix_parameters=[-9e10, -9e10, 1.0],  # the top layer
    ).eval()
    out = elmo(batch_to_ids(SENTENCES))["elmo_representations"][0]  # (3, 8, 10)
    for row, sentence in enumerate(SENTENCES):
        with torch.no_grad():
            expected = allennlp_activations(weights, options, sentence)[2]  # (n + 2, 10)
        torch.testing.assert_close(out[row, : len(sentence) + 2], expected, rtol=1e-5, atol=1e-5)
