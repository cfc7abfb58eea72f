"""DINO pretraining on HuggingFace Accelerate: one CPU, one GPU, many GPUs, many nodes.

A step is :meth:`Pretrainer.views` then :class:`DINOStep`; everything they call lives in its own module.
"""

from __future__ import annotations

import logging
import math
import os
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object, set_seed

from geodino.augment import MultiCropAugment, Views
from geodino.config import Config, ConfigError, config_to_dict, save_config
from geodino.config.load import resolve_trackers, upgrade_saved_config
from geodino.data.build import build_knn_data, build_pretrain_data
from geodino.engine.build import compile_backbone
from geodino.engine.ema import ema_update
from geodino.engine.monitor import collapse_signals, collapse_verdict
from geodino.engine.optim import (
    build_optimizer,
    clip_gradients_global,
    clip_gradients_per_parameter,
    drop_last_layer_gradients,
    set_hyperparameters,
)
from geodino.engine.prefetch import Ahead, batches_on_device
from geodino.models.multicrop import PatchMasks
from geodino.objectives.networks import build_objectives, build_student_teacher, objective_weights, weighted_sum
from geodino.rng import RowRandom, step_key
from geodino.runs import checkpoint as ckpt
from geodino.runs.lock import RunFolderBusy, RunLock
from geodino.runs.metrics import MetricsLog
from geodino.runs.schedules import Schedules
from geodino.runs.stop import RunStopped, StopRequests, TrainingDiverged
from geodino.speedups import prepare_model, prepare_process
from geodino.utils import allow_tf32, at_least_float32, flatten_dict, to_device_async, write_json_atomic

log = logging.getLogger("geodino")

# Offset of the patch-mask random key from the augmentation's (both keyed by the step).
MASK_STREAM = 1 << 40
# A mid-run checkpoint until its next step's loss is known finite (Pretrainer.save).
PENDING_CHECKPOINT_NAME = "checkpoint.pending.pt"
# Keys that may change between a run and its resumption without changing the result.
RESUMABLE_CHANGES = ("run.", "train.progress", "train.log_every", "train.checkpoint_every", "train.trackers", "eval.",
                     "data.num_workers")


def run_accelerator(cfg: Config) -> Accelerator:
    """The accelerator of a pretraining run: its precision, and its trackers logging into its folder."""
    return make_accelerator(cfg.train.precision, log_with=resolve_trackers(cfg.train.trackers) or None,
                            project_dir=str(cfg.run.out_dir))


def make_accelerator(precision: str, **kwargs: Any) -> Accelerator:
    """An Accelerator for this machine. Without a GPU it is told so explicitly (``cpu=True``):
    only then does Accelerate turn a ``torchrun`` launch into a multi-process gloo group; and
    the process gets this machine's speed-ups (:func:`geodino.speedups.prepare_process`)."""
    has_gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    prepare_process(on_cpu=not has_gpu)
    accelerator = Accelerator(mixed_precision=precision, cpu=not has_gpu, **kwargs)
    if precision != "no" and not accelerator.native_amp:
        # Accelerate takes fp16 on a CPU and then runs fp32 without autocast: the run would say
        # fp16 and be something else. Its process-wide state is dropped, so that the caller may
        # make another Accelerator in another precision.
        from accelerate.state import AcceleratorState

        device = accelerator.device.type
        AcceleratorState._reset_state()
        raise ValueError(f"train.precision={precision} is not available on {device} (Accelerate "
                         "would run fp32 instead); use bf16 or no here")
    return accelerator


class NonFiniteLossError(TrainingDiverged):
    """Training diverged (a non-finite loss, or non-finite weights before a checkpoint); the run
    stops and the last good checkpoint is left as it was."""

    def __init__(self, step: int, losses: dict[str, float], checkpoint_note: str = "", what: str = "") -> None:
        self.step, self.losses, self.what = step, losses, what
        detail = ", ".join(f"{n}={v:.4g}" for n, v in losses.items())
        note = f", {checkpoint_note}" if checkpoint_note else ""
        what = what or f"non-finite loss at step {step + 1} ({detail})"
        super().__init__(
            f"{what}; the last step with a finite loss is {step}{note}. Common causes: fp16 overflow "
            "(try train.precision=bf16 or no), a learning rate too high for the batch, NaN in the input bands."
        )


