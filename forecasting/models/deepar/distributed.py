"""Data-parallel DeepAR training in several local processes (torch.distributed).

``DeepAR(num_processes=k).fit(...)`` spawns ``k`` processes that each hold the panel tensors,
join one process group (gloo on CPU, nccl with one GPU per process) and train together (see
``training.World``); process 0 hands the trained weights back to the caller. On a cluster, launch
the script with ``torchrun`` instead: ``fit`` then trains in the process group already there.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .training import World

__all__ = ["spawn_fit"]


def _worker(rank: int, size: int, model, pt, horizon: int, seed: int, backend: str, store: str, out: str,
            threads: int, pt_val=None):
    torch.set_num_threads(threads)
    # rendezvous through a file in the call's own temporary folder: no port to pick, so no race
    # with other programs for it
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        dev = pt.y.device
        if dev.type == "cuda":
            dev = torch.device("cuda", rank)
            torch.cuda.set_device(dev)
            move = lambda p: type(p)(**{k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in vars(p).items()})
            pt = move(pt)
            pt_val = None if pt_val is None else move(pt_val)
        net, info = model._train_phases(pt, horizon, World(rank, size, str(dev)), seed, pt_val)
        if rank == 0:
            torch.save({"state": {k: v.cpu() for k, v in net.state_dict().items()}, "train": info}, out + ".part")
            os.replace(out + ".part", out)
        dist.barrier()  # the trained weights are on disk before any process tears its connections down
    finally:
        dist.destroy_process_group()


def spawn_fit(model, pt, horizon: int, seed: int, pt_val=None) -> tuple[dict, dict]:
    """Train the member ``seed`` of ``model`` (a configured ``DeepAR`` with ``features_`` set) on
    ``pt`` in ``model.num_processes`` processes; returns process 0's weights (on the CPU) and history."""
    size = model.num_processes
    cuda = pt.y.device.type == "cuda"
    backend = model.backend or ("nccl" if cuda else "gloo")
    if cuda and size > torch.cuda.device_count():
        raise ValueError(f"num_processes={size} needs {size} GPUs; {torch.cuda.device_count()} visible")
    threads = max(1, torch.get_num_threads() // size)
    with tempfile.TemporaryDirectory(prefix="deepar_ddp_") as tmp:
        out, store = str(Path(tmp) / "rank0.pt"), str(Path(tmp) / "store")
        try:
            mp.spawn(_worker, args=(size, model, pt, horizon, seed, backend, store, out, threads, pt_val),
                     nprocs=size, join=True)
        except mp.ProcessExitedException as e:
            # gloo can abort a process while it closes its connections at exit ("terminate called
            # without an active exception", seen once in CI on this machine). Once process 0 has written
            # the weights every training step is done, so they are the result; any other death is an error.
            if not Path(out).exists():
                raise
            warnings.warn(f"a training process died while shutting down after training finished ({e}); "
                          "the trained weights were already saved and are used", RuntimeWarning)
        result = torch.load(out, map_location="cpu", weights_only=False)
    return result["state"], result["train"]
