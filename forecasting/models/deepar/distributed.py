"""Data-parallel DeepAR training in several local processes (torch.distributed).

``DeepAR(num_processes=k).fit(...)`` spawns ``k`` processes that each hold the panel tensors,
join one process group (gloo on CPU, nccl with one GPU per process) and train together (see
``training.World``); process 0 hands the trained weights back to the caller. On a cluster, launch
the script with ``torchrun`` instead: ``fit`` then trains in the process group already there.
"""
from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .training import World

__all__ = ["spawn_fit"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, size: int, model, pt, horizon: int, seed: int, backend: str, port: int, out: str,
            threads: int, pt_val=None):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(threads)
    dist.init_process_group(backend, rank=rank, world_size=size)
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
            torch.save({"state": {k: v.cpu() for k, v in net.state_dict().items()}, "train": info}, out)
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
        out = str(Path(tmp) / "rank0.pt")
        mp.spawn(_worker, args=(size, model, pt, horizon, seed, backend, _free_port(), out, threads, pt_val), nprocs=size,
                 join=True)
        result = torch.load(out, map_location="cpu", weights_only=False)
    return result["state"], result["train"]
