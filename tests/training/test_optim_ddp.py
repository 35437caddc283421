"""Row-sparse updates under DDP: torch's DDP reduces sparse gradients only for nn.Embedding
parameters and only over gloo (NCCL has no sparse all-reduce), so under DDP the output layer
trains densely; the replicas must stay identical. gloo on the CPU; NCCL with two GPUs."""

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import SoftmaxConfig, preset
from elmo_train.reference.workload import make_batch, synthetic_types
from elmo_train.training.optim import (
    OptimizerConfig,
    build_optimizer,
    clip_gradients_,
    enable_sparse_updates,
)

pytestmark = pytest.mark.ddp


def _worker(rank: int, world_size: int, backend: str, port: int, out: str) -> None:
    dist.init_process_group(backend, f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    config = preset("tiny")
    config.softmax = SoftmaxConfig(kind="sampled", n_negatives=64)
    torch.manual_seed(0)  # the same initial weights on both ranks
    lm = LanguageModel(config, 500).to(device)
    initial = lm.output.weight.detach().cpu().clone()
    optimizer_config = OptimizerConfig(lr=0.2)
    message = enable_sparse_updates(lm.output, optimizer_config, world_size)
    ddp = torch.nn.parallel.DistributedDataParallel(
        lm, device_ids=[rank] if device.type == "cuda" else None
    )
    optimizer = build_optimizer(optimizer_config, ddp.parameters())
    rng = np.random.default_rng(rank)  # each rank its own rows
    batch = make_batch(synthetic_types(200, rng), 3, 5, 1.0, rng).to(device)
    for step in range(2):
        torch.manual_seed(100 * rank + step)  # each rank its own negatives
        optimizer.zero_grad(set_to_none=True)
        ddp(batch).loss.backward()
        clip_gradients_(ddp.parameters(), 1.0)
        optimizer.step()
    params = [p.detach().cpu() for p in lm.parameters()]
    torch.save({"message": message, "params": params, "initial": initial}, f"{out}/{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize(
    "backend",
    [
        "gloo",
        pytest.param(
            "nccl",
            marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs"),
            ],
        ),
    ],
)
def test_ddp_replicas_stay_identical_with_dense_output_updates(backend, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, backend, port, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"{rank}.pt") for rank in (0, 1)]
    assert ranks[0]["message"] == (
        "output layer: dense updates (DDP (world size 2) all-reduces dense gradients only)"
    )
    for p, q in zip(ranks[0]["params"], ranks[1]["params"], strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)  # all-reduced: bitwise the same
    assert not torch.equal(ranks[0]["params"][-2], ranks[0]["initial"])  # the rows were trained
