"""The in-memory loaders (trials.loaders): DDP shards, the training order's seed."""

from __future__ import annotations

import pytest
import torch

from trials.data import DataConfig, load_train_val

DATA = DataConfig(name="synthetic", batch_size=64, synthetic_train=640)


@pytest.mark.parametrize("n,world", [(1151, 2), (1150, 2), (10, 3)])
def test_shards_are_disjoint_and_equal_so_ddp_ranks_take_the_same_steps(n, world):
    from trials.loaders import TensorLoader

    x = torch.arange(n, dtype=torch.float).view(n, 1, 1, 1)
    loader = TensorLoader(x, torch.zeros(n), batch_size=4, mean=torch.zeros(1), std=torch.ones(1), drop_last=True)
    shards = [loader.shard(r, world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1 and len({s.num_samples for s in shards}) == 1
    seen = [set(s.x.flatten().tolist()) for s in shards]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1 :])


def test_reseed_sets_the_training_order():
    from trials.loaders import reseed

    train = load_train_val(DATA).train
    reseed(train, 5)
    first = next(iter(train))[1]
    reseed(train, 5)
    assert torch.equal(next(iter(train))[1], first)
    reseed(train, 6)
    assert not torch.equal(next(iter(train))[1], first)
