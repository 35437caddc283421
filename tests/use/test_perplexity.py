"""`elmo evaluate`: perplexity equals exp of the average log-loss computed by hand, UNK counts,
the coarsened common-vocabulary scoring, the command and its JSON."""

import json
import math

import pytest
import torch

from elmo_train.cli import main
from elmo_train.data.store import CorpusStore
from elmo_train.errors import UserError
from elmo_train.formats.model_dir import save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.chars import BOS_TOKEN, EOS_TOKEN, UNK_TOKEN, word_to_char_ids
from elmo_train.model.config import BiLMConfig, CharCNNConfig, LSTMConfig, SoftmaxConfig
from elmo_train.use.perplexity import evaluate, evaluation_vocabulary, intersect

WORDS = ["<S>", "</S>", "<UNK>", "the", "cat", "sat", "on", "mat", "dog"]
SENTENCES = [
    "the cat sat on the mat".split(),
    "a dog sat".split(),  # "a" is out of the vocabulary: an <UNK> target
    "the zebra".split(),  # and "zebra"
    "cat".split(),
    "on the mat the dog sat on the cat".split(),
]


def tiny_lm(bidirectional: bool = True, vocab_size: int = len(WORDS)) -> LanguageModel:
    config = BiLMConfig(
        char_cnn=CharCNNConfig(embedding_dim=4, filters=[[1, 4], [2, 8]], n_highway=1),
        lstm=LSTMConfig(dim=16, projection_dim=8, n_layers=2),
        softmax=SoftmaxConfig(kind="full", eval_chunk_size=4),  # chunks of the vocabulary
        bidirectional=bidirectional,
    )
    return LanguageModel(config, vocab_size).eval()


def by_hand(lm: LanguageModel, vocab: Vocabulary, score=None) -> tuple[list[float], int, int]:
    """Per-direction mean NLL of one continuous stream of every sentence (one row, no windows).

    With one row the evaluation stream is bilm-tf's: sentence after sentence, forward inputs
    `<S> w_1 .. w_n`, targets `w_1 .. w_n </S>`; backward inputs `</S> w_n .. w_1`, targets
    `w_n .. w_1 <S>`, the state never reset.
    """
    fwd_in, fwd_out, bwd_in, bwd_out = [], [], [], []
    for s in SENTENCES:
        fwd_in += [BOS_TOKEN, *s]
        fwd_out += [*s, EOS_TOKEN]
        bwd_in += [EOS_TOKEN, *s[::-1]]
        bwd_out += [*s[::-1], BOS_TOKEN]

    def chars(words):
        return torch.tensor([[word_to_char_ids(w) for w in words]])  # (1, N, 50)

    score = score or (lambda log_probs, word: log_probs[vocab.index(word)].item())
    with torch.no_grad():
        _, layers, _ = lm.bilm.run_streams(chars(fwd_in), chars(bwd_in))
        means = []
        for d, targets in enumerate([fwd_out, bwd_out][: lm.bilm.n_directions]):
            log_probs = lm.output.log_probs(layers[-1][d, 0])  # (N, V)
            means.append(-sum(score(log_probs[t], w) for t, w in enumerate(targets)) / len(targets))
    unk = sum(w not in vocab for s in SENTENCES for w in s)
    return means, len(fwd_out), unk


@pytest.fixture
def store(tmp_path):
    return CorpusStore.from_sentences(SENTENCES, Vocabulary(WORDS), tmp_path / "store")


@pytest.mark.parametrize("mode", ["stream", "contiguous"])
def test_perplexity_is_exp_of_the_average_log_loss(store, mode):
    lm, vocab = tiny_lm(), Vocabulary(WORDS)
    (h_fwd, h_bwd), tokens, unk = by_hand(lm, vocab)
    # One row, windows of 3: the state is carried across 11 batches (one row: both modes read
    # the text in order).
    result = evaluate(lm, store, evaluation_vocabulary(vocab), batch_size=1, window=3, mode=mode)
    m = result.metrics()
    assert m["tokens"] == tokens == sum(len(s) + 1 for s in SENTENCES)
    assert m["unk_tokens"] == unk == 2
    assert m["unk_rate"] == pytest.approx(2 / tokens)
    assert m["ppl_fwd"] == pytest.approx(math.exp(h_fwd), rel=1e-5)
    assert m["ppl_bwd"] == pytest.approx(math.exp(h_bwd), rel=1e-5)
    assert m["ppl"] == pytest.approx(math.exp((h_fwd + h_bwd) / 2), rel=1e-5)
    assert m["ppl_mean"] == pytest.approx((math.exp(h_fwd) + math.exp(h_bwd)) / 2, rel=1e-5)


