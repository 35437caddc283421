"""`elmo plot DIR`: a run's validation and test curves, or a tagger's learned scalar mix."""

import argparse
from pathlib import Path

from elmo_train.errors import UserError
from elmo_train.use import curves


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory",
        type=Path,
        help=f"a run directory (runs/NAME, with {curves.METRICS}: logger=csv) or an elmo tag "
        f"directory ({curves.TAGGER_CARD} with its scalar mix)",
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
    card = curves.tagger_card(directory)
    if card is not None:
        mix = curves.scalar_mix(card, directory / curves.TAGGER_CARD)
        if mix is None:
            raise UserError(
                f"{directory / curves.TAGGER_CARD}: scalar_mix is null: this tagger used no ELMo "
                "scalar mix, so it has no layer weights to draw"
            )
        print(curves.mix_table(mix))
        out = curves.plot_scalar_mix(
            mix, args.output or directory / "scalar_mix.png", directory.name
        )
        print(f"plot: wrote {out}")
        return
    metrics_csv = directory / curves.METRICS
    if not metrics_csv.is_file():
        raise UserError(
            f"{directory}: neither a run directory ({curves.METRICS} not found: train with "
            f"logger=csv) nor an elmo tag directory ({curves.TAGGER_CARD} with a scalar_mix)"
        )
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        raise UserError(f"--steps-per-epoch must be at least 1, got {args.steps_per_epoch}")
    points = curves.validations(metrics_csv)
    if not points:
        raise UserError(f"{metrics_csv} has no validation yet; plot again after the first one")
    print(curves.markdown(points, args.steps_per_epoch))
    out = curves.plot_curves(
        points, args.output or directory / "curves.png", directory.name, args.target
    )
    print(f"plot: wrote {out}")
