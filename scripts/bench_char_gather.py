"""The char CNN's gather of type embeddings back to positions: `index_select` (deterministic
backward, what `CharEncoder.forward` uses) against plain indexing `[inverse]` (what it used
before: its backward adds repeated rows from several threads in a run-dependent order).

One CharEncoder of a preset, a batch of real text (both streams, B x T positions), forward and
backward; CPU time per step, median over alternating rounds in one process, one thread.

    python scripts/bench_char_gather.py --preset elmo_small --input ../shared/data/general/valid.txt
"""

import argparse
import statistics
import time

import torch

from elmo_train.model.char_encoder import CharEncoder
from elmo_train.model.chars import batch_to_ids
from elmo_train.model.config import preset

GATHERS = {
    "index_select": lambda embedded, inverse: embedded.index_select(0, inverse),
    "indexing": lambda embedded, inverse: embedded[inverse],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="elmo_small")
    parser.add_argument("--input", required=True, help="text, one tokenized sentence per line")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = preset(args.preset)
    encoder = CharEncoder(config.char_cnn, config.lstm.projection_dim)
    positions = 2 * args.batch_size * args.steps  # both streams
    tokens = []
    with open(args.input, encoding="utf-8") as lines:
        for line in lines:
            tokens.extend(line.split())
            if len(tokens) >= positions:
                break
    char_ids = batch_to_ids([tokens[:positions]]).view(-1, 50)  # (N, 50)
    types, inverse = torch.unique(char_ids, dim=0, return_inverse=True)  # (U, 50), (N,)

    def step(gather) -> float:
        started = time.process_time()
        gather(encoder.encode_types(types), inverse).sum().backward()
        encoder.zero_grad(set_to_none=True)
        return time.process_time() - started

    times = {name: [] for name in GATHERS}
    for gather in GATHERS.values():
        step(gather)  # warm-up
    for round_ in range(args.rounds):
        for name in sorted(GATHERS, reverse=round_ % 2 == 1):
            times[name].append(step(GATHERS[name]))
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    print(
        f"{args.preset}: {positions} positions, {len(types)} distinct tokens, {args.rounds} rounds"
    )
    for name, ms in medians.items():
        print(f"  {name:12s} {ms:8.1f} CPU ms per forward + backward")
    print(f"  index_select / indexing: {medians['index_select'] / medians['indexing']:.3f}")


if __name__ == "__main__":
    main()
