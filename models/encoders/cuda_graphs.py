"""Encoder towers replayed from CUDA graphs, one graph per batch-size bucket.

A small ViT or text transformer at the batch sizes a router sees is bound by kernel
launches, not by the GPU: ViT-B-32's image tower takes about 5 ms at batch 1 whatever the
dtype (``../shared/notes/gpu-2026-11-26.md``). Capturing the tower once per bucket (1, 2,
4, ... up to the micro-batch size) and replaying the graph turns hundreds of launches into
one. A batch of ``n`` is copied into the smallest bucket that holds it; the rows past
``n`` hold stale inputs whose outputs are never read (no op in these towers mixes rows).
Batches larger than the biggest bucket run eagerly.

Autocast is applied inside the capture (with its weight cache off, as CUDA graphs need),
so a replay runs the same mixed-precision kernels as an eager call would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any


def buckets_up_to(largest: int) -> list[int]:
    """1, 2, 4, ... and ``largest`` itself (so a full micro-batch needs no padding)."""
    sizes, size = [], 1
    while size < largest:
        sizes.append(size)
        size *= 2
    return [*sizes, max(1, largest)]


class GraphedTower:
    """``fn(x)`` for a batch ``x`` whose rows have the shape and dtype of ``row``."""

    def __init__(
        self,
        fn: Callable[[Any], Any],
        row_shape: tuple[int, ...],
        row_dtype: Any,
        device: str,
        buckets: list[int],
        autocast_dtype: Any | None = None,
        warmup: int = 2,
    ) -> None:
        import torch

        self._torch = torch
        self._fn = fn
        self._device = device
        self._autocast_dtype = autocast_dtype
        self._graphs: dict[int, tuple[Any, Any, Any]] = {}
        self.buckets = sorted(set(buckets))
        pool = torch.cuda.graph_pool_handle()
        # largest first: the smaller graphs reuse its memory from the shared pool
        for size in reversed(self.buckets):
            static_in = torch.zeros((size, *row_shape), dtype=row_dtype, device=device)
            self._graphs[size] = self._capture(static_in, pool, warmup)

    def _autocast(self) -> Any:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return self._torch.autocast("cuda", dtype=self._autocast_dtype, cache_enabled=False)

    def _capture(self, static_in: Any, pool: Any, warmup: int) -> tuple[Any, Any, Any]:
        torch = self._torch
        side = torch.cuda.Stream(device=self._device)
        side.wait_stream(torch.cuda.current_stream(self._device))
        with torch.inference_mode(), self._autocast():
            with torch.cuda.stream(side):  # warm-up off the capture (cuBLAS handles, autotune)
                for _ in range(warmup):
                    self._fn(static_in)
            torch.cuda.current_stream(self._device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                static_out = self._fn(static_in)
        return graph, static_in, static_out

    def __call__(self, x: Any) -> Any:
        n = int(x.shape[0])
        bucket = next((b for b in self.buckets if b >= n), None)
        if bucket is None or n == 0:
            with self._autocast():
                return self._fn(x)
        graph, static_in, static_out = self._graphs[bucket]
        static_in[:n].copy_(x, non_blocking=True)
        graph.replay()
        return static_out[:n].clone()  # the next replay overwrites static_out
