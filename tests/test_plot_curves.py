"""scripts/plot_curves.py reads an `elmo train` CSV log: one row per validation, PNG written."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import plot_curves  # noqa: E402

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


def test_one_row_per_validation_with_lr_and_a_png(tmp_path, capsys):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "metrics.csv").write_text(LOG)
    assert plot_curves.main([str(tmp_path), "--target", "92.3", "--steps-per-epoch", "100"]) == 0
    table = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| 1") or line.startswith("| 2")
    ]
    assert table == [
        "| 1.00 | 100 | 310.25 | 300.50 | 1 |",
        "| 2.00 | 200 | 160.00 | 150.00 | 0.5 |",
    ]
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_log_is_one_clear_error(tmp_path, capsys):
    assert plot_curves.main([str(tmp_path)]) == 2
    assert "logger=csv" in capsys.readouterr().err
