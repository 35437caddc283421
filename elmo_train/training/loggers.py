"""Loggers of elmo-train's own."""

import csv

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _HistoryWriter(ExperimentWriter):
    """Lightning's CSV writer, but a resumed run appends to `metrics.csv` instead of deleting it.

    Lightning removes the file whenever the log directory is not empty, so `resume=true` threw
    away every earlier epoch's validation figures. Here the first save keeps the rows of the
    steps before the first one this run logs and drops the rest: a run killed after its last
    checkpoint had logged steps that the resumed run logs again, and a fresh run (from step 0)
    starts an empty history as before.
    """

    def __init__(self, log_dir: str) -> None:
        self._history_merged = False
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        pass  # the file is merged on the first save, not deleted

    def save(self) -> None:
        if not self._history_merged and self.metrics:
            self._history_merged = True
            self._keep_history_before(min(int(m["step"]) for m in self.metrics))
        super().save()

    def _keep_history_before(self, step: int) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            header = list(reader.fieldnames or [])
            kept = [row for row in reader if row.get("step") and int(row["step"]) < step]
        if not kept:
            self._fs.rm_file(self.metrics_file_path)
            return
        # The union of the old and new columns, so the base class appends instead of rewriting.
        self.metrics_keys = sorted(set(header).union(*self.metrics))
        self._write_atomically(self.metrics_keys, kept)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            rows = list(csv.DictReader(file))
        self._write_atomically(fieldnames, rows)

    def _write_atomically(self, fieldnames: list[str], rows: list[dict[str, str]]) -> None:
        # A run killed mid-write must not lose the history: write aside, then rename over it.
        partial = self.metrics_file_path + ".partial"
        with self._fs.open(partial, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)
        self._fs.mv(partial, self.metrics_file_path)


class ResumableCSVLogger(CSVLogger):
    """`CSVLogger` whose `metrics.csv` survives `resume=true` (see `_HistoryWriter`)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HistoryWriter(log_dir=self.log_dir)
        return self._experiment