class LossGuard:
    """Watches every step's (all-reduced) losses and says, when asked, whether one was not
    finite: the first such step and its values.

    Checking each step's loss on the host before its backward pass would stall a GPU every step,
    and even judging it on the device costs a handful of kernel launches a step. ``observe`` only
    keeps the step's loss tensor; every ``FOLD`` steps the kept ones are judged in one batch of
    device operations (no synchronisation), and ``check`` (one synchronisation) runs where it
    matters: before a checkpoint is written or promoted, and on steps that log. A bad step found
    late has already applied its update, but nothing after the last check was saved as good.
    """

    FOLD = 64  # steps kept before they are judged on the device (bounds the memory held)

    def __init__(self) -> None:
        self._kept: list[tuple[int, torch.Tensor]] = []  # (step, losses) not judged yet
        self._first: torch.Tensor | None = None  # step index of the first non-finite loss, -1: none
        self._values: torch.Tensor | None = None  # its losses

    def observe(self, step: int, reduced: torch.Tensor) -> None:
        self._kept.append((step, reduced))
        if len(self._kept) >= self.FOLD:
            self._judge()

    def _judge(self) -> None:
        """Fold the kept steps into the running verdict, on the device."""
        if not self._kept:
            return
        steps, losses = zip(*self._kept)
        self._kept = []
        values = torch.stack(losses)  # [steps, losses]
        if self._first is None:
            self._first = torch.full((), -1, dtype=torch.long, device=values.device)
            self._values = torch.zeros_like(values[0])
        bad = ~torch.isfinite(values).all(dim=1)
        # The first bad one (0 when none is), as a 1-element index: indexing with a 0-d device
        # tensor would read it back to the host.
        at = bad.to(torch.uint8).argmax().reshape(1)
        new = bad.any() & (self._first < 0)
        if all(b - a == 1 for a, b in zip(steps, steps[1:])):  # the usual case: no host-to-device copy
            found = at[0] + steps[0]
        else:
            found = to_device_async(torch.tensor(steps), values.device).index_select(0, at)[0]
        self._first = torch.where(new, found, self._first)
        self._values = torch.where(new, values.index_select(0, at)[0], self._values)

    def check(self, names: list[str]) -> None:
        """Raise :class:`NonFiniteLossError` if any step observed so far had a non-finite loss."""
        self._judge()
        if self._first is None:
            return
        first = int(self._first)
        if first >= 0:
            assert self._values is not None
            raise NonFiniteLossError(first, dict(zip(names, self._values.tolist())))


@dataclass
class StepResult:
    names: list[str]  # "loss", then "loss_<objective>"
    reduced: torch.Tensor  # their global-batch means, on the device
    signals: dict[str, float] | None

    @property
    def losses(self) -> dict[str, float]:
        """The losses as numbers (a host synchronisation: ask on steps that log)."""
        return dict(zip(self.names, self.reduced.tolist()))


