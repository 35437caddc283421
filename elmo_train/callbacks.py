"""Callbacks of elmo-train's own."""

import hashlib
from pathlib import Path

import lightning as L
import torch


class DataAudit(L.Callback):
    """Records what each rank trained on and a digest of its final weights.

    Writes `audit_rank{R}.pt` with the forward targets of every training batch `(steps, B, T)`
    and the SHA-256 of the parameters, so runs can be checked for disjoint data across ranks,
    exact resumption and identical weights after DDP.
    """

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)
        self.targets: list[torch.Tensor] = []
        self.steps: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.targets.append(batch["fwd_targets"].cpu())
        self.steps.append(trainer.global_step)

    def on_train_end(self, trainer, pl_module) -> None:
        digest = hashlib.sha256()
        for name, param in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            digest.update(param.detach().cpu().contiguous().numpy().tobytes())
        self.dirpath.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "steps": self.steps,
                "targets": torch.stack(self.targets),
                "weights": digest.hexdigest(),
            },
            self.dirpath / f"audit_rank{trainer.global_rank}.pt",
        )
