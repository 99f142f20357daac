import os
import random
import socket
import time

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset

from detection.engine.distributed import (
    DistContext,
    GlobalBatchSampler,
    all_gather_object,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    epoch_loader,
    eval_shard,
    init_distributed,
    is_main,
    loss_weight,
    no_sync,
    seed_everything,
)

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def no_torchrun_env(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)


def global_batches(num_samples, batch_size, world_size, accumulation=1, epoch=0, start_batch=0):
    """The union of all ranks' batches, pass by pass, in rank order."""
    samplers = [GlobalBatchSampler(num_samples, batch_size, world_size=world_size, rank=r,
                                   accumulation_steps=accumulation, seed=3) for r in range(world_size)]
    for s in samplers:
        s.set_epoch(epoch, start_batch)
    per_rank = [list(s) for s in samplers]
    assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) == len(samplers[0])
    return [sum((b[i] for b in per_rank), []) for i in range(len(per_rank[0]))]


def test_sampler_gives_the_same_global_batches_for_one_and_two_processes():
    one = global_batches(23, 8, 1)
    two = global_batches(23, 8, 2)
    four = global_batches(23, 8, 4)
    assert one == two == four
    assert len(one) == 2 and all(len(b) == 8 for b in one)  # 23 // 8 steps, the rest dropped
    assert len({i for b in one for i in b}) == 16
    # every pass of an accumulated step is one slice of the same permutation
    acc = global_batches(23, 8, 2, accumulation=2)
    assert len(acc) == 4 and all(len(b) == 4 for b in acc)
    assert [i for b in acc for i in b] == [i for b in one for i in b]


def test_sampler_epochs_differ_and_do_not_touch_the_global_rng():
    state = torch.get_rng_state()
    a, b = global_batches(40, 8, 2, epoch=0), global_batches(40, 8, 2, epoch=1)
    assert a != b and a == global_batches(40, 8, 2, epoch=0)
    assert torch.equal(state, torch.get_rng_state())
    plain = GlobalBatchSampler(6, 2, shuffle=False)
    assert list(plain) == [[0, 1], [2, 3], [4, 5]]


def test_sampler_resumes_mid_epoch():
    whole = global_batches(30, 6, 2, accumulation=3, epoch=2)
    rest = global_batches(30, 6, 2, accumulation=3, epoch=2, start_batch=4)
    assert rest == whole[4:]
    sampler = GlobalBatchSampler(30, 6, world_size=2, rank=1, accumulation_steps=3)
    assert (sampler.steps_per_epoch, sampler.batches_per_epoch, sampler.local_batch_size) == (5, 15, 1)
    sampler.set_epoch(0, 15)
    assert list(sampler) == [] and len(sampler) == 0
    with pytest.raises(ValueError, match="start_batch"):
        sampler.set_epoch(0, 16)


def test_sampler_rejects_batches_that_do_not_divide():
    with pytest.raises(ValueError, match="multiple of accumulation_steps 2 x world_size 2"):
        GlobalBatchSampler(10, 6, world_size=2, accumulation_steps=2)
    with pytest.raises(ValueError, match="rank"):
        GlobalBatchSampler(10, 4, world_size=2, rank=2)


def test_eval_shard_covers_every_index_once():
    shards = [eval_shard(11, r, 3) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11))


def test_single_process_context_and_collectives(no_torchrun_env):
    ctx = init_distributed("cpu")
    assert ctx == DistContext() and ctx.is_main and not ctx.distributed and ctx.backend is None
    assert is_main()
    barrier()
    ctx.barrier()
    assert all_reduce_mean(3.0) == 3.0 and all_reduce_sum(2) == 2.0
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(ctx.all_reduce_mean(t), t) and ctx.all_reduce_mean(t) is not t
    assert all_gather_object({"a": 1}) == [{"a": 1}] == ctx.all_gather_object({"a": 1})
    assert loss_weight(5) == 1.0
    net = nn.Linear(2, 2)
    assert ctx.wrap(net) is net
    with no_sync(net, sync=False):
        pass


def test_incomplete_torchrun_environment_is_an_error(no_torchrun_env, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RuntimeError, match="LOCAL_RANK, WORLD_SIZE not set"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert init_distributed("cpu").world_size == 1


def test_seed_everything_repeats_and_offsets_by_rank():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(()))  # noqa: NPY002

    assert seed_everything(7) == 7
    first = draw()
    seed_everything(7)
    assert draw() == first
    assert seed_everything(7, rank=1) == 8 and draw() != first


# --------------------------------------------------------------------------------------------------
# 2 processes with DDP == 1 process with the same global batch


class RowsDataset(Dataset):
    """Samples with 1 to 3 rows each (like clips with a varying number of boxes)."""

    def __init__(self, n=24):
        g = torch.Generator().manual_seed(0)
        self.x = [torch.randn(1 + i % 3, 5, generator=g) for i in range(n)]
        self.y = [torch.randn(len(x), 1, generator=g) for x in self.x]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def collate(items):
    return torch.cat([x for x, _ in items]), torch.cat([y for _, y in items])


def train_tiny(ctx, global_batch=8, accumulation=2, epochs=2):
    """A few clipped SGD steps of a small MLP over RowsDataset, as the training loop would make them."""
    torch.manual_seed(0)
    model = ctx.wrap(nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    dataset = RowsDataset()
    sampler = GlobalBatchSampler(len(dataset), global_batch, world_size=ctx.world_size, rank=ctx.rank,
                                 accumulation_steps=accumulation, seed=1)
    for epoch in range(epochs):
        for i, (x, y) in enumerate(epoch_loader(dataset, sampler, epoch, collate_fn=collate)):
            last_pass = (i + 1) % accumulation == 0
            with no_sync(model, sync=last_pass):
                loss = nn.functional.mse_loss(model(x), y) * loss_weight(len(x)) / accumulation
                loss.backward()
            if last_pass:
                nn.utils.clip_grad_norm_(model.parameters(), 0.5)
                optimizer.step()
                optimizer.zero_grad()
    return {k: v.detach().clone() for k, v in getattr(model, "module", model).state_dict().items()}


def _worker(rank, world_size, port, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    try:
        assert (ctx.rank, ctx.world_size, ctx.backend) == (rank, world_size, "gloo")
        assert ctx.is_main == (rank == 0) == is_main()
        gathered = all_gather_object(rank * 10)
        mean = all_reduce_mean(torch.tensor(float(rank)))
        weights = train_tiny(ctx)
        torch.save({"weights": weights, "gathered": gathered, "mean": float(mean)}, f"{out_dir}/rank{rank}.pt")
        barrier()
    finally:
        ctx.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_make_the_same_weights_as_one(tmp_path, no_torchrun_env, one_torch_thread):
    start = time.perf_counter()
    # The single run first: it imports what the optimizer needs (torch._dynamo), which the forked children
    # then inherit instead of importing again (seconds each on 2 busy cores).
    single = train_tiny(init_distributed("cpu"))
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert results[0]["gathered"] == [0, 10] and results[1]["mean"] == 0.5
    for key, value in single.items():
        assert torch.equal(results[0]["weights"][key], results[1]["weights"][key])  # DDP keeps ranks in step
        torch.testing.assert_close(results[0]["weights"][key], value, atol=1e-6, rtol=0)
    torch.manual_seed(0)
    untrained = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))
    assert not torch.allclose(untrained[0].weight, single["0.weight"])
    assert time.perf_counter() - start < 60
