"""Stream shards into training batches: shuffled, split by rank and worker, fixed steps per epoch,
exactly resumable, with every bad sample stopped or recorded.

Every (rank, worker) pair reads its own stream of shards, shuffles samples in a buffer, decodes,
checks and batches them; the loader stops each epoch after exactly ``steps_per_epoch`` batches
on every rank, so DDP ranks never wait on each other at the end of an epoch.

How shards are split (``resample``):

- exact (``False``): shard ``i`` belongs to rank ``i % world_size``, then to worker
  ``j % num_workers`` within the rank; each worker cycles over its own shards, reshuffled each
  cycle. Needs at least ``world_size × max(num_workers, 1)`` non-empty shards, else ValueError.
- resampled (``True``): each worker draws shards with replacement from the whole list, seeded by
  (seed, rank, worker, epoch), so any number of shards feeds any number of ranks and workers.
- ``None`` (default): exact when there are enough shards, resampled otherwise (with a warning).

Exact resume. The samples of an epoch are a pure function of (seed, epoch, rank, worker): each
epoch starts fresh worker streams seeded by it, and the DataLoader takes batches from its workers
in turn, so global batch ``b`` of the epoch is batch ``b // W`` of worker ``b % W``. An epoch
resumed at step ``s`` has each worker replay its part of the first ``s`` batches through the same
shard order and shuffle buffer without decoding a sample (tar reading only), then continue: the
run sees exactly the batches an uninterrupted run would. Samples recorded as bad before the
interruption are known by key, so the replay skips them as the first pass did.

Bad samples (see :mod:`geodino.data.shards.read`): workers never raise for bad data; they pass the
records up with the next batch, and the main process applies ``data.bad_samples``.

Do not hand the loader to ``accelerate.prepare``: it already splits by rank, and preparing it
would split a second time. Batches are ``{"image": float32 [B,C,H,W] raw values, "key": [...]}``
plus every other part the samples hold, stacked: ``label`` (int64 [B]) and arrays such as
``labels19`` (uint8 [B,19]) or ``mask`` (uint8 [B,H,W]).
"""

from __future__ import annotations

import logging
import random
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from geodino.data.shards.format import (
    RGB8_KEY,
    BadSample,
    SampleSpec,
    assemble_batch,
    assemble_groups,
    card_spec,
    decode_sample,
    load_rgb,
    shard_file_name,
    training_shards,
)
from geodino.data.bad import BAD, BadDataError, BadSamplePolicy, pretrain_policy, sample_id
from geodino.data.shards.read import raw_samples, shard_counts, shard_error_record
from geodino.data.shards.remote import RemoteError, ShardReadError
from geodino.utils import ignore_stop_signals

log = logging.getLogger(__name__)
NOT_BATCHED = ("key", "meta", "image", "groups", RGB8_KEY)  # every other part of a sample is stacked into the batch
FATAL = "__fatal__"  # a worker stopped at a bad sample (policy ``error``)


def count_samples(urls: str | Sequence[str], split: str | None = None) -> int:
    """Number of samples in the shards :func:`make_shard_loader` would read for the same arguments,
    from the ``index.json`` beside them."""
    paths = training_shards(urls, split)
    counts = shard_counts(paths)
    if counts is None:
        raise FileNotFoundError(f"no index.json beside {paths[0]}: cannot count samples without reading the "
                                "shards; set data.samples_per_epoch (or --num-samples)")
    return sum(counts.values())


