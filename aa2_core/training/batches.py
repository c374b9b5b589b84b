"""Which samples each process draws at each micro-step, so a run does not depend on how it is split.

Micro-step ``m`` has a global batch of ``per_process * processes`` samples; process ``r`` takes samples
``r * per_process ... (r + 1) * per_process - 1``. Sample ``i`` of micro-step ``m`` draws everything
(clip, window, augmentation; noise, timestep, dropout) from generators seeded by ``(seed, m, i)`` alone:
one process with batch 2 sees the samples two processes with batch 1 see, and a resumed run continues
with the samples an uninterrupted one would have drawn (the step counter is the whole data state).
"""

from __future__ import annotations

import numpy as np
import torch


def sample_seed(seed: int, micro_step: int, index: int, stream: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(micro_step), int(index), int(stream)]).generate_state(1, np.uint64)[0] >> 1)


def draw(source, seed: int, micro_step: int, rank: int, per_process: int):
    """This process's ``(clips, generators)`` for ``micro_step``; ``generators`` then draw the noise etc."""
    clips = MicroSteps(source, seed, rank, per_process, micro_step + 1)[micro_step]
    return clips, noise_generators(seed, micro_step, rank, per_process)


def noise_generators(seed: int, micro_step: int, rank: int, per_process: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(sample_seed(seed, micro_step, i, 1)) for i in range(rank * per_process, (rank + 1) * per_process)]


class MicroSteps(torch.utils.data.Dataset):
    """Item ``m``: this process's clips of micro-step ``m`` (map-style, so worker processes prepare them ahead)."""

    def __init__(self, source, seed: int, rank: int, per_process: int, total: int):
        self.source, self.seed, self.rank, self.per_process, self.total = source, seed, rank, per_process, total

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, m: int) -> list:
        return [self.source.sample(torch.Generator().manual_seed(sample_seed(self.seed, m, i, 0)))
                for i in range(self.rank * self.per_process, (self.rank + 1) * self.per_process)]


def _as_is(item):
    return item


def micro_batches(source, seed: int, rank: int, per_process: int, start: int, total: int, workers: int = 0):
    """Iterator over micro-steps ``start .. total-1``: ``(m, clips)``; ``workers`` processes draw ahead (the
    skeleton drawing and warps of a 512x768x16 sample are seconds of CPU work)."""
    dataset = MicroSteps(source, seed, rank, per_process, total)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, sampler=range(start, total), num_workers=workers,
                                         collate_fn=_as_is, prefetch_factor=2 if workers else None)
    return zip(range(start, total), loader)
