"""`elmo plot DIR`: a run's validation and test curves, or a tagger's learned scalar mix."""

import argparse
from pathlib import Path

from elmo_train.errors import UserError
from elmo_train.use.curves import (
    METRICS,
    TAGGER_CARD,
    markdown,
    mix_table,
    plot_curves,
    plot_scalar_mix,
    scalar_mix,
    tagger_card,
    validations,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory",
        type=Path,
        help=f"a run directory (runs/NAME, with {METRICS}: logger=csv) or an elmo tag directory "
        f"({TAGGER_CARD} with its scalar mix)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="PNG to write (default: DIR/curves.png for a run, DIR/scalar_mix.png for a tagger)",
    )
    parser.add_argument("--target", type=float, help="a run: draw the paper's test perplexity")
    parser.add_argument("--steps-per-epoch", type=int, help="a run: print fractional epochs")


def run(args: argparse.Namespace) -> None:
    directory = args.directory
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory; give a run or an elmo tag directory")
    card = tagger_card(directory)
    if card is not None:
        mix = scalar_mix(card, directory / TAGGER_CARD)
        if mix is None:
            raise UserError(
                f"{directory / TAGGER_CARD}: scalar_mix is null: this tagger used no ELMo scalar "
                "mix, so it has no layer weights to draw"
            )
        print(mix_table(mix))
        out = plot_scalar_mix(mix, args.output or directory / "scalar_mix.png", directory.name)
        print(f"plot: wrote {out}")
        return
    metrics_csv = directory / METRICS
    if not metrics_csv.is_file():
        raise UserError(
            f"{directory}: neither a run directory ({METRICS} not found: train with logger=csv) "
            f"nor an elmo tag directory ({TAGGER_CARD} with a scalar_mix)"
        )
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        raise UserError(f"--steps-per-epoch must be at least 1, got {args.steps_per_epoch}")
    points = validations(metrics_csv)
    if not points:
        raise UserError(f"{metrics_csv} has no validation yet; plot again after the first one")
    print(markdown(points, args.steps_per_epoch))
    out = plot_curves(points, args.output or directory / "curves.png", directory.name, args.target)
    print(f"plot: wrote {out}")