def _resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side to ``size`` (bilinear, antialiased), centre crop: the JPEG geometry for arrays."""
    h, w = image.shape[-2:]
    if (h, w) == (size, size):
        return image
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    image = torch.nn.functional.interpolate(image[None], size=(new_h, new_w), mode="bilinear",
                                            align_corners=False, antialias=True)[0]
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return image[:, top:top + size, left:left + size]


def to_tensors(sample: dict[str, Any], image_size: int | None, rgb8: bool = False) -> dict[str, Any]:
    """A decoded shard sample as tensors; JPEGs go through the same decode as ImageFolderDataset
    (with ``rgb8``: kept 8-bit under ``RGB8_KEY``, for the training device to scale). Band groups
    left unassembled (``decode_sample(assemble=False)``) stay numpy views under ``"groups"`` for
    :func:`collate` to stack."""
    out: dict[str, Any] = {"key": sample["key"]}
    if "groups" in sample:
        out["groups"], out["meta"] = sample["groups"], sample["meta"]
    else:
        image = sample["image"]
        if isinstance(image, (bytes, bytearray)) and rgb8:
            out[RGB8_KEY] = load_rgb(image, image_size or 256, as_uint8=True)
        elif isinstance(image, (bytes, bytearray)):
            out["image"] = load_rgb(image, image_size or 256)
        else:
            tensor = torch.from_numpy(image)
            if image_size is not None:
                tensor = _resize(tensor, image_size)
            out["image"] = tensor
    for name, value in sample.items():
        if name not in NOT_BATCHED:
            out[name] = torch.tensor(value, dtype=torch.int64) if name == "label" else torch.from_numpy(value)
    return out


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    if torch.utils.data.get_worker_info() is not None:
        # In a worker (one torch thread), default_collate stacks straight into shared memory, so
        # the batch reaches the main process without another copy.
        return torch.utils.data.default_collate(tensors)
    # In the main process numpy's single-threaded copy: torch.stack's parallel copy stalls badly
    # when the cores are shared with training (measured 10x slower for 32 BigEarthNet samples).
    return torch.from_numpy(np.stack([t.numpy() for t in tensors]))


def _layout(sample: dict[str, Any]) -> tuple:
    return tuple((g.bands, g.array.shape, g.array.dtype.str) for g in sample["groups"])


def _stack_groups(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The band groups of samples that share one layout, stacked group by group ([B, c, h, w] in the
    stored dtype), with what :func:`geodino.data.shards.format.assemble_batch` needs."""
    meta = samples[0]["meta"]
    groups = [torch.from_numpy(np.stack([s["groups"][i].array for s in samples]))
              for i in range(len(samples[0]["groups"]))]
    return {"groups": groups, "names": [list(g.bands) for g in samples[0]["groups"]],
            "order": list(meta["bands"]), "grid": list(meta["grid"])}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    batch: dict[str, Any] = {"key": [s["key"] for s in samples]}
    if all("groups" in s for s in samples) and len({_layout(s) for s in samples}) == 1:
        batch["bands"] = _stack_groups(samples)
    elif all(RGB8_KEY in s for s in samples):
        batch[RGB8_KEY] = _stack([s[RGB8_KEY] for s in samples])
    else:
        images = [s["image"] if "image" in s else torch.from_numpy(
            assemble_groups(s["groups"], s["meta"]["bands"], tuple(s["meta"]["grid"]))) for s in samples]
        shapes = {tuple(i.shape) for i in images}
        if len(shapes) > 1:
            raise ValueError(f"images of different shapes {sorted(shapes)} in one batch: pass image_size")
        batch["image"] = _stack(images)
    for name in samples[0]:
        if name not in NOT_BATCHED and all(name in s for s in samples):
            batch[name] = _stack([s[name] for s in samples])
    return batch


class _StreamStop(Exception):
    """A worker's stream ends at bad data; its records say why."""