class DINOStep:
    """Student, teacher, objectives and optimiser, and one training update from a set of views.

    Shared by :class:`Pretrainer` (views from the augmentation) and ``geodino bench step``
    (random views), so that the benchmark times exactly the code that trains.
    """

    def __init__(self, cfg: Config, in_chans: int, steps_per_epoch: int, accelerator: Accelerator,
                 band_names: list[str] | None = None) -> None:
        self.cfg, self.accelerator = cfg, accelerator
        acc = accelerator
        allow_tf32(cfg.train.tf32)
        set_seed(cfg.run.seed)  # identical initial weights on every process
        self.init_report: dict[str, Any] = {}  # model.init's band mapping, when set
        student, self.teacher = build_student_teacher(cfg, in_chans, band_names, self.init_report)
        if cfg.train.compile:
            compile_backbone(student)
            compile_backbone(self.teacher)
        else:  # fp32 CPU matmuls through oneDNN (the compiler makes its own choices)
            prepare_model(student, acc.device)
            prepare_model(self.teacher, acc.device)
        self.objectives = build_objectives(cfg).to(acc.device)
        self._masks_ahead = Ahead()
        self.weights = objective_weights(cfg)
        self.global_batch = cfg.data.batch_size * acc.num_processes
        self.schedules = Schedules(cfg.optim, cfg.dino, steps_per_epoch, self.global_batch)
        optimizer = build_optimizer(student, cfg.optim.betas)
        self.student, self.optimizer = acc.prepare(student, optimizer)
        self.teacher.to(acc.device)
        self.guard = LossGuard()
        self.loss_names: list[str] = ["loss"]
        set_seed(cfg.run.seed + acc.process_index)  # stochastic depth differs per process, as it should

    def __call__(self, views: Views, step: int, want_signals: bool = False) -> StepResult:
        s, cfg, acc = self.schedules, self.cfg, self.accelerator
        epoch = s.epoch(step)
        set_hyperparameters(self.optimizer, s.lr[step], s.weight_decay[step])
        loss, reduced, signals = self._losses(views, step, want_signals)
        # Every process judges the same global means alike; nothing here waits for the device.
        self.guard.observe(step, reduced)

        self.optimizer.zero_grad(set_to_none=True)
        acc.backward(loss)
        if cfg.optim.clip_grad > 0:
            acc.unscale_gradients()
            clip = clip_gradients_per_parameter if cfg.optim.clip_mode == "per_param" else clip_gradients_global
            clip(self.student.parameters(), cfg.optim.clip_grad)
        if epoch < cfg.optim.freeze_last_layer:
            drop_last_layer_gradients(self.student)
        self.optimizer.step()
        ema_update(self.teacher, acc.unwrap_model(self.student), float(s.momentum[step]))
        return StepResult(self.loss_names, reduced, signals)

    def _losses(self, views: Views, step: int, want_signals: bool) -> tuple[torch.Tensor, torch.Tensor,
                                                                             dict[str, float] | None]:
        """The forward pass: the weighted loss (with its graph), the global-batch means of it and
        of each objective's loss (one all-reduce), and the collapse signals when asked."""
        acc = self.accelerator
        teacher_temp = self.schedules.teacher_temperature(step)
        masks = self.student_masks(views, step)
        n_teacher = len(views.teacher)
        with acc.autocast():
            rows = masks.rows if masks is not None else None
            with torch.no_grad():
                teacher_out = self.teacher(views.teacher, extra_views=views.student[n_teacher:], masks=masks,
                                           mask_rows=rows)
            student_out = self.student(views.student, masks=masks, mask_rows=rows)
        signals = None
        if want_signals:
            signals = collapse_signals(self.objectives["dino"].teacher_probabilities(teacher_out, teacher_temp))
        for obj in self.objectives.values():
            obj.record_signals = want_signals  # some statistics cost a pass over every token's output
        losses = {name: obj(student_out, teacher_out, teacher_temp) for name, obj in self.objectives.items()}
        if want_signals:
            for name, obj in self.objectives.items():
                signals.update({f"{name}_{key}": value for key, value in obj.signals().items()})
        loss = weighted_sum(losses, self.weights)
        reduced = acc.reduce(at_least_float32(torch.stack([loss, *losses.values()]).detach()), reduction="mean")
        self.loss_names = ["loss", *(f"loss_{n}" for n in losses)]
        return loss, reduced, signals

    def losses_now(self, views: Views, step: int) -> dict[str, float]:
        """The losses of ``views`` (step ``step``'s) at the weights as they are now, leaving no trace:
        no update, the objectives' centers and the random streams as they were.

        A mid-run checkpoint is known good once the next step's loss, which its weights give, is
        finite; the last update of a run (or the one before a stop) has no next step, so this is
        its stand-in. A forward pass without a graph: every process must call it (one all-reduce).
        """
        buffers = [b.detach().clone() for b in self.objectives.buffers()]
        device = self.accelerator.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            try:
                _, reduced, _ = self._losses(views, step, want_signals=False)
            finally:
                for live, kept in zip(self.objectives.buffers(), buffers):
                    live.copy_(kept)
        return dict(zip(self.loss_names, reduced.tolist()))

    def student_masks(self, views: Views, step: int) -> PatchMasks | None:
        """Patch masks for the student's crops from the objectives that ask for them (None if none do).

        Keyed by the step (apart from the augmentation's key) and each sample's index in the global
        batch: exact on resume and across world sizes. The masks of the next step are built on a
        helper thread while this one runs (they depend on nothing this step computes).
        """
        makers = [obj for obj in self.objectives.values() if obj.wants_student_masks()]
        if not makers:
            return None
        if len(makers) > 1:
            raise ConfigError("only one objective may mask the student's crops")
        patch = self.accelerator.unwrap_model(self.student).backbone.patch_size or 1
        grids = [(v.shape[-2] // patch, v.shape[-1] // patch) for v in views.student]
        batch = views.student[0].shape[0]
        n_global, offset = len(views.teacher), self.accelerator.process_index * batch

        def build(at_step: int) -> list[torch.Tensor | None]:
            rng = RowRandom(step_key(self.cfg.run.seed, at_step) + MASK_STREAM, offset, batch)
            return makers[0].student_masks(grids, n_global, rng)

        masks = self._masks_ahead.take(step, (tuple(grids), n_global, offset, batch), build)
        return PatchMasks.to_device(masks, views.student[0].device)


class Pretrainer:
    def __init__(self, cfg: Config, accelerator: Accelerator | None = None) -> None:
        self.cfg = cfg
        self.out_dir = Path(cfg.run.out_dir)
        self.accelerator = acc = accelerator or run_accelerator(cfg)
        self.rank, self.world = acc.process_index, acc.num_processes
        self.data = build_pretrain_data(cfg, self.rank, self.world)
        card = self.data.card
        if card.mean is None or card.std is None:
            raise ConfigError(f"dataset card {card.name!r} has no band statistics; run `geodino stats` on the shards")
        self.augment = MultiCropAugment.from_card(card, **augment_kwargs(cfg))
        self.core = DINOStep(cfg, card.num_bands, self.data.steps_per_epoch, acc, band_names=card.band_names)
        self.schedules = self.core.schedules
        self.global_batch = self.core.global_batch
        self.total_steps = self.schedules.total_steps
        if cfg.run.max_steps:
            self.total_steps = min(self.total_steps, cfg.run.max_steps)
        self.metrics = MetricsLog(self.out_dir / "metrics.jsonl")
        self.step = 0
        self._good_step = 0  # the step of checkpoint.pt
        self._pending_step: int | None = None  # the step of checkpoint.pending.pt, awaiting its next step
        self.knn_random: dict[str, Any] | None = None
        self._knn_sets: tuple | None = None  # (bank, queries), built on the first k-NN check
        self._knn_last: tuple[int, dict[str, Any] | None] = (-1, None)  # (step, scores) of the last check

    def views(self, images: torch.Tensor, step: int) -> Views:
        """Multi-crop views of this process's batch, seeded by the step (exact on resume and across
        world sizes)."""
        return self.augment(images, step_key(self.cfg.run.seed, step), offset=self.rank * images.shape[0])

    # ---------------------------------------------------------------- the run
    def fit(self) -> dict[str, Any]:
        try:
            return self._fit()
        except NonFiniteLossError as err:
            if self.accelerator.is_main_process:  # weights whose next loss was not finite: never good
                self._pending_path.unlink(missing_ok=True)
            path = self.out_dir / ckpt.CHECKPOINT_NAME
            kept = (f"the last good checkpoint {path} (step {self._good_step}) is intact" if path.exists()
                    else "no checkpoint was written yet")
            raise NonFiniteLossError(err.step, err.losses, kept, err.what) from None
        finally:
            self.data.close()  # worker processes end with the run, not whenever the loader is collected

    def _fit(self) -> dict[str, Any]:
        cfg, acc = self.cfg, self.accelerator
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._maybe_resume()
        if acc.is_main_process:
            log.info("%s", self.header())
            if self.core.init_report:
                write_json_atomic(self.out_dir / "init.json", self.core.init_report)  # the band mapping
            self._discard_pending()
            save_config(cfg, self.out_dir / "config.yaml")
            self.data.card.save(self.out_dir / "card.yaml")  # bands and statistics travel with the run
            self.metrics.truncate_after(self.step)
        if cfg.eval.knn and self.knn_random is None:
            self.knn_random = self.evaluate_knn()
            if self.knn_random is not None and acc.is_main_process:
                self.metrics.write({"step": 0, **knn_record(self.knn_random)})
        if acc.log_with:  # the trackers asked for (acc.trackers stays empty until they are initialised)
            # Trackers take scalars: lists (crop scales, levels) go as text.
            flat = flatten_dict(config_to_dict(cfg))
            acc.init_trackers("geodino", config={k: str(v) if isinstance(v, list) else v for k, v in flat.items()})

        progress = _progress(self.total_steps, self.step, enabled=cfg.train.progress and acc.is_main_process)
        # SIGTERM, SIGINT, SIGUSR1: finish the step, write a checkpoint, raise RunStopped.
        with StopRequests(self.world, acc.device) as stops:
            spe = self.schedules.steps_per_epoch
            tick, rate = time.perf_counter(), None
            while self.step < self.total_steps:
                epoch, in_epoch = divmod(self.step, spe)
                # Closed when the loop leaves, however it leaves: an epoch's loader (and its workers)
                # must not wait for a traceback that still holds this frame to be dropped.
                with closing(batches_on_device(self.data.batches(epoch, in_epoch), self.data.images,
                                               acc.device)) as batches:
                    for images in batches:
                        step = self.step
                        log_now = (step + 1) % cfg.train.log_every == 0 or step + 1 == self.total_steps
                        views = self.views(images, step)
                        result = self.core(views, step, log_now)
                        self.step = step + 1
                        if self._pending_step is not None:
                            # this step's loss came from the pending checkpoint's weights
                            self._promote_pending()
                        now = time.perf_counter()
                        inst = self.global_batch / max(now - tick, 1e-9)
                        rate = inst if rate is None else 0.9 * rate + 0.1 * inst
                        tick = now
                        progress.update(1)
                        if log_now:
                            self.core.guard.check(self.core.loss_names)
                            progress.set_postfix(loss=f"{result.losses['loss']:.4f}",
                                                 lr=f"{self.schedules.lr[step]:.2e}", img_s=f"{rate:.1f}",
                                                 refresh=False)
                            self._log(step, epoch, result, rate)
                        if cfg.eval.knn and cfg.eval.knn_every and self.step % cfg.eval.knn_every == 0:
                            self._log_knn()
                        if self.step % cfg.train.checkpoint_every == 0 or self.step == self.total_steps:
                            self.save(final=self.step == self.total_steps, views=views)
                        if self.step >= self.total_steps:
                            break
                        signum = stops.agreed()
                        if signum:
                            self.save(final=True, views=views)
                            progress.close()
                            raise RunStopped(signum, self.step, str(self.out_dir / ckpt.CHECKPOINT_NAME))
                        del views  # not alive beside the next step's
        progress.close()
        return self._finish()

    # ---------------------------------------------------------------- helpers
    def header(self) -> str:
        """What this run is, in a few lines, logged before its first step."""
        cfg, s, acc = self.cfg, self.schedules, self.accelerator
        m, a, o = cfg.model, cfg.augment, cfg.objective
        backbone = acc.unwrap_model(self.core.student).backbone
        params = sum(p.numel() for p in backbone.parameters()) / 1e6
        patch = f"patch {backbone.patch_size}, " if backbone.patch_size else ""
        objectives = "DINO" + (f" + {o.patch} (weight {o.patch_weight:g})" if o.patch != "none" else "")
        card = self.data.card
        peak_lr = float(s.lr.max()) if len(s.lr) else 0.0
        start = f"from step {self.step} (resumed)" if self.step else "from step 0"
        return "\n".join([
            f"pretraining into {self.out_dir}",
            f"  model      {m.arch} ({patch}{params:.1f} M backbone parameters), DINO head K={m.out_dim}; "
            f"{card.num_bands} bands ({card.name}: {', '.join(card.modalities)})",
            f"  objective  {objectives}; teacher temperature {cfg.dino.teacher_temp:g}, student {cfg.dino.student_temp:g}",
            f"  data       {self.data.description or card.name}",
            f"  crops      2 global x {a.global_size} px + {a.n_local} local x {a.local_size} px",
            f"  batch      {cfg.data.batch_size} per process x {self.world} = {self.global_batch}; "
            f"{self.total_steps} steps ({s.steps_per_epoch} per epoch), {start}",
            f"  optimiser  peak lr {peak_lr:.3g} (warm-up {cfg.optim.warmup_epochs} epochs), weight decay "
            f"{cfg.optim.weight_decay:g} -> {cfg.optim.weight_decay_end:g}, teacher momentum "
            f"{cfg.optim.momentum_teacher:g} -> 1",
            f"  device     {acc.device}, precision {cfg.train.precision}, seed {cfg.run.seed}",
            "  weights    " + (f"from {self.core.init_report['source']} ({len(self.core.init_report['new_bands'])} new "
                                f"bands; head {self.core.init_report['head']}; init.json)" if self.core.init_report
                                else "random (model.init not set)"),
        ])

    def _log(self, step: int, epoch: int, result: StepResult, rate: float) -> None:
        s = self.schedules
        record: dict[str, Any] = {
            "step": step + 1, "epoch": epoch, **result.losses,
            "lr": float(s.lr[step]), "weight_decay": float(s.weight_decay[step]),
            "momentum": float(s.momentum[step]), "teacher_temp": s.teacher_temperature(step),
            "imgs_per_s": rate,
            "bad_samples": self.data.bad_samples(),
        }
        if result.signals:
            record.update(result.signals)
            verdict = collapse_verdict(result.signals)
            record["collapse"] = verdict
            warm = max(self.schedules.steps_per_epoch, self.schedules.total_steps // 10)
            if verdict and step >= warm and self.accelerator.is_main_process:
                log.warning("step %d: the teacher looks collapsed (%s): entropy %.3f, KL to uniform %.3f, "
                            "ln K %.3f. Check the augmentations, the centering momentum and the teacher "
                            "temperature.", step + 1, verdict, result.signals["teacher_entropy"],
                            result.signals["teacher_kl_uniform"], result.signals["log_k"])
        if self.accelerator.is_main_process:
            self.metrics.write(record)
        self.accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=step + 1)

    def _log_knn(self) -> None:
        scores = self.evaluate_knn()
        self._knn_last = (self.step, scores)  # the end of the run reuses a check made at its last step
        if scores is not None and self.accelerator.is_main_process:
            self.metrics.write({"step": self.step, **knn_record(scores)})
            self._warn_if_not_paying(scores)

    def initial_weights(self) -> str:
        """What the teacher of step 0 was: "random init", or "model.init <source>"."""
        report = self.core.init_report
        return f"model.init {report['source']}" if report else "random init"

    def _warn_if_not_paying(self, trained: dict[str, Any]) -> None:
        """After warm-up (and always at the end), say so when the trained teacher's k-NN is below the
        random teacher's."""
        random = self.knn_random
        warm = max(self.schedules.steps_per_epoch * self.cfg.optim.warmup_epochs, self.total_steps // 10)
        if random is None or (self.step < warm and self.step < self.total_steps):
            return
        metric = headline_metric(trained)
        if trained[metric] < random[metric]:
            log.warning("step %d: the trained teacher's k-NN %s (%.1f) is below the step-0 teacher's (%.1f, %s): "
                        "pretraining does not pay yet on these data (budget, learning rate, teacher temperature "
                        "or augmentations)", self.step, metric, trained[metric], random[metric],
                        self.initial_weights())

    def state(self) -> dict[str, Any]:
        acc = self.accelerator
        rng = ckpt.rng_state()
        all_rng = gather_object([rng]) if self.world > 1 else [rng]
        state = {
            "step": self.step,
            "student": acc.unwrap_model(self.core.student).state_dict(),
            "teacher": self.core.teacher.state_dict(),
            "optimizer": self.core.optimizer.state_dict(),
            "objectives": self.core.objectives.state_dict(),
            "rng": all_rng,
            "config": config_to_dict(self.cfg),
            "knn_random": self.knn_random,
        }
        if acc.scaler is not None:
            state["scaler"] = acc.scaler.state_dict()
        return state

    def save(self, final: bool = False, views: Views | None = None) -> None:
        """Write a checkpoint of the current step once the losses so far and the weights are finite.

        Finite weights can still be wrong (a huge update); only the next step's loss shows it. So a
        checkpoint in the middle of a run goes to ``checkpoint.pending.pt`` and replaces
        ``checkpoint.pt`` only after the next step's loss is found finite; until then the previous
        one stays the one to resume from. The last step of a run (or of a stop) has no next step:
        its weights' loss on this step's ``views`` stands in for it, and it is written as
        ``checkpoint.pt`` directly.
        """
        self._check_finite()
        if final and views is not None:
            losses = self.core.losses_now(views, self.step - 1)
            if not all(math.isfinite(v) for v in losses.values()):
                raise NonFiniteLossError(self.step, losses, what=(
                    f"the weights after step {self.step} give a non-finite loss "
                    f"({', '.join(f'{n}={v:.4g}' for n, v in losses.items())})"))
        state = self.state()  # every process takes part (RNG gathering)
        if self.accelerator.is_main_process:
            ckpt.save_checkpoint(self._pending_path if not final else self.out_dir / ckpt.CHECKPOINT_NAME, state)
            if final:
                self._pending_path.unlink(missing_ok=True)
        if final:
            self._good_step, self._pending_step = self.step, None
        else:
            self._pending_step = self.step
        self.accelerator.wait_for_everyone()

    @property
    def _pending_path(self) -> Path:
        return self.out_dir / PENDING_CHECKPOINT_NAME

    def _promote_pending(self) -> None:
        self.core.guard.check(self.core.loss_names)  # raises if the pending weights gave a bad loss
        if self.accelerator.is_main_process:
            os.replace(self._pending_path, self.out_dir / ckpt.CHECKPOINT_NAME)
        self._good_step, self._pending_step = self._pending_step, None

    def _discard_pending(self) -> None:
        if self._pending_path.exists():
            log.warning("removing %s: a checkpoint whose next step never ran (the run stopped first); "
                        "resuming from %s", self._pending_path, ckpt.CHECKPOINT_NAME)
            self._pending_path.unlink()

    def _check_finite(self) -> None:
        """Raise :class:`NonFiniteLossError` unless every loss so far and every weight is finite."""
        self.core.guard.check(self.core.loss_names)
        student = self.accelerator.unwrap_model(self.core.student)
        tensors = [*student.parameters(), *self.core.teacher.parameters()]
        finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
        if not bool(finite):
            raise NonFiniteLossError(self.step, {}, what=f"non-finite weights after step {self.step}")

    def _maybe_resume(self) -> None:
        """Rank 0 decides whether to resume and reads the checkpoint; every other process gets its
        decision and its state. Deciding per process let ranks on nodes without a shared filesystem
        (where only rank 0 wrote checkpoints) start from step 0 while rank 0 resumed (issue 14)."""
        state: dict[str, Any] | None = None
        failure: Exception | None = None
        if self.accelerator.is_main_process:
            try:
                state = self._read_resume_state()
            except (ConfigError, ValueError, OSError) as err:  # the others must not wait for rank 0 forever
                failure = err
        if self.world > 1:
            state, failure = broadcast_object_list([state, failure], from_process=0)
        if failure is not None:
            raise failure
        if state is None:
            return
        self.accelerator.unwrap_model(self.core.student).load_state_dict(state["student"])
        self.core.teacher.load_state_dict(state["teacher"])
        self.core.optimizer.load_state_dict(state["optimizer"])
        self.core.objectives.load_state_dict(state["objectives"])
        if "scaler" in state and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        rng, path = state["rng"], state.pop("_path")
        if len(rng) != self.world:
            log.warning("resuming %d processes from a checkpoint of %d: stochastic-depth draws will differ",
                        self.world, len(rng))
        ckpt.set_rng_state(rng[self.rank % len(rng)])
        self.step = self._good_step = int(state["step"])
        self.knn_random = state.get("knn_random")
        if self.accelerator.is_main_process:
            log.info("resumed from %s at step %d", path, self.step)

    def _read_resume_state(self) -> dict[str, Any] | None:
        """The checkpoint to resume from (``run.resume``: auto = the run folder's, never, or a path),
        checked against the recipe; None to start from step 0."""
        mode = self.cfg.run.resume
        path = self.out_dir / ckpt.CHECKPOINT_NAME if mode in ("auto", "") else Path(mode)
        if mode == "never" or (mode in ("auto", "") and not path.exists()):
            return None
        state = ckpt.load_pretraining_checkpoint(path)
        _check_same_recipe(state["config"], config_to_dict(self.cfg), path)
        state["_path"] = str(path)
        return state

    def evaluate_knn(self) -> dict[str, Any] | None:
        """k-NN accuracy of the current teacher on the held-out labelled sets (main process only)."""
        from geodino.eval.features import extract_features
        from geodino.eval.knn import knn_evaluate

        if self._knn_sets is None:
            self._knn_sets = build_knn_data(self.cfg) or ()
        result = None
        if self._knn_sets and self.accelerator.is_main_process:
            bank, query = self._knn_sets
            size, device = self.cfg.augment.global_size, self.accelerator.device
            backbone = self.core.teacher.backbone
            train_f, train_y = extract_features(backbone, bank.dataset, self.data.card, size, device=device,
                                                label_key=bank.label_key)
            val_f, val_y = extract_features(backbone, query.dataset, self.data.card, size, device=device,
                                            label_key=query.label_key)
            result = knn_evaluate(train_f, train_y, val_f, val_y, self.cfg.eval.knn_k, self.cfg.eval.knn_temperature,
                                  device=device)
            result["label"] = bank.label_key
        self.accelerator.wait_for_everyone()
        return result

    def _finish(self) -> dict[str, Any]:
        acc = self.accelerator
        summary: dict[str, Any] = {"steps": self.step, "out_dir": str(self.out_dir)}
        if self.cfg.eval.knn:
            last_step, last = self._knn_last
            fresh = last_step != self.step
            trained = self.evaluate_knn() if fresh else last
            if trained is not None and self.knn_random is not None:
                metric = headline_metric(trained)
                # "random_teacher" is the teacher at step 0: with model.init, the initial weights'
                knn = {"metric": metric, "random_teacher": self.knn_random, "trained_teacher": trained,
                       "gain": trained[metric] - self.knn_random[metric], "initial": self.initial_weights()}
                if metric == "top1":
                    knn["top1_gain"] = knn["gain"]
                summary["knn"] = knn
                if acc.is_main_process:
                    write_json_atomic(self.out_dir / "knn.json", knn)
                    if fresh:  # a reused check has said it already
                        self._warn_if_not_paying(trained)
        if acc.is_main_process:
            from geodino.viz.curves import plot_curves

            records = self.metrics.read()
            losses = [r["loss"] for r in records if "loss" in r]
            if losses:
                summary["final_loss"] = losses[-1]
                summary["loss_curve"] = str(plot_curves(records, self.out_dir / "loss.png", title=self.cfg.model.arch,
                                                        knn=summary.get("knn")))
            write_json_atomic(self.out_dir / "summary.json", summary)
        acc.end_training()
        return summary


def headline_metric(scores: dict[str, Any]) -> str:
    """The k-NN figure that says whether pretraining pays: micro-mAP for multi-label data, top-1
    accuracy for single-label data."""
    return "map_micro" if "map_micro" in scores else "top1"


def knn_record(scores: dict[str, Any]) -> dict[str, float]:
    """The ``knn_*`` fields of a metrics-log line (the figures the curves plot)."""
    return {f"knn_{m}": scores[m] for m in ("top1", "top5", "map_micro", "map_macro") if m in scores}


def augment_kwargs(cfg: Config) -> dict[str, Any]:
    """The recipe's ``augment`` section as :class:`MultiCropAugment` keyword arguments."""
    kwargs = config_to_dict(cfg)["augment"]
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def _check_same_recipe(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse to resume when a key that changes the result differs. A key the checkpoint does not
    have came with a later geodino; at its default it changes nothing, so a run started before an
    upgrade still resumes after it."""
    old, new = flatten_dict(upgrade_saved_config(saved)), flatten_dict(current)
    defaults = flatten_dict(config_to_dict(Config()))
    for key in sorted(set(old) | set(new)):
        if key.startswith(RESUMABLE_CHANGES):
            continue
        if key not in old and key in defaults and new.get(key) == defaults[key]:
            continue
        if old.get(key) != new.get(key):
            raise ConfigError(f"cannot resume from {path}: {key} was {old.get(key)!r}, the recipe now says "
                              f"{new.get(key)!r} (use another run.out_dir, or run.resume=never to start over)")


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="pretrain", unit="step", dynamic_ncols=True)


def pretrain(cfg: Config) -> dict[str, Any]:
    """Run (or resume) a pretraining recipe; returns the run summary.

    The main process holds the run folder's lock (:mod:`geodino.runs.lock`) from before the
    model is built to the end; a folder in use, or one that cannot be created or written, stops
    every process before anything else is done.
    """
    out_dir = Path(cfg.run.out_dir)
    acc = run_accelerator(cfg)
    lock = RunLock(out_dir) if acc.is_main_process else None
    failure: Exception | None = None
    if lock is not None:
        try:
            lock.acquire()
        except OSError as err:
            failure = err if isinstance(err, RunFolderBusy) else OSError(
                f"run.out_dir {out_dir}: cannot create or write the run folder ({err.strerror or err})")
    if acc.num_processes > 1:
        failure = broadcast_object_list([failure], from_process=0)[0]
    if failure is not None:
        raise failure
    try:
        return Pretrainer(cfg, acc).fit()
    finally:
        if lock is not None:
            lock.release()
