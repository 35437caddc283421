"""The CRF against brute force: every one of the K^T tag sequences scored and summed."""

import itertools

import pytest
import torch

from elmo_train.use.tagger.crf import CRF
from elmo_train.use.tagger.iob import TagSet


def random_crf(n_tags: int, constrained: bool) -> CRF:
    if constrained:  # IOB2 over two types: O, B-A, I-A, B-B, I-B
        start, follow = TagSet(["A", "B"]).allowed_transitions()
        crf = CRF(5, start, follow)
    else:
        crf = CRF(n_tags)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_(0.0, 1.0)
    return crf.double()


def brute_force(crf: CRF, emissions: torch.Tensor, length: int) -> tuple[torch.Tensor, list]:
    """log Z and the best path of one sentence, by enumerating every path."""
    start, transitions, end = crf.scores()
    scores = {}
    for path in itertools.product(range(crf.n_tags), repeat=length):
        s = start[path[0]] + end[path[-1]]
        s = s + sum(emissions[t, y] for t, y in enumerate(path))
        s = s + sum(transitions[a, b] for a, b in itertools.pairwise(path))
        scores[path] = s
    log_z = torch.logsumexp(torch.stack(list(scores.values())), dim=0)
    return log_z, list(max(scores, key=scores.get))


@pytest.mark.parametrize("constrained", [False, True])
def test_log_partition_and_viterbi_equal_enumeration(constrained):
    crf = random_crf(3, constrained)
    lengths = [1, 4, 2, 5]
    emissions = torch.randn(len(lengths), 5, crf.n_tags, dtype=torch.float64) * 2
    mask = torch.arange(5).expand(len(lengths), 5) < torch.tensor(lengths).unsqueeze(1)
    log_z = crf.log_partition(emissions, mask)
    decoded = crf.viterbi(emissions, mask)
    for row, n in enumerate(lengths):
        expected_z, expected_path = brute_force(crf, emissions[row], n)
        torch.testing.assert_close(log_z[row], expected_z, rtol=1e-12, atol=1e-10)
        assert decoded[row] == expected_path
        # A padded row gives what the sentence gives alone.
        alone = crf.log_partition(emissions[row : row + 1, :n], mask[row : row + 1, :n])
        torch.testing.assert_close(alone[0], log_z[row], rtol=1e-12, atol=1e-10)


def test_nll_is_minus_log_probability_and_probabilities_sum_to_one():
    crf = random_crf(3, constrained=False)
    emissions = torch.randn(1, 3, 3, dtype=torch.float64)
    mask = torch.ones(1, 3, dtype=torch.bool)
    total = 0.0
    for path in itertools.product(range(3), repeat=3):
        nll = crf(emissions, torch.tensor([path]), mask)
        total += float(torch.exp(-nll.detach()))
    assert total == pytest.approx(1.0, abs=1e-12)


def test_constrained_decoding_never_starts_or_continues_an_entity_wrongly():
    tagset = TagSet(["A", "B"])
    crf = random_crf(5, constrained=True)
    # Emissions that favour I- tags everywhere: the best allowed path still obeys IOB2.
    emissions = torch.randn(6, 7, 5, dtype=torch.float64)
    emissions[:, :, [2, 4]] += 5.0
    mask = torch.ones(6, 7, dtype=torch.bool)
    for path in crf.viterbi(emissions, mask):
        tags = ["O", *(tagset.tags[i] for i in path)]
        for previous, tag in itertools.pairwise(tags):
            if tag.startswith("I-"):
                assert previous in (f"B-{tag[2:]}", tag)
