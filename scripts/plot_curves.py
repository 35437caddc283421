"""Validation and test perplexity curves of an `elmo train` run, from its CSV log.

    python scripts/plot_curves.py runs/kim_ptb_small --target 92.3 --out docs/kim_ptb_small.png

Reads `RUN/logs/metrics.csv` (logger=csv), prints one Markdown row per validation (epoch, step,
val and test perplexity per direction, learning rate where logged) and writes a PNG of the
curves. Test figures appear when the run validated with `data.val_splits=[valid,test]`.
"""

import argparse
import csv
import sys
from pathlib import Path


def validations(metrics_csv: Path) -> list[dict[str, float]]:
    """One dict per validation row of the log: step, epoch and every val/ and test/ figure."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    lr_at_step = {int(r["step"]): float(r["train/lr"]) for r in rows if r.get("train/lr")}
    out = []
    for row in rows:
        if not row.get("val/ppl") or (out and float(row["val/ppl"]) == out[-1]["val/ppl"]):
            continue  # the end-of-run validation repeats the last one
        point = {"step": int(row["step"]) + 1, "epoch": int(row["epoch"])}
        point |= {k: float(v) for k, v in row.items() if k.startswith(("val/", "test/")) and v}
        lrs = [lr for step, lr in lr_at_step.items() if step <= int(row["step"])]
        if lrs:
            point["lr"] = lrs[-1]
        out.append(point)
    return out


def markdown(points: list[dict[str, float]], steps_per_epoch: int | None) -> str:
    columns = [k for k in ("val/ppl_fwd", "val/ppl_bwd", "test/ppl_fwd", "test/ppl_bwd", "lr")
               if any(k in p for p in points)]  # fmt: skip
    lines = ["| epoch | step | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for p in points:
        epoch = f"{p['step'] / steps_per_epoch:.2f}" if steps_per_epoch else str(p["epoch"] + 1)
        cells = [f"{p[k]:.4g}" if k == "lr" else f"{p[k]:.2f}" for k in columns if k in p]
        lines.append(f"| {epoch} | {p['step']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(points: list[dict[str, float]], out: Path, title: str, target: float | None) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    steps = [p["step"] for p in points]
    for key, style in (("val/ppl_fwd", "o-"), ("test/ppl_fwd", "s-"),
                       ("val/ppl_bwd", "o--"), ("test/ppl_bwd", "s--")):  # fmt: skip
        if all(key in p for p in points):
            ax.plot(steps, [p[key] for p in points], style, label=key.replace("/ppl_", " "))
    if target is not None:
        ax.axhline(target, color="grey", linestyle=":", label=f"paper test {target}")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("perplexity (full softmax)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run directory (runs/NAME)")
    parser.add_argument("--out", type=Path, help="PNG to write (default RUN/curves.png)")
    parser.add_argument("--target", type=float, help="draw the paper's test perplexity")
    parser.add_argument("--steps-per-epoch", type=int, help="print fractional epochs")
    args = parser.parse_args(argv)
    metrics_csv = args.run / "logs" / "metrics.csv"
    if not metrics_csv.is_file():
        print(f"plot_curves: {metrics_csv} not found: train with logger=csv", file=sys.stderr)
        return 2
    points = validations(metrics_csv)
    if not points:
        print(f"plot_curves: {metrics_csv} has no validation yet", file=sys.stderr)
        return 2
    print(markdown(points, args.steps_per_epoch))
    out = args.out or args.run / "curves.png"
    plot(points, out, args.run.name, args.target)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