def _first_batches_of(worker: int, workers: int, start_step: int) -> int:
    """How many of the epoch's first ``start_step`` batches worker ``worker`` of ``workers`` served
    (the DataLoader takes batches from its workers in turn)."""
    return max(0, (start_step - worker + workers - 1) // workers)


class _WorkerStream(IterableDataset):
    """The iterable run inside each DataLoader worker (or in-process when num_workers == 0)."""

    def __init__(self, urls: list[str], *, batch_size: int, shuffle_buffer: int, seed: int, rank: int,
                 world_size: int, num_workers: int, resample: bool, image_size: int | None,
                 spec: SampleSpec | None = None, counts: dict[str, int] | None = None, skip_bad: bool = False,
                 device_assembly: bool = False) -> None:
        self.urls, self.batch_size, self.shuffle_buffer = urls, batch_size, shuffle_buffer
        self.seed, self.rank, self.world_size, self.num_workers = seed, rank, world_size, num_workers
        self.resample, self.image_size, self.spec, self.counts = resample, image_size, spec, counts or {}
        self.skip_bad, self.device_assembly = skip_bad, device_assembly
        # Set by ShardLoader before each epoch's workers start (they receive a copy).
        self.epoch = 0
        self.start_step = 0
        self.known_bad: frozenset[str] = frozenset()

    def _shard_urls(self, rng: random.Random, worker: int) -> Iterator[str]:
        if self.resample:
            while True:
                yield rng.choice(self.urls)
        mine = self.urls[self.rank::self.world_size][worker::max(self.num_workers, 1)]
        while True:
            order = list(mine)
            rng.shuffle(order)
            yield from order

    def _raw(self, rng: random.Random, worker: int, problems: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Raw samples of this worker's shards; unreadable shards become records in ``problems``."""
        # Stop once a whole round of this worker's shards (twice the shard list when resampling)
        # yields nothing: empty or, when skipping, unreadable shards would otherwise spin forever,
        # and their records only travel up with a batch.
        own = len(self.urls) if self.resample else max(1, len(self.urls[self.rank::self.world_size]
                                                           [worker::max(self.num_workers, 1)]))
        patience = 2 * own + 2 if self.resample else own
        empty_in_a_row = 0
        for url in self._shard_urls(rng, worker):
            found = 0
            try:
                for raw in raw_samples(url, self.counts.get(url)):
                    found += 1
                    yield raw
            except (ShardReadError, RemoteError) as err:  # damaged, or unreachable after the retries
                expected = self.counts.get(url)
                problems.append(shard_error_record(url, err, lost=max(1, expected - found) if expected else 1))
                if not self.skip_bad:
                    raise _StreamStop from None
            empty_in_a_row = 0 if found else empty_in_a_row + 1
            if empty_in_a_row >= patience:
                problems.append({"shard": None, "key": None, "samples": 0,
                                 "reason": f"rank {self.rank} worker {worker}: none of its shards yields a sample"})
                raise _StreamStop

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        replay = _first_batches_of(worker, max(self.num_workers, 1), self.start_step)
        rng = random.Random(f"{self.seed}:{self.rank}:{worker}:{self.epoch}")
        problems: list[dict[str, Any]] = []
        try:
            yield from self._batches(self._raw(rng, worker, problems), rng, replay, problems)
        except _StreamStop:
            # Workers never raise for bad data (a DataLoader would wrap it in a traceback): the
            # records travel up and the main process stops with one line.
            yield {BAD: problems, FATAL: True}

    def _batches(self, raws: Iterator[dict[str, Any]], rng: random.Random, replay: int,
                 problems: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        buffer: list[dict[str, Any]] = []
        batch: list[dict[str, Any]] = []
        emitted = 0
        initial = min(self.shuffle_buffer, 64)
        for n, raw in enumerate(raws):
            buffer.append(raw)
            # Emit from the start (once `initial` samples are in) and let the buffer grow by one
            # every other sample up to its size, so the first batch does not wait for a full buffer.
            if len(buffer) < initial or (len(buffer) < self.shuffle_buffer and n % 2):
                continue
            i = rng.randrange(len(buffer))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            raw = buffer.pop()
            ident = sample_id(raw["__url__"], raw["__key__"])
            if emitted < replay:
                # Replaying batches served before a resume: no decoding, only the same choices.
                if ident not in self.known_bad:
                    batch.append(raw)
            else:
                try:
                    # Groups stay in their stored dtype until the batch is whole, unless every
                    # image must be resized (then each is assembled and resized on its own).
                    decoded = decode_sample(raw, self.spec, assemble=self.image_size is not None)
                    batch.append(to_tensors(decoded, self.image_size, rgb8=self.device_assembly))
                except BadSample as err:
                    problems.append(err.record())
                    if not self.skip_bad:
                        raise _StreamStop from None
            if len(batch) == self.batch_size:
                if emitted < replay:
                    out = {"replayed": True}
                else:
                    out = collate(batch)
                    if "bands" in out and not self.device_assembly:  # (8-bit RGB only comes with it)
                        out["image"] = assemble_batch(out)
                        del out["bands"]
                out[BAD] = list(problems)
                problems.clear()  # the caller's list: records of a later stop must reach it
                emitted += 1
                batch = []
                yield out


class ShardLoader:
    """Iterable over exactly ``steps_per_epoch`` batches per epoch (see the module docstring).

    ``set_epoch(k)`` and ``iterate(epoch, start_step)`` give the same batches whatever happened
    before: each epoch starts its own worker streams. ``policy`` applies ``data.bad_samples`` to
    the bad samples the workers report.
    """

    def __init__(self, stream: _WorkerStream, steps_per_epoch: int, num_workers: int, pin_memory: bool,
                 policy: BadSamplePolicy | None = None) -> None:
        self.stream, self.steps_per_epoch = stream, steps_per_epoch
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.policy = policy or BadSamplePolicy()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.epoch
        self.epoch += 1
        yield from self.iterate(epoch, 0)

    def iterate(self, epoch: int, start_step: int = 0) -> Iterator[dict[str, Any]]:
        """The batches of ``epoch`` from ``start_step`` on (the earlier ones are replayed, not decoded)."""
        self.stream.epoch, self.stream.start_step = epoch, start_step
        self.stream.known_bad = frozenset(self.policy.known)
        # Its own generator: a DataLoader otherwise draws its workers' seed from the global RNG, so
        # starting one mid-epoch (a resume) would shift the model's random draws.
        generator = torch.Generator().manual_seed(self.stream.seed * 100_003 + epoch)
        loader = DataLoader(self.stream, batch_size=None, num_workers=self.num_workers,
                            pin_memory=self.pin_memory, generator=generator, worker_init_fn=ignore_stop_signals)
        batches = iter(loader)
        for step in range(self.steps_per_epoch):
            batch = next(batches)
            records = batch.pop(BAD, [])
            for record in records:
                self.policy.handle({**record, "epoch": epoch})  # raises under data.bad_samples=error
            if batch.get(FATAL):
                raise BadDataError(records[-1]["reason"] if records else "a data worker stopped")
            if step >= start_step:
                yield batch


def make_shard_loader(
    urls: str | Sequence[str],
    *,
    batch_size: int,
    num_workers: int,
    shuffle_buffer: int = 1000,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    steps_per_epoch: int | None = None,
    image_size: int | None = None,
    resample: bool | None = None,
    split: str | None = None,
    pin_memory: bool = False,
    spec: SampleSpec | None = None,
    policy: BadSamplePolicy | None = None,
    allow_incomplete: bool = False,
    device_assembly: bool = False,
) -> ShardLoader:
    """A loader over shards: a folder (its train split when it has one; ``split`` picks another,
    ``"all"`` everything), a tar, a brace pattern or glob, a remote URL, or a list of them.

    ``steps_per_epoch`` defaults to ``count_samples(urls) // (batch_size × world_size)``.
    ``image_size`` resizes (shorter side) and centre-crops every image; JPEG shards default to 256.
    ``spec`` is what every sample must look like (bands, grid); ``policy`` what a bad one does
    (default: stop with one line naming it). With ``device_assembly`` batches of format-2 shards
    carry their bands in the stored dtype and size (``"bands"``) for
    :func:`geodino.data.shards.format.assemble_batch` to finish on the training device, and JPEG
    shards their 8-bit RGB (``RGB8_KEY``); otherwise every batch has a float32 ``"image"``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    paths = training_shards(urls, split, allow_incomplete)
    streams = world_size * max(num_workers, 1)
    if resample is None:
        resample = len(paths) < streams
        if resample:
            log.warning("%d shard(s) for %d rank(s) x %d worker(s): resampling shards with replacement",
                        len(paths), world_size, max(num_workers, 1))
    elif not resample and len(paths) < streams:
        raise ValueError(f"{len(paths)} shard(s) cannot be split over {world_size} rank(s) x "
                         f"{max(num_workers, 1)} worker(s); use resample=True, fewer workers, or smaller shards")
    counts = shard_counts(paths)
    if steps_per_epoch is None:
        if counts is None:
            raise FileNotFoundError(f"no index.json beside {paths[0]}: set the number of samples per epoch "
                                    "(data.samples_per_epoch)")
        steps_per_epoch = max(1, sum(counts.values()) // (batch_size * world_size))
    policy = policy or BadSamplePolicy()
    if policy.total is None and counts is not None:
        policy.total = sum(counts.values())
    if image_size is None and (spec is None or spec.grid is None):
        spec = _with_data_grid(spec, paths)
    stream = _WorkerStream(paths, batch_size=batch_size, shuffle_buffer=max(1, shuffle_buffer), seed=seed,
                           rank=rank, world_size=world_size, num_workers=num_workers, resample=resample,
                           image_size=image_size, spec=spec, counts=counts, skip_bad=policy.mode == "skip",
                           device_assembly=device_assembly)
    return ShardLoader(stream, steps_per_epoch, num_workers, pin_memory, policy)


def _with_data_grid(spec: SampleSpec | None, paths: list[str]) -> SampleSpec | None:
    """``spec`` with the grid every sample must have when the card gives none: that of the first
    sample of the first readable shard. One rule for every rank, worker, epoch and resume, so a
    sample of another size is always the bad one (and a resumed run skips exactly what the first
    pass skipped)."""
    for url in paths[:3]:
        try:
            for raw in raw_samples(url):
                try:
                    sample = decode_sample(raw, assemble=False)
                except BadSample:
                    continue
                if "groups" in sample:
                    grid = tuple(sample["meta"]["grid"])
                elif isinstance(sample["image"], (bytes, bytearray)):
                    return spec  # JPEGs are resized to one size anyway
                else:
                    grid = tuple(sample["image"].shape[1:])
                log.info("every sample must be %dx%d px, as the first one of %s", grid[0], grid[1], url)
                return SampleSpec(bands=spec.bands if spec else None, grid=grid,
                                  grid_source=f"the first sample of {shard_file_name(url)}")
        except (ShardReadError, RemoteError):
            continue
    return spec


def shard_pretrain_data(cfg: Any, rank: int = 0, world_size: int = 1):
    """The pretraining data of a ``data.source: shards`` recipe (see ``geodino.data.build``).

    ``data.root`` is a shard folder (its train split), pattern, list or remote URL; the epoch is
    ``data.samples_per_epoch`` (default: the index's count) divided by the global batch. The card
    is ``data.card`` or the ``card.yaml`` beside the shards. RGB shards (JPEG) are decoded at
    ``data.image_size``; multispectral arrays are delivered at their stored grid. Bad samples
    follow ``data.bad_samples``; under ``skip`` they go to ``<run.out_dir>/bad_samples.jsonl``.
    """
    from geodino.data.batches import PretrainData
    from geodino.data.card import DatasetCard

    d = cfg.data
    paths = training_shards(d.root, allow_incomplete=d.allow_incomplete)
    counts = shard_counts(paths)
    if not d.samples_per_epoch and counts is None:
        raise FileNotFoundError(f"no index.json beside {paths[0]}: set data.samples_per_epoch")
    card = DatasetCard.load(d.card) if d.card else DatasetCard.beside_shards(paths[0])
    samples = d.samples_per_epoch or sum(counts.values())
    steps = samples // (d.batch_size * world_size)
    if steps == 0:
        raise ValueError(f"data: {samples} samples per epoch are fewer than one global batch "
                         f"({d.batch_size} × {world_size} processes)")
    image_size = d.image_size if set(card.modalities) == {"rgb"} else None
    policy = pretrain_policy(d, samples, rank, cfg.run.out_dir)  # makes the folder its records go to
    loader = make_shard_loader(paths, batch_size=d.batch_size, num_workers=d.num_workers,
                               shuffle_buffer=d.shuffle_buffer, seed=cfg.run.seed, rank=rank,
                               world_size=world_size, steps_per_epoch=steps, image_size=image_size,
                               pin_memory=torch.cuda.is_available(), spec=card_spec(card), policy=policy,
                               allow_incomplete=d.allow_incomplete, device_assembly=True)

    def batches(epoch: int, start_step: int) -> Iterator[dict[str, Any]]:
        yield from loader.iterate(epoch, start_step)

    return PretrainData(card=card, steps_per_epoch=steps, batches=batches, bad_samples=lambda: policy.count)