@pytest.mark.parametrize("mode", ["stream", "contiguous"])
def test_batched_rows_score_every_target_once(store, mode):
    lm, vocab = tiny_lm(), Vocabulary(WORDS)
    scores = evaluate(lm, store, evaluation_vocabulary(vocab), batch_size=3, window=4, mode=mode)
    m = scores.metrics()
    _, tokens, unk = by_hand(lm, vocab)
    assert (m["tokens"], m["unk_tokens"]) == (tokens, unk)
    assert 1.0 < m["ppl"] < 3 * len(WORDS)  # a random model: near uniform, not broken


def test_forward_only_model_reports_forward_only(store):
    lm, vocab = tiny_lm(bidirectional=False), Vocabulary(WORDS)
    (h_fwd,), _, _ = by_hand(lm, vocab)
    m = evaluate(lm, store, evaluation_vocabulary(vocab), batch_size=2, window=5).metrics()
    assert "ppl_bwd" not in m and "ppl_mean" not in m
    # Two rows change the contexts, so only the counts and the scale are comparable.
    assert m["ppl"] == m["ppl_fwd"]
    assert m["ppl_fwd"] == pytest.approx(math.exp(h_fwd), rel=0.5)


def test_coarsened_vocabulary_merges_outside_words_into_unk(store):
    lm, vocab = tiny_lm(), Vocabulary(WORDS)
    common = Vocabulary(["<S>", "</S>", "<UNK>", "the", "cat", "sat"])
    merged = [vocab.index(w) for w in (UNK_TOKEN, "on", "mat", "dog")]

    def score(log_probs, word):
        if word in common:
            return log_probs[vocab.index(word)].item()
        return log_probs[merged].logsumexp(dim=0).item()  # P(<UNK>) + P(on) + P(mat) + P(dog)

    (h_fwd, h_bwd), tokens, _ = by_hand(lm, vocab, score)
    eval_vocab = evaluation_vocabulary(vocab, common)
    assert eval_vocab.coarsened and eval_vocab.collapsed_words == 3
    m = evaluate(lm, store, eval_vocab, batch_size=1, window=7).metrics()
    assert m["ppl_fwd"] == pytest.approx(math.exp(h_fwd), rel=1e-5)
    assert m["ppl_bwd"] == pytest.approx(math.exp(h_bwd), rel=1e-5)
    outside = sum(w not in common for s in SENTENCES for w in s)
    assert m["unk_tokens"] == outside == 9
    # The same word set in another order is the model's own vocabulary: nothing merged.
    same = evaluation_vocabulary(vocab, Vocabulary(WORDS[:3] + WORDS[3:][::-1]))
    assert not same.coarsened and same.fingerprint() == evaluation_vocabulary(vocab).fingerprint()


def test_evaluation_vocabulary_must_be_inside_the_model_vocabulary():
    vocab = Vocabulary(WORDS)
    with pytest.raises(UserError, match="1 of its words .*'zebra'"):
        evaluation_vocabulary(vocab, Vocabulary([*WORDS[:4], "zebra"]))
    both = intersect([vocab, Vocabulary([*WORDS[:4], "zebra", "cat"])])
    assert both.words == ["<S>", "</S>", "<UNK>", "the", "cat"]


def test_command_prints_table_and_writes_json(tmp_path, store, capsys):
    lm, vocab = tiny_lm(), Vocabulary(WORDS)
    save_model_dir(lm, vocab, tmp_path / "model")
    text = tmp_path / "held.txt"
    text.write_text("".join(" ".join(s) + "\n" for s in SENTENCES))
    out = tmp_path / "ppl.json"
    main([
        "evaluate", "--model", str(tmp_path / "model"), "--input", str(text), "--json", str(out),
        "--batch-size", "1", "--window", "3", "--cache-dir", str(tmp_path / "cache"),
        "--num-proc", "1",
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert "combined exp((H_f + H_b) / 2)" in printed and "<UNK> targets: 2 " in printed
    saved = json.loads(out.read_text())
    expected = evaluate(lm, store, evaluation_vocabulary(vocab), batch_size=1, window=3).metrics()
    for key in ("ppl_fwd", "ppl_bwd", "ppl", "ppl_mean", "tokens", "unk_rate"):
        assert saved[key] == pytest.approx(expected[key], rel=1e-6), key
    assert saved["vocab"]["size"] == len(WORDS) and not saved["vocab"]["coarsened"]


def test_command_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", str(tmp_path / "nope"), "--input", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("elmo: error:") and "nope" in error and "\n" not in error
