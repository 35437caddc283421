"""The tagger directory: everything `elmo tag predict` needs, and a card of how it was made.

| file | content |
|---|---|
| `tagger.safetensors` | the tagger's weights (word and char embeddings, scalar mix, BiLSTM, CRF) |
| `config.json` | `TaggerConfig` and the biLM feature shape the network was built for |
| `tags.txt`, `words.txt` | the tag set and the word vocabulary, one per line |
| `bilm/options.json`, `bilm/weights.hdf5` | a copy of the biLM (absent with features `none`) |
| `card.json`, `README.md` | features, the biLM it came from, dev and test scores, the scalar mix |

`card.json` holds at least `features`, `bilm`, `scores` (`{"dev": ..., "test": ...}`, as
`--json`) and `scalar_mix`: `{"layers": ["token", "lstm 1", ...], "weights": [...], "gamma": g}`,
null unless the features are `elmo`.
"""

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from elmo_train.errors import UserError
from elmo_train.formats.atomic import atomic_directory
from elmo_train.formats.bilm_tf import OPTIONS, WEIGHTS
from elmo_train.use.tagger.data import WordVocab
from elmo_train.use.tagger.features import BiLMSource
from elmo_train.use.tagger.iob import TagSet
from elmo_train.use.tagger.network import Tagger, TaggerConfig

WEIGHTS_FILE = "tagger.safetensors"
CONFIG = "config.json"
TAGS = "tags.txt"
WORDS = "words.txt"
CARD = "card.json"
README = "README.md"
BILM = "bilm"


@dataclass
class TaggerDir:
    tagger: Tagger
    tagset: TagSet
    words: WordVocab
    card: dict
    bilm: BiLMSource | None  # the copy in bilm/


def build_tagger(
    config: TaggerConfig, words: WordVocab, tagset: TagSet, n_layers: int, feature_dim: int
) -> Tagger:
    start, follow = tagset.allowed_transitions()
    return Tagger(config, len(words), len(tagset), start, follow, n_layers, feature_dim)


def scalar_mix_card(tagger: Tagger) -> dict | None:
    """The learned layer weights (softmax-normalised) and gamma, for `elmo plot`."""
    if tagger.mix is None:
        return None
    names = ["token"] + [f"lstm {i}" for i in range(1, tagger.mix.n_layers)]
    return {
        "layers": names,
        "weights": [float(w) for w in tagger.mix.weights.detach()],
        "gamma": float(tagger.mix.gamma.detach()),
    }


def save_tagger_dir(
    directory: Path,
    tagger: Tagger,
    tagset: TagSet,
    words: WordVocab,
    card: dict,
    bilm: BiLMSource | None,
    n_layers: int,
    feature_dim: int,
) -> Path:
    """Write the directory atomically (built beside it, then renamed into place), with the
    user's umask."""
    state = {k: v.detach().cpu().contiguous() for k, v in tagger.state_dict().items()}
    config = {
        "tagger": dataclasses.asdict(tagger.config),
        "n_layers": n_layers,
        "feature_dim": feature_dim,
        "bilm_normalize": None if bilm is None else bilm.normalize,
    }
    with atomic_directory(directory, CARD, "tagger directory") as staging:
        save_file(state, str(staging / WEIGHTS_FILE))
        (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        (staging / TAGS).write_text("\n".join(tagset.tags) + "\n", encoding="utf-8")
        (staging / WORDS).write_text("\n".join(words.words) + "\n", encoding="utf-8")
        if bilm is not None:
            (staging / BILM).mkdir()
            shutil.copyfile(bilm.options, staging / BILM / OPTIONS)
            shutil.copyfile(bilm.weights, staging / BILM / WEIGHTS)
        (staging / CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        (staging / README).write_text(card_markdown(card), encoding="utf-8")
    return Path(directory)


def load_tagger_dir(directory: str | Path) -> TaggerDir:
    directory = Path(directory)
    for name in (WEIGHTS_FILE, CONFIG, TAGS, WORDS, CARD):
        if not (directory / name).is_file():
            raise UserError(
                f"{directory}: {name} is missing; pass a directory written by elmo tag train"
            )
    config = json.loads((directory / CONFIG).read_text())
    tagger_config = TaggerConfig(**config["tagger"])
    tags = (directory / TAGS).read_text(encoding="utf-8").splitlines()
    tagset = TagSet(sorted({t[2:] for t in tags if t != "O"}))
    if tagset.tags != tags:
        raise UserError(
            f"{directory / TAGS}: not a tag set elmo tag train wrote ({', '.join(tags)})"
        )
    words = WordVocab((directory / WORDS).read_text(encoding="utf-8").splitlines())
    tagger = build_tagger(tagger_config, words, tagset, config["n_layers"], config["feature_dim"])
    tagger.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    card = json.loads((directory / CARD).read_text(encoding="utf-8"))
    bilm = None
    if tagger_config.features != "none":
        paths = (directory / BILM / OPTIONS, directory / BILM / WEIGHTS)
        for path in paths:
            if not path.is_file():
                raise UserError(f"{path} is missing; the tagger needs the biLM it was trained on")
        bilm = BiLMSource(*paths, card["bilm"]["source"], config["bilm_normalize"])
    return TaggerDir(tagger.eval(), tagset, words, card, bilm)


def card_markdown(card: dict) -> str:
    """The card as a short README: what the tagger reads and how well it tags."""
    lines = [
        "# elmo-train sequence tagger",
        "",
        "A BiLSTM-CRF tagger (char CNN + word embeddings + biLM features); `elmo tag predict "
        "--tagger DIR` uses it. `card.json` has everything below.",
        "",
        "| | |",
        "|---|---|",
        f"| features | {card['features']} |",
        f"| biLM | {card['bilm']['source'] if card['bilm'] else 'none'} |",
        f"| training data | {card['data']['train']} |",
        f"| best epoch | {card['training']['best_epoch']} of {card['training']['epochs_run']} |",
    ]
    for split in ("dev", "test"):
        scores = card["scores"][split]
        lines.append(
            f"| {split} entity F1 (seqeval, strict IOB2) | {100 * scores['f1']:.2f} "
            f"(P {100 * scores['precision']:.2f}, R {100 * scores['recall']:.2f}) |"
        )
    if card["scalar_mix"]:
        mix = card["scalar_mix"]
        weights = ", ".join(
            f"{n} {w:.3f}" for n, w in zip(mix["layers"], mix["weights"], strict=True)
        )
        lines.append(f"| scalar mix | {weights}; gamma {mix['gamma']:.3f} |")
    lines += ["", "Command:", "", "```", card["command"], "```", ""]
    return "\n".join(lines)
