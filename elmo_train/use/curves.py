"""Pictures of training: a run's validation and test curves, a tagger's learned scalar mix.

A run directory (`runs/NAME`, `logger=csv`) has `logs/metrics.csv`: one row per validation is
read from it (step, val and test perplexity per direction, the learning rate in force),
printed as Markdown and drawn on a log scale. Test figures appear when the run validated with
`data.val_splits=[valid,test]`.

An `elmo tag` tagger directory has `card.json` whose `scalar_mix` holds the mix it learned over
the biLM's layers: `{"layers": ["token", "lstm 1", ...], "weights": [softmax-normalised],
"gamma": float}` (null when the tagger used no ELMo mix); it is drawn as a bar per layer.
"""

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from elmo_train.errors import UserError
from elmo_train.use.figures import layer_bars, new_figure

METRICS = Path("logs") / "metrics.csv"
TAGGER_CARD = "card.json"
WEIGHT_SUM_TOLERANCE = 1e-3  # softmax-normalised weights, as written to JSON, sum to 1


# --- a run's curves -------------------------------------------------------------------------------


def validations(metrics_csv: Path) -> list[dict[str, float]]:
    """One dict per validation row of the log: the step, every val/ and test/ figure, the lr."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    lr_at_step = {int(r["step"]): float(r["train/lr"]) for r in rows if r.get("train/lr")}
    out = []
    for row in rows:
        if not row.get("val/ppl") or (out and float(row["val/ppl"]) == out[-1]["val/ppl"]):
            continue  # the end-of-run validation repeats the last one
        point = {"step": int(row["step"]) + 1}
        point |= {k: float(v) for k, v in row.items() if k.startswith(("val/", "test/")) and v}
        lrs = [lr for step, lr in lr_at_step.items() if step <= int(row["step"])]
        if lrs:
            point["lr"] = lrs[-1]
        out.append(point)
    return out


def markdown(points: list[dict[str, float]], steps_per_epoch: int | None) -> str:
    """A Markdown row per validation; epochs only with `steps_per_epoch` (the training stream is
    endless, so the log's own epoch column is always 0)."""
    columns = [k for k in ("val/ppl_fwd", "val/ppl_bwd", "test/ppl_fwd", "test/ppl_bwd", "lr")
               if any(k in p for p in points)]  # fmt: skip
    first = ["epoch", "step"] if steps_per_epoch else ["step"]
    header = "| " + " | ".join(first + columns) + " |"
    lines = [header, "|---" * (len(first) + len(columns)) + "|"]
    for p in points:
        cells = [f"{p['step'] / steps_per_epoch:.2f}"] if steps_per_epoch else []
        cells.append(f"{p['step']:,}")
        cells += [
            "" if k not in p else f"{p[k]:.4g}" if k == "lr" else f"{p[k]:.2f}" for k in columns
        ]  # a blank, not a shift, where a validation lacks a column
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(
    points: list[dict[str, float]], out: Path, title: str, target: float | None
) -> Path:
    figure = new_figure(out, 7, 4.5)
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
    return out


# --- a tagger's scalar mix ------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalarMixWeights:
    layers: list[str]
    weights: list[float]  # softmax-normalised, one per layer
    gamma: float


def tagger_card(directory: Path) -> dict | None:
    """The `card.json` of an `elmo tag` directory (it has a `scalar_mix` key); None if absent."""
    path = directory / TAGGER_CARD
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a JSON card ({error})") from None
    return card if isinstance(card, dict) and "scalar_mix" in card else None


def scalar_mix(card: dict, where: Path) -> ScalarMixWeights | None:
    """The mix a tagger learned, from its card; None when it used no ELMo mix."""
    mix = card["scalar_mix"]
    if mix is None:
        return None
    try:
        layers = [str(name) for name in mix["layers"]]
        weights = [float(w) for w in mix["weights"]]
        gamma = float(mix["gamma"])
    except (KeyError, TypeError, ValueError):
        raise UserError(
            f"{where}: scalar_mix needs layers (names), weights (numbers) and gamma (a number)"
        ) from None
    if not layers or len(layers) != len(weights):
        raise UserError(
            f"{where}: scalar_mix has {len(layers)} layers and {len(weights)} weights; give one "
            "weight per layer"
        )
    if abs(math.fsum(weights) - 1.0) > WEIGHT_SUM_TOLERANCE or min(weights) < 0:
        raise UserError(
            f"{where}: scalar_mix weights sum to {math.fsum(weights):.4f}; write the "
            "softmax-normalised weights"
        )
    return ScalarMixWeights(layers, weights, gamma)


def mix_table(mix: ScalarMixWeights) -> str:
    width = max(len(name) for name in mix.layers)
    lines = [
        f"scalar mix (gamma {mix.gamma:.3f}); equal weights would be {1 / len(mix.layers):.3f}"
    ]
    lines += [f"  {n:<{width}}  {w:.3f}" for n, w in zip(mix.layers, mix.weights, strict=True)]
    return "\n".join(lines)


def plot_scalar_mix(mix: ScalarMixWeights, out: Path, title: str) -> Path:
    """A bar per layer (the probe plots' colours), a dashed line at equal weights."""
    figure = new_figure(out, 1.6 + 1.1 * len(mix.layers), 3.6)
    axes = figure.add_subplot()
    heaviest = max(range(len(mix.weights)), key=mix.weights.__getitem__)
    layer_bars(axes, mix.layers, mix.weights, highlight=heaviest)
    axes.axhline(
        1 / len(mix.layers), color="gray", linestyle="--", linewidth=1, label="equal weights"
    )
    axes.legend(fontsize=7, loc="best")
    axes.set_ylim(0.0, max(1.1 * max(mix.weights), 1.5 / len(mix.layers)))
    axes.set_ylabel("softmax weight")
    axes.set_title(f"{title}: learned scalar mix (gamma {mix.gamma:.2f})", fontsize=9)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    return out
