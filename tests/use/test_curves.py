"""Training pictures: the validation rows of an `elmo train` CSV log, a tagger's scalar mix."""

import json

import pytest

from elmo_train.errors import UserError
from elmo_train.use.curves import (
    markdown,
    mix_table,
    plot_curves,
    plot_scalar_mix,
    scalar_mix,
    tagger_card,
    validations,
)

# As Lightning's CSVLogger writes it: training rows, a validation row per epoch carrying both
# splits (data.val_splits=[valid,test]), and the end-of-run validation repeating the last one.
LOG = """\
epoch,step,test/ppl,test/ppl_fwd,train/loss,train/lr,val/ppl,val/ppl_fwd
0,9,,,7.5,1.0,,
0,99,300.5,300.5,,,310.25,310.25
1,109,,,5.1,0.5,,
1,199,150.0,150.0,,,160.0,160.0
2,200,150.0,150.0,,,160.0,160.0
"""
MIX = {"layers": ["token", "lstm 1", "lstm 2"], "weights": [0.2, 0.5, 0.3], "gamma": 1.5}


def test_one_row_per_validation_with_the_lr_in_force(tmp_path):
    (tmp_path / "metrics.csv").write_text(LOG)
    points = validations(tmp_path / "metrics.csv")
    assert [p["step"] for p in points] == [100, 200]
    assert [p["lr"] for p in points] == [1.0, 0.5]
    assert markdown(points, 100).splitlines()[2:] == [
        "| 1.00 | 100 | 310.25 | 300.50 | 1 |",
        "| 2.00 | 200 | 160.00 | 150.00 | 0.5 |",
    ]
    # Without steps per epoch, no epoch column: the log's own is always 0 (endless stream).
    assert markdown(points, None).splitlines()[0] == "| step | val/ppl_fwd | test/ppl_fwd | lr |"
    assert markdown(points, None).splitlines()[2] == "| 100 | 310.25 | 300.50 | 1 |"
    # A validation without a figure another one has leaves its cell blank, nothing shifts.
    partial = [
        {"step": 100, "val/ppl_fwd": 310.25},
        {"step": 200, "val/ppl_fwd": 160.0, "test/ppl_fwd": 150.0},
    ]
    assert markdown(partial, None).splitlines()[2:] == [
        "| 100 | 310.25 |  |",
        "| 200 | 160.00 | 150.00 |",
    ]
    out = plot_curves(points, tmp_path / "a" / "curves.png", "run", 92.3)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_tagger_card_and_its_scalar_mix(tmp_path):
    assert tagger_card(tmp_path) is None
    (tmp_path / "card.json").write_text(json.dumps({"other": 1}))
    assert tagger_card(tmp_path) is None  # a card, but not a tagger's
    (tmp_path / "card.json").write_text(json.dumps({"f1": 0.9, "scalar_mix": MIX}))
    mix = scalar_mix(tagger_card(tmp_path), tmp_path / "card.json")
    assert (mix.layers, mix.weights, mix.gamma) == (MIX["layers"], MIX["weights"], 1.5)
    assert mix_table(mix).splitlines()[2] == "  lstm 1  0.500"
    assert "equal weights would be 0.333" in mix_table(mix)
    assert plot_scalar_mix(mix, tmp_path / "mix.png", "t").read_bytes()[:4] == b"\x89PNG"
    assert scalar_mix({"scalar_mix": None}, tmp_path / "card.json") is None


@pytest.mark.parametrize(
    ("mix", "message"),
    [
        ({**MIX, "weights": [0.5, 0.5]}, "3 layers and 2 weights"),
        ({**MIX, "weights": [1.0, 1.0, 1.0]}, "weights sum to 3.0000"),
        ({**MIX, "gamma": "x"}, "scalar_mix needs layers (names), weights (numbers) and gamma"),
        ({"layers": ["token"]}, "scalar_mix needs layers"),
    ],
)
def test_a_malformed_mix_is_one_clear_error(tmp_path, mix, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        scalar_mix({"scalar_mix": mix}, tmp_path / "card.json")


def test_a_broken_card_is_one_clear_error(tmp_path):
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(UserError, match="card.json: not a JSON card"):
        tagger_card(tmp_path)
