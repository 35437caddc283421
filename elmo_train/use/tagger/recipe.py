"""`elmo tag train` and `elmo tag predict`, top to bottom: read the files -> tag set -> biLM
features (cached) -> tagger -> fit -> score dev and test -> write the tagger directory."""

import time
from pathlib import Path

import lightning as L

from elmo_train.errors import UserError
from elmo_train.formats import atomic
from elmo_train.formats.atomic import check_replaceable
from elmo_train.use.tagger.data import TaggedSentences, WordVocab
from elmo_train.use.tagger.directory import (
    CARD,
    build_tagger,
    load_tagger_dir,
    save_tagger_dir,
    scalar_mix_card,
)
from elmo_train.use.tagger.features import BiLMFeatures, BiLMSource
from elmo_train.use.tagger.iob import TaggedFile, TagSet, read_tagged, write_tagged
from elmo_train.use.tagger.network import TaggerConfig
from elmo_train.use.tagger.scores import entity_scores, format_scores
from elmo_train.use.tagger.training import TrainConfig, fit, predict


def read_splits(paths: dict[str, Path]) -> dict[str, TaggedFile]:
    """Train, dev and test files; the line about repaired or IOB1 tags printed, if any."""
    files = {name: read_tagged(path) for name, path in paths.items()}
    for file in files.values():
        if file.note():
            print(file.note())
    return files


def train_tagger(
    paths: dict[str, Path],
    output: Path,
    tagger_config: TaggerConfig,
    train_config: TrainConfig,
    bilm: BiLMSource | None,
    cache_dir: Path,
    command: str,
) -> dict:
    """Train, score and save a tagger; returns its card (scores under `"scores"`)."""
    if (bilm is None) != (tagger_config.features == "none"):
        raise UserError(
            f"--features {tagger_config.features} "
            + (
                "needs a biLM: pass --model DIR or --options/--weights"
                if bilm is None
                else "uses no biLM: drop --model/--options/--weights"
            )
        )
    check_replaceable(output, CARD, "tagger directory")
    started = time.perf_counter()
    files = read_splits(paths)
    tagset = TagSet.from_file(files["train"])
    for name in ("dev", "test"):
        tagset.check(files[name], files["train"].path)
    words = WordVocab.build(files["train"].sentences, tagger_config.min_word_count)
    print(
        f"tags: {', '.join(tagset.tags)}; {len(words):,} word embeddings; "
        + ", ".join(f"{n} {len(f.sentences):,} sentences" for n, f in files.items())
    )

    features, timings = {}, {}
    n_layers = feature_dim = 0
    if bilm is not None:
        source = BiLMFeatures(bilm, cache_dir, train_config.device)
        for name, file in files.items():
            features[name], report = source.of([s.tokens for s in file.sentences])
            print(report.line(f"{name} ({file.path})"), flush=True)
            timings[f"features_{name}_seconds"] = round(report.seconds, 3)
        n_layers, feature_dim = features["train"].n_layers, features["train"].dim
    datasets = {
        name: TaggedSentences(file.sentences, words, tagset, features.get(name))
        for name, file in files.items()
    }

    # Seeded here, not in `fit`: the initial weights must not depend on whether the features
    # came from the cache (loading the biLM draws random numbers).
    L.seed_everything(train_config.seed, workers=True, verbose=False)
    tagger = build_tagger(tagger_config, words, tagset, n_layers, feature_dim)
    n_parameters = sum(p.numel() for p in tagger.parameters())
    print(f"tagger: {n_parameters:,} parameters, features {tagger_config.features}", flush=True)
    fit_start = time.perf_counter()
    result = fit(tagger, tagset.tags, datasets["train"], datasets["dev"], train_config)
    timings["tagger_training_seconds"] = round(time.perf_counter() - fit_start, 3)
    epoch_rates = [r.sentences_per_second for r in result.history]
    timings["tagger_sentences_per_second"] = round(sum(epoch_rates) / len(epoch_rates), 1)

    scores = {}
    for name in ("dev", "test"):
        predicted = predict(tagger, datasets[name], tagset.tags)
        scores[name] = entity_scores([s.tags for s in files[name].sentences], predicted)
        print("\n".join(format_scores(f"{name} ({files[name].path.name})", scores[name])))
    timings["total_seconds"] = round(time.perf_counter() - started, 3)

    card = {
        "features": tagger_config.features,
        "bilm": None
        if bilm is None
        else {
            "source": bilm.source,
            "sha256": source.model_key,
            "normalize": bilm.normalize,
            "n_layers": n_layers,
            "dim": feature_dim,
        },
        "scores": scores,
        "scalar_mix": scalar_mix_card(tagger),
        "data": {name: str(f.path) for name, f in files.items()}
        | {f"{name}_sentences": len(f.sentences) for name, f in files.items()},
        "training": {
            "seed": train_config.seed,
            "max_epochs": train_config.epochs,
            "epochs_run": len(result.history),
            "best_epoch": result.best_epoch,
            "dev_f1_per_epoch": [r.dev["f1"] for r in result.history],
            "parameters": n_parameters,
        },
        "timings": timings,
        "command": command,
    }
    save_tagger_dir(output, tagger, tagset, words, card, bilm, n_layers, feature_dim)
    print(
        f"tagger written to {output} (best epoch {result.best_epoch}); total {timings['total_seconds']:.0f} s"
    )
    return card


def predict_file(
    tagger_dir: Path, input_path: Path, output: Path, cache_dir: Path, device: str
) -> None:
    """Tag `input_path` (tokens, with or without a tag column) into `output`, same format."""
    loaded = load_tagger_dir(tagger_dir)
    file = read_tagged(input_path, require_tags=False)
    if file.note():
        print(file.note())
    features = None
    if loaded.bilm is not None:
        source = BiLMFeatures(loaded.bilm, cache_dir, device)
        features, report = source.of([s.tokens for s in file.sentences])
        print(report.line(str(input_path)))
    dataset = TaggedSentences(file.sentences, loaded.words, None, features)
    loaded.tagger.to(device)
    start = time.perf_counter()
    predicted = predict(loaded.tagger, dataset, loaded.tagset.tags)
    seconds = time.perf_counter() - start
    write_tagged(file, predicted, output)
    print(
        f"tagged {len(file.sentences):,} sentences ({file.n_tokens:,} tokens) in {seconds:.1f} s; "
        f"wrote {output}"
    )
    if file.tagged:
        gold = [s.tags for s in file.sentences]
        print("\n".join(format_scores("input's tags", entity_scores(gold, predicted))))


def write_json(path: Path, card: dict) -> None:
    atomic.write_json(path, card["scores"])
