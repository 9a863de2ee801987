"""Length-grouped batches whose order depends only on (seed, epoch), so a resumed run sees the
same batches as an uninterrupted one.

transformers' `LengthGroupedSampler` draws from the global RNG when it is iterated; after a
resume that RNG is in another state, so the resumed run would train on other batches. Here
each epoch's order comes from a generator seeded with seed + epoch (the Trainer calls
`set_epoch` before every epoch). Imported by the trainer only: it imports torch.
"""

from __future__ import annotations

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices


class SeededLengthGroupedSampler(LengthGroupedSampler):
    def __init__(self, batch_size: int, dataset, *, seed: int):
        super().__init__(batch_size, dataset=dataset)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class LengthGroupedTrainer(Trainer):
    """A Trainer that batches samples of similar length together, reproducibly."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return SeededLengthGroupedSampler(batch, dataset, seed=self.args.seed)
