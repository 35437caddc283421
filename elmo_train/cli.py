"""The `elmo` command: one entry point, one module per subcommand in `elmo_train.commands`.

Every subcommand module exposes `add_arguments(parser)` and `run(args)`; only the module of
the command being run is imported. `elmo train` hands all its arguments to Hydra.
Nothing here imports torch: `main` sets OpenMP's environment before it loads.
"""

import argparse
import importlib
import importlib.util
import sys

from elmo_train import runtime
from elmo_train.errors import UserError

COMMANDS = {
    "train": "train a biLM (Hydra overrides, -m sweeps, --cfg job); no arguments: a tiny demo model",
    "vocab": "build an output vocabulary (bilm-tf format) from text files",
    "prepare": "turn raw text shards into the memory-mapped training store (cached)",
    "evaluate": "held-out perplexity with the full softmax: forward, backward, combined",
    "export": "turn a training checkpoint into a model directory",
    "embed": "write contextual embeddings of each line to HDF5 (bilm-tf dump_bilm_embeddings layout)",
    "similar": "show which occurrences of a word have the nearest contextual vectors, per layer",
    "probe": "per-layer intrinsic probes: word sense (wsd) and part of speech (pos)",
    "tag": "train a BiLSTM-CRF sequence tagger on frozen biLM features, or tag text with one",
    "visualize": "per-layer 2-D maps of a word's contexts, with how well each layer separates senses",
    "plot": "a run's training curves (validation and test perplexity), or a tagger's scalar-mix weights",
    "bias": "a contextual association test (WEAT/CEAT) per layer of a biLM",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elmo",
        description="Pretrain, adapt and use ELMo-style biLMs (bilm-tf and AllenNLP compatible).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(f"elmo_train.commands.{name}").add_arguments(command_parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    runtime.prefer_passive_wait()  # read by torch's OpenMP when torch loads
    runtime.compile_cache_per_capability()
    try:
        if argv and argv[0] == "train":
            # Hydra parses sys.argv itself (overrides, -m, --cfg). Lightning's DDP launcher
            # re-executes `python argv[0]` (console script) or `python -m <__main__ spec>`
            # (`python -m elmo_train`) for the other ranks: both must name the train script.
            from elmo_train import train

            sys.argv = [train.__file__, *argv[1:]]
            if getattr(sys.modules["__main__"], "__spec__", None) is not None:
                sys.modules["__main__"].__spec__ = importlib.util.find_spec("elmo_train.train")
            train.main()
            return
        command = argv[0] if argv and argv[0] in COMMANDS else None
        args = build_parser(command).parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            raise SystemExit(2)
        module = importlib.import_module(f"elmo_train.commands.{args.command}")
        runtime.quiet_warnings()
        runtime.set_threads("auto", workers=max(0, getattr(args, "num_workers", 0)))
        module.run(args)
    except UserError as error:
        print(f"elmo: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
