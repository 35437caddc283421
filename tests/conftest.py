"""Offline, CPU-only, deterministic: nothing in the test suite reaches a network."""

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# One thread per process: tests (and the subprocesses they start) stay fast and repeatable even
# when other jobs share the 2 cores; tiny ops lose to OpenMP synchronisation under contention.
os.environ["OMP_NUM_THREADS"] = "1"

from elmo_train import runtime  # noqa: E402

# The suite runs under several ATEN_CPU_CAPABILITY values. Before anything imports Lightning:
# that import fixes torch.compile's cache directory (TORCHINDUCTOR_CACHE_DIR) to the default.
runtime.compile_cache_per_capability()

import pytest  # noqa: E402
import torch  # noqa: E402
from train_helpers import tiny_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures" / "bilm-tf"


torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"{FIXTURES} not found (../shared beside the checkout)")
    return FIXTURES


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Train, valid and test slices of the built-in corpus, one per test module."""
    return tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The corpus cache of a test module's training runs: the corpus is prepared once."""
    return tmp_path_factory.mktemp("cache")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
