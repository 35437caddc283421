"""Entity scores are seqeval's strict IOB2 spans, micro-averaged, per type with support."""

import pytest

from elmo_train.use.tagger.scores import entity_scores, format_scores

GOLD = [["B-D", "I-D", "O", "B-C"], ["O", "B-D", "O"]]


def test_exact_spans_and_types():
    predicted = [["B-D", "I-D", "O", "B-D"], ["O", "B-D", "I-D"]]
    scores = entity_scores(GOLD, predicted)
    # Predicted D(0-1) right, D(3) wrong type, D(1-2) wrong span: 1 of 3 predicted, 1 of 3 gold.
    assert scores["precision"] == scores["recall"] == scores["f1"] == pytest.approx(1 / 3)
    assert scores["per_type"]["D"]["precision"] == pytest.approx(1 / 3)
    assert scores["per_type"]["D"]["recall"] == pytest.approx(1 / 2)
    assert scores["per_type"]["C"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores["per_type"]["D"]["support"] == 2


def test_strict_mode_counts_no_entity_that_starts_with_i():
    # conlleval's default would read I-D I-D as an entity D; strict IOB2 does not.
    assert entity_scores([["B-D", "I-D"]], [["I-D", "I-D"]])["f1"] == 0.0
    assert entity_scores(GOLD, GOLD)["f1"] == 1.0


def test_table_has_every_type_and_the_total():
    lines = format_scores("test", entity_scores(GOLD, GOLD))
    assert [line.split()[0] for line in lines[1:]] == ["C", "D", "overall"]
    assert lines[-1].split()[1:] == ["100.00", "100.00", "100.00", "3"]
