"""Training the tagger with Lightning: Adam on the CRF loss, dev entity F1 after every epoch,
early stopping on it, the best epoch's weights kept (AllenNLP's `ner_elmo` recipe, smaller)."""

import tempfile
import time
from dataclasses import dataclass, field

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader

from elmo_train.use.tagger.data import BucketBatches, TaggedSentences, collate
from elmo_train.use.tagger.network import Tagger, TaggerBatch
from elmo_train.use.tagger.scores import entity_scores


@dataclass
class TrainConfig:
    epochs: int = 10  # the most; early stopping usually ends sooner
    patience: int = 3  # epochs without a better dev F1 before stopping
    batch_size: int = 32
    lr: float = 5e-3  # Adam; AllenNLP's ner_elmo has 1e-3 for 75 epochs (docs/DECISIONS.md)
    grad_clip: float = 5.0  # global gradient norm, as Lample et al. and AllenNLP
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("epochs", "patience", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class EpochRecord:
    epoch: int
    loss: float  # mean CRF negative log-likelihood per sentence
    dev: dict  # entity scores
    seconds: float  # the training part of the epoch
    sentences_per_second: float


@dataclass
class FitResult:
    best_epoch: int
    history: list[EpochRecord] = field(default_factory=list)


class TaggerModule(L.LightningModule):
    def __init__(self, tagger: Tagger, tags: list[str], lr: float):
        super().__init__()
        self.tagger = tagger
        self.tags = tags
        self.lr = lr
        self._gold: list[list[str]] = []
        self._predicted: list[list[str]] = []
        self.dev_scores: dict = {}

    def training_step(self, batch: TaggerBatch, batch_idx: int) -> torch.Tensor:
        return self.tagger(batch).mean()

    def validation_step(self, batch: TaggerBatch, batch_idx: int) -> None:
        for row, path in enumerate(self.tagger.decode(batch)):
            self._predicted.append([self.tags[i] for i in path])
            self._gold.append([self.tags[i] for i in batch.tags[row, : len(path)].tolist()])

    def on_validation_epoch_end(self) -> None:
        self.dev_scores = entity_scores(self._gold, self._predicted)
        self._gold, self._predicted = [], []
        self.log("val/f1", self.dev_scores["f1"])
        self.log("val/precision", self.dev_scores["precision"])
        self.log("val/recall", self.dev_scores["recall"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam((p for p in self.parameters() if p.requires_grad), lr=self.lr)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device)


class EpochReport(Callback):
    """Times each epoch's training and prints one line with its loss and the dev scores.

    Lightning validates at the end of the last training batch, before `on_train_epoch_end`,
    so the training time stops when validation starts and the loss is summed here.
    """

    def __init__(self, n_sentences: int, max_epochs: int, echo: bool = True):
        self.n_sentences = n_sentences
        self.max_epochs = max_epochs
        self.echo = echo
        self.history: list[EpochRecord] = []
        self._start = self._seconds = self._loss = 0.0
        self._batches = 0

    def on_train_epoch_start(self, trainer, module) -> None:
        self._start = time.perf_counter()
        self._loss, self._batches = 0.0, 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._loss += float(outputs["loss"])
        self._batches += 1

    def on_validation_start(self, trainer, module) -> None:
        self._seconds = time.perf_counter() - self._start

    def on_validation_end(self, trainer, module) -> None:  # after the module's scores
        record = EpochRecord(
            trainer.current_epoch + 1,
            self._loss / max(self._batches, 1),
            module.dev_scores,
            self._seconds,
            self.n_sentences / max(self._seconds, 1e-9),
        )
        self.history.append(record)
        if self.echo:
            d = record.dev
            print(
                f"epoch {record.epoch}/{self.max_epochs}: loss {record.loss:.3f}, dev P "
                f"{100 * d['precision']:.2f} R {100 * d['recall']:.2f} F1 {100 * d['f1']:.2f}; "
                f"tagger training {record.seconds:.1f} s "
                f"({record.sentences_per_second:,.0f} sentences/s)",
                flush=True,
            )


def loader(dataset: TaggedSentences, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    batches = BucketBatches(dataset.lengths(), batch_size, shuffle, seed)
    return DataLoader(dataset, batch_sampler=batches, collate_fn=collate)


def fit(
    tagger: Tagger,
    tags: list[str],
    train: TaggedSentences,
    dev: TaggedSentences,
    config: TrainConfig,
    echo: bool = True,
) -> FitResult:
    """Train `tagger` in place; on return it holds the weights of its best dev-F1 epoch.

    Batches are a function of `config.seed`; the caller seeds torch (initial weights, dropout).
    """
    module = TaggerModule(tagger, tags, config.lr)
    report = EpochReport(len(train), config.epochs, echo)
    with tempfile.TemporaryDirectory(prefix="elmo-tagger-") as checkpoints:
        best = ModelCheckpoint(
            dirpath=checkpoints, monitor="val/f1", mode="max", save_top_k=1, save_weights_only=True
        )
        stop = EarlyStopping(monitor="val/f1", mode="max", patience=config.patience)
        device = torch.device(config.device)
        trainer = L.Trainer(
            accelerator="gpu" if device.type == "cuda" else "cpu",
            devices=[device.index] if device.index is not None else 1,
            max_epochs=config.epochs,
            gradient_clip_val=config.grad_clip,
            callbacks=[report, best, stop],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,
        )
        trainer.fit(
            module,
            loader(train, config.batch_size, shuffle=True, seed=config.seed),
            loader(dev, config.batch_size, shuffle=False),
        )
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
        module.load_state_dict(state["state_dict"])
    best_record = max(report.history, key=lambda r: r.dev["f1"])
    return FitResult(best_record.epoch, report.history)


def predict(tagger: Tagger, dataset: TaggedSentences, tags: list[str], batch_size: int = 64):
    """Viterbi tags of every sentence of `dataset`, in its order."""
    tagger.eval()
    device = next(tagger.parameters()).device
    predicted: dict[int, list[str]] = {}
    for indices in BucketBatches(dataset.lengths(), batch_size, shuffle=False):
        batch = collate([dataset[i] for i in indices]).to(device)
        for i, path in zip(indices, tagger.decode(batch), strict=True):
            predicted[i] = [tags[t] for t in path]
    return [predicted[i] for i in range(len(dataset))]
