"""DataLoader workers as the data module starts them: one intra-op thread each."""

import os
from functools import partial

import torch
from torch.utils.data import DataLoader, IterableDataset

from elmo_train.data.workers import ignore_sigterm_unless_from


class ThreadCounts(IterableDataset):
    def __iter__(self):
        yield torch.get_num_threads()


def test_each_worker_runs_one_thread_whatever_the_main_process_uses():
    # torch's worker loop sets one thread; elmo_train.runtime leaves a CPU per worker for it.
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        loader = DataLoader(
            ThreadCounts(),
            batch_size=None,
            num_workers=2,
            worker_init_fn=partial(ignore_sigterm_unless_from, os.getpid()),
        )
        assert list(loader) == [1, 1]
    finally:
        torch.set_num_threads(before)
