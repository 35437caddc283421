"""`elmo plot DIR`: curves of a run directory, the scalar mix of a tagger directory."""

import json

import pytest

from elmo_train.cli import main

LOG = """\
epoch,step,train/loss,train/lr,val/ppl,val/ppl_fwd,val/ppl_bwd
0,9,7.5,0.2,,,
0,99,,,310.25,300.5,320.0
1,199,,,160.0,150.0,170.0
"""


def test_a_run_directory_gives_its_curves(tmp_path, capsys):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "metrics.csv").write_text(LOG)
    main(["plot", str(tmp_path), "--target", "92.3", "--steps-per-epoch", "100"])
    out = capsys.readouterr().out
    assert "| 2.00 | 200 | 150.00 | 170.00 | 0.2 |" in out
    assert f"plot: wrote {tmp_path / 'curves.png'}" in out
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_a_tagger_directory_gives_its_scalar_mix(tmp_path, capsys):
    # The contract with `elmo tag`: card.json's scalar_mix, softmax-normalised weights.
    mix = {"layers": ["token", "lstm 1", "lstm 2"], "weights": [0.1, 0.3, 0.6], "gamma": 0.8}
    (tmp_path / "card.json").write_text(json.dumps({"test_f1": 0.71, "scalar_mix": mix}))
    (tmp_path / "logs").mkdir()  # a tagger may log too: its card decides what it is
    (tmp_path / "logs" / "metrics.csv").write_text(LOG)
    main(["plot", str(tmp_path), "--output", str(tmp_path / "out" / "mix.png")])
    out = capsys.readouterr().out
    assert "scalar mix (gamma 0.800)" in out and "  lstm 2  0.600" in out
    assert (tmp_path / "out" / "mix.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("nothing", "neither a run directory (logs/metrics.csv not found: train with logger=csv)"),
        ("no-mix", "scalar_mix is null: this tagger used no ELMo scalar mix"),
        ("no-validation", "has no validation yet"),
        ("missing", "no such directory"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, setup, message):
    directory = tmp_path / "dir"
    if setup != "missing":
        directory.mkdir()
    if setup == "no-mix":
        (directory / "card.json").write_text(json.dumps({"scalar_mix": None}))
    if setup == "no-validation":
        (directory / "logs").mkdir()
        (directory / "logs" / "metrics.csv").write_text(LOG.splitlines()[0] + "\n0,9,7.5,0.2,,,\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", str(directory)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
