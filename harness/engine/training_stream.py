"""The training stream: each step's batch generated on the fly from (seed, step), ahead of training.

``Task.training_examples(seed, step, ...)`` is deterministic, so nothing is stored: every run of a
sweep regenerates the same stream, and a run resumed from a checkpoint at step s starts the
stream at s. A torch DataLoader over the steps generates batches in ``workers`` background
processes (0: in the training process, the same batches), each at most ``PREFETCH`` batches
ahead, so generation overlaps training and its memory is a few batches whatever the number of
steps. The steps' lengths are drawn up front (8 bytes a step), as they always were.
"""

from __future__ import annotations

import signal
import sys

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from harness.config import TrainConfig
from harness.taskkit.task import Task

#: batches each worker prepares ahead of the training step
PREFETCH = 4
#: how workers start, named rather than inherited: a launcher's worker process (joblib's loky) has a
#: default context of its own that cannot start them; fork is cheap and pickles nothing, but is
#: unsafe on macOS
WORKER_START = "spawn" if sys.platform == "darwin" else "fork"


def step_lengths(seed: int, config: TrainConfig) -> np.ndarray:
    """The sequence length of every training step, uniform in [min_context_len, context_len]: ``train.steps``
    of them, or fewer where the token budget ``train.max_tokens`` ends first (the steps whose inputs, with
    those before them, fit in it). A budget changes no step's length, only how many steps there are."""
    if config.max_tokens is None:
        count = config.steps
    else:  # the most steps the budget could hold, every one at the shortest length
        most = config.max_tokens // (config.batch_size * config.min_context_len)
        count = most if config.steps is None else min(config.steps, most)
    lengths = np.random.default_rng([seed, 2]).integers(config.min_context_len, config.context_len + 1, count)
    if config.max_tokens is not None:
        lengths = lengths[np.cumsum(lengths * config.batch_size) <= config.max_tokens]
    return lengths


class TrainingStream(Dataset):
    """Step -> (tokens, training targets), LongTensors [batch_size, length of that step]."""

    def __init__(self, task: Task, seed: int, lengths: np.ndarray, batch_size: int):
        self.task, self.seed, self.lengths, self.batch_size = task, seed, lengths, batch_size

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        examples = self.task.training_examples(self.seed, step, self.batch_size, int(self.lengths[step]))
        return (torch.from_numpy(np.stack([e.tokens for e in examples])),
                torch.from_numpy(np.stack([e.training_targets for e in examples])))


def _ignore_job_signals(worker_id: int) -> None:
    """Leave SLURM's warning signals (submitit's checkpoint-and-requeue handler) to the training process."""
    for name in ("SIGUSR1", "SIGUSR2"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)


def training_batches(task: Task, seed: int, lengths: np.ndarray, batch_size: int, first_step: int = 0,
                     workers: int = 1, pin_memory: bool = False) -> DataLoader:
    """The batches of steps ``first_step`` .. ``len(lengths) - 1``, in order."""
    return DataLoader(TrainingStream(task, seed, lengths, batch_size), batch_size=None,
                      sampler=range(first_step, len(lengths)), num_workers=workers,
                      prefetch_factor=PREFETCH if workers else None, pin_memory=pin_memory,
                      worker_init_fn=_ignore_job_signals, multiprocessing_context=WORKER_START if workers else None)
