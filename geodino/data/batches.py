"""Pretraining batches, whatever the source: :class:`PretrainData` and the map-style epoch sampler.

This is the ground floor every data source builds on (the shard stream included), so it imports
nothing of geodino but the dataset card and the bad-sample policy (:mod:`geodino.data.bad`).

Map-style sources (synthetic scenes, image folders) use :class:`EpochBatches`: one permutation of
the dataset per epoch, seeded by ``(seed, epoch)``, cut into global batches of which each process
takes its contiguous slice. The data position is therefore a pure function of the step, which
makes resume exact and gives a 1-process run the same global batches as an N-process one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from geodino.data.bad import BAD, ReportingBad, collate_reporting_bad, pretrain_policy
from geodino.data.card import DatasetCard
from geodino.utils import GPU_LOADER_WORKERS, ignore_stop_signals

T = TypeVar("T")


class EpochBatches(Sampler[list[int]]):
    """This process's slice of every global batch of one epoch, from ``start_step`` on."""

    def __init__(self, num_samples: int, batch_size: int, rank: int, world_size: int, seed: int,
                 epoch: int, start_step: int = 0) -> None:
        self.global_batch = batch_size * world_size
        self.steps = num_samples // self.global_batch
        if self.steps == 0:
            raise ValueError(f"the dataset has {num_samples} samples, fewer than one global batch "
                             f"({batch_size} per process × {world_size} processes)")
        self.num_samples, self.batch_size, self.rank = num_samples, batch_size, rank
        self.seed, self.epoch, self.start_step = seed, epoch, start_step

    def __len__(self) -> int:
        return self.steps - self.start_step

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=g)
        for step in range(self.start_step, self.steps):
            start = step * self.global_batch + self.rank * self.batch_size
            yield order[start : start + self.batch_size].tolist()


def batch_images(batch: dict[str, Any], device: Any) -> torch.Tensor:
    """A batch's float32 images on ``device`` (its ``image``; shard batches whose bands still travel
    in their stored dtype and size are assembled there)."""
    from geodino.data.shards.format import assemble_batch

    return assemble_batch(batch, device)


@dataclass
class PretrainData:
    """Where pretraining batches come from: ``batches(epoch, start_step)`` yields dict batches,
    ``images(batch, device)`` turns one into float32 images on the training device.

    ``description`` says what is read (which split, how many samples) for the run's log;
    ``bad_samples()`` how many bad samples were skipped so far (``data.bad_samples=skip``);
    ``close()`` stops the loader's worker processes (the run calls it when it ends, however it ends).
    """

    card: DatasetCard
    steps_per_epoch: int
    batches: Callable[[int, int], Iterator[dict[str, Any]]]
    description: str = ""
    images: Callable[[dict[str, Any], Any], torch.Tensor] = batch_images
    bad_samples: Callable[[], int] = lambda: 0
    close: Callable[[], None] = lambda: None


def map_style_pretrain_data(dataset: Dataset, card: DatasetCard, cfg: Any, rank: int, world: int,
                            description: str = "") -> PretrainData:
    """:class:`PretrainData` over a map-style dataset (``cfg``: a pretraining recipe). A sample the
    dataset cannot read (:class:`~geodino.data.bad.SampleError`) follows ``data.bad_samples``."""
    d = cfg.data
    steps = len(dataset) // (d.batch_size * world)
    if steps == 0:
        raise ValueError(f"data: {len(dataset)} samples are fewer than one global batch "
                         f"({d.batch_size} × {world} processes); lower data.batch_size")

    # One loader for the whole run: with workers, they start once and persist across epochs
    # (starting them anew each epoch is seconds a GPU waits); the sampler is told the epoch.
    sampler = EpochBatches(len(dataset), d.batch_size, rank, world, cfg.run.seed, 0)
    policy = pretrain_policy(d, len(dataset), rank, cfg.run.out_dir)
    loader = DataLoader(ReportingBad(dataset), batch_sampler=sampler, num_workers=d.num_workers,
                        collate_fn=collate_reporting_bad,
                        pin_memory=torch.cuda.is_available(), persistent_workers=d.num_workers > 0,
                        # its own generator: a DataLoader otherwise draws its worker seeds from the
                        # global RNG, which would shift the stochastic-depth draws of a resumed run
                        generator=torch.Generator().manual_seed(cfg.run.seed * 100_003),
                        worker_init_fn=ignore_stop_signals)

    def batches(epoch: int, start_step: int) -> Iterator[dict[str, Any]]:
        sampler.epoch, sampler.start_step = epoch, start_step  # read when the loader starts iterating
        for batch in loader:
            for record in batch.pop(BAD, []):
                policy.handle({**record, "epoch": epoch})  # raises under data.bad_samples=error
            yield batch

    return PretrainData(card=card, steps_per_epoch=steps, batches=batches, description=description,
                        bad_samples=lambda: policy.count, close=lambda: stop_workers(loader))


def stop_workers(loader: DataLoader) -> None:
    """Stop the persistent worker processes of ``loader`` now.

    They otherwise live as long as the loader object, and the workers ignore SIGTERM (the scheduler's
    signal is the main process's to handle, see :func:`~geodino.utils.ignore_stop_signals`): a loader
    still referenced when the interpreter exits leaves multiprocessing's exit handler waiting on
    them forever (a finished run hung at exit once an import kept the loader alive). DataLoader has
    no public way to do this; its iterator's shutdown is what deleting the loader would run."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None


def loader_workers(requested: int, device: Any) -> int:
    """``requested`` loader processes, or for -1 (auto) :data:`GPU_LOADER_WORKERS` with a GPU and 0
    on the CPU, where the model's own threads already use every core."""
    import os

    if requested >= 0:
        return requested
    return min(GPU_LOADER_WORKERS, os.cpu_count() or 1) if torch.device(device).type == "cuda" else 0


def device_loader(dataset: Dataset, batch_size: int, device: Any, workers: int = -1, **kwargs: Any) -> DataLoader:
    """A DataLoader for evaluation and fine-tuning on ``device``: :func:`loader_workers` processes
    (each reads its own share of an iterable dataset: :func:`worker_share`) and, with a GPU, pinned
    batches that cross with ``.to(device, non_blocking=True)``."""
    workers = loader_workers(workers, device)
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                      pin_memory=torch.device(device).type == "cuda", persistent_workers=False,
                      worker_init_fn=ignore_stop_signals if workers else None, **kwargs)


def worker_share(samples: Iterable[T], limit: int | None = None) -> Iterator[tuple[int, T]]:
    """``(position, sample)`` of the first ``limit`` (all when None) of ``samples`` that are this
    loader process's to yield: those whose position modulo the number of workers is its index (all
    of them outside a worker), so that several workers of an iterable dataset read each sample once."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    index, count = (0, 1) if info is None else (info.id, info.num_workers)
    for n, sample in enumerate(samples):
        if limit is not None and n >= limit:
            return
        if n % count == index:
            yield n, sample
