import csv

from elmo_train.training.loggers import ResumableCSVLogger


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _log(tmp_path, steps: range, **extra: float) -> ResumableCSVLogger:
    logger = ResumableCSVLogger(tmp_path, name="logs", version="")
    for step in steps:
        logger.log_metrics({"train/loss": float(step), **extra}, step=step)
    logger.save()
    return logger


def test_resumed_run_keeps_the_history_before_its_first_step(tmp_path):
    first = _log(tmp_path, range(10))
    first.log_metrics({"val/ppl": 123.0}, step=9)  # a column the resumed run has not logged yet
    first.save()
    metrics = tmp_path / "logs" / "metrics.csv"

    # Killed after the checkpoint at step 6: steps 6..9 are trained and logged again.
    resumed = _log(tmp_path, range(6, 8))
    resumed.log_metrics({"test/ppl": 99.0}, step=7)  # a new column rewrites the header
    resumed.save()

    rows = _rows(metrics)
    assert [int(r["step"]) for r in rows if r["train/loss"]] == list(range(8))
    assert not any(r["val/ppl"] for r in rows), "step 9's row was logged again, not kept"
    assert [r["test/ppl"] for r in rows if r["test/ppl"]] == ["99.0"]
    assert [p.name for p in metrics.parent.iterdir()] == ["metrics.csv"]  # no .partial left


def test_run_from_step_zero_starts_an_empty_history(tmp_path):
    _log(tmp_path, range(10), old=1.0)
    _log(tmp_path, range(3))
    rows = _rows(tmp_path / "logs" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [0, 1, 2]
    assert "old" not in rows[0]
