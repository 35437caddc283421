"""How saturated a checkpoint's character CNN is, over its own vocabulary.

    python scripts/cnn_saturation.py runs/kim_ptb_small/checkpoints/last.ckpt

With a tanh CNN (the Kim presets), features stuck at |tanh| > 0.99 for every word pass almost
no gradient and carry little about the word. Prints the fraction of (word, filter) features
that are saturated, their mean |value|, and the mean cosine similarity between the token
embeddings of different words.
"""

import argparse

from elmo_train.training.module import BiLMModule
from elmo_train.use.cnn_saturation import saturation


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--words", type=int, default=2000, help="most frequent words to use")
    args = parser.parse_args(argv)
    module = BiLMModule.load_from_checkpoint(
        args.checkpoint, map_location="cpu", weights_only=False
    )
    words = [w for w in module.vocab if w not in ("<S>", "</S>", "<UNK>")][: args.words]
    result = saturation(module.lm.bilm.char_encoder.eval(), words)
    print(
        f"{result['words']} words: {100 * result['saturated']:.1f} % of CNN features saturated "
        f"(|tanh| > 0.99), mean |feature| {result['mean_abs']:.3f}, mean cosine between "
        f"different words' embeddings {result['mean_cosine']:.3f}"
    )


if __name__ == "__main__":
    main()
