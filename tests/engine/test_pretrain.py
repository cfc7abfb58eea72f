"""In-process runs of the engine: outputs, the non-finite guard, resume safety checks."""

import json
import math
import os
import time

import pytest
import torch

from geodino.config import ConfigError, load_config
from geodino.engine.pretrain import NonFiniteLossError, pretrain
from geodino.runs.checkpoint import load_checkpoint
from tests.engine.runs import TINY


def _cfg(out_dir, *overrides):
    return load_config(None, [f"run.out_dir={out_dir}", *TINY, *overrides])


def test_run_writes_config_metrics_checkpoint_and_curve(tmp_path):
    summary = pretrain(_cfg(tmp_path, "run.max_steps=3", "train.checkpoint_every=2"))
    assert summary["steps"] == 3
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.pt", "loss.png", "summary.json"):
        assert (tmp_path / name).exists(), name
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    for key in ("loss", "loss_dino", "lr", "teacher_temp", "momentum", "imgs_per_s", "teacher_entropy",
                "teacher_kl_uniform"):
        assert key in records[-1]
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 3
    assert set(state) >= {"student", "teacher", "optimizer", "objectives", "rng", "config"}
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("bad_step", [None, 0, 5, 63, 64, 130])
def test_the_loss_guard_names_the_first_non_finite_step_and_costs_no_op_a_step(bad_step):
    from torch.utils._python_dispatch import TorchDispatchMode

    from geodino.engine.pretrain import LossGuard

    class Count(TorchDispatchMode):
        ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.ops += 1
            return func(*args, **(kwargs or {}))

    guard, names = LossGuard(), ["loss", "loss_dino"]
    losses = [torch.tensor([1.0 + i, 2.0]) for i in range(140)]
    if bad_step is not None:
        losses[bad_step] = torch.tensor([float("nan"), 2.0])
        losses[bad_step + 2] = torch.tensor([float("inf"), float("inf")])  # a later one is not the first
    for step, reduced in enumerate(losses[:40]):
        with Count():
            guard.observe(step, reduced)
    assert Count.ops == 0  # nothing dispatched between folds (every LossGuard.FOLD steps)
    for step, reduced in enumerate(losses[40:], start=40):
        guard.observe(step, reduced)
    if bad_step is None:
        guard.check(names)
        return
    with pytest.raises(NonFiniteLossError, match=f"non-finite loss at step {bad_step + 1} ") as err:
        guard.check(names)
    assert err.value.step == bad_step
    assert "loss=nan" in str(err.value) and "loss_dino=2" in str(err.value)


@pytest.mark.parametrize("steps", [range(130), [*range(60), *range(100, 170)]])
def test_the_loss_guard_reads_nothing_back_from_the_device_between_checks(steps):
    """Judging the kept losses (every LossGuard.FOLD steps) queues device work only: on the meta
    device, which holds no values, any read back to the host would raise."""
    from geodino.engine.pretrain import LossGuard

    guard = LossGuard()
    for step in steps:
        guard.observe(step, torch.ones(2, device="meta"))
    assert guard._first is not None and guard._first.device.type == "meta"


class _DeviceReads:
    """Counts the ops whose result the device must hand back to the host before the host can go
    on (on a GPU, a synchronisation): boolean-mask indexing and ``nonzero`` (the host must learn how
    many), ``item`` and its kin. On the CPU nothing waits, so this is how a test sees them."""

    READS = {"nonzero", "_local_scalar_dense", "is_nonzero", "masked_select", "_unique2", "equal"}

    def __new__(cls):
        from torch.utils._python_dispatch import TorchDispatchMode

        class Mode(TorchDispatchMode):
            def __init__(self):
                super().__init__()
                self.seen = []

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = func.__name__.split(".")[0]
                by_mask = name.startswith("index") and len(args) > 1 and isinstance(args[1], (list, tuple)) and any(
                    isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1])
                if name in cls.READS or by_mask:
                    self.seen.append(name)
                return func(*args, **(kwargs or {}))

        return Mode()


@pytest.mark.parametrize("objective", ["dino", "selfpatch", "masked"])
def test_a_training_step_reads_nothing_back_from_the_device(objective):
    # Issue 14: no host-device synchronisation inside a step outside logging steps. The masked
    # objective gathered its masked tokens with the boolean masks (the device had to say how many:
    # a read-back per crop and network, and again in the backward, 7 a step).
    from geodino.bench.host import _step_fn

    step = _step_fn(objective, 4)
    step(0)  # one-time tables
    with _DeviceReads() as reads:
        step(1)
    assert reads.seen == [], reads.seen


def test_the_loss_guard_also_names_steps_observed_out_of_order():
    from geodino.engine.pretrain import LossGuard

    guard = LossGuard()
    for step in (7, 3, 12):
        guard.observe(step, torch.tensor([float("nan") if step == 3 else 1.0]))
    with pytest.raises(NonFiniteLossError) as err:
        guard.check(["loss"])
    assert err.value.step == 3


@pytest.mark.parametrize("warmup", [0, 1])
def test_a_diverged_state_is_never_saved_as_good(tmp_path, warmup):
    # lr=1e30: the first update leaves huge but finite weights, and the next step's loss is not
    # finite (with warm-up the first update has lr 0, so there is a good checkpoint to keep). The state of that update must not become the checkpoint to resume from (issue 14:
    # it was saved as "the last good checkpoint", student max|w| 2.5e26).
    cfg = _cfg(tmp_path, "optim.lr=1e30", f"optim.warmup_epochs={warmup}", "optim.clip_grad=0",
               "optim.freeze_last_layer=0", "train.checkpoint_every=1")
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step") as err:
        pretrain(cfg)
    assert (tmp_path / "checkpoint.pt").exists() == bool(warmup)
    first_bad = err.value.step + 1  # 1-based
    assert f"the last step with a finite loss is {first_bad - 1}" in str(err.value)
    path = tmp_path / "checkpoint.pt"
    if path.exists():
        state = load_checkpoint(path)
        assert state["step"] <= first_bad - 2, (state["step"], first_bad)  # its next step's loss was finite
        assert f"last good checkpoint {path} (step {state['step']})" in str(err.value)
        for part in ("student", "teacher"):
            assert all(v.abs().max() < 1e6 for v in state[part].values() if v.is_floating_point()), part
    else:
        assert "no checkpoint was written yet" in str(err.value)


def test_a_checkpoint_replaces_the_previous_one_only_after_its_next_step(tmp_path):
    from geodino.engine.pretrain import PENDING_CHECKPOINT_NAME

    pretrain(_cfg(tmp_path, "run.max_steps=3", "train.checkpoint_every=2"))
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3  # the last step: written directly
    assert not (tmp_path / PENDING_CHECKPOINT_NAME).exists()
    # A run stopped right after a mid-run checkpoint leaves it pending; the next start removes it
    # and resumes from the confirmed one.
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    (tmp_path / PENDING_CHECKPOINT_NAME).write_bytes(b"unconfirmed")
    summary = pretrain(_cfg(tmp_path, "run.max_steps=3", "train.checkpoint_every=2"))
    assert summary["steps"] == state["step"] == 3
    assert not (tmp_path / PENDING_CHECKPOINT_NAME).exists()


def test_resume_refuses_a_changed_recipe(tmp_path):
    pretrain(_cfg(tmp_path, "run.max_steps=1"))
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        pretrain(_cfg(tmp_path, "run.max_steps=2", "optim.lr=0.1"))


def test_a_run_from_before_a_new_key_resumes_at_its_default(tmp_path):
    from geodino.runs.checkpoint import save_checkpoint

    pretrain(_cfg(tmp_path, "run.max_steps=1"))
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    del state["config"]["train"]["tf32"]  # a checkpoint written before train.tf32 existed
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    assert pretrain(_cfg(tmp_path, "run.max_steps=2"))["steps"] == 2  # was: "train.tf32 was None"
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    del state["config"]["train"]["tf32"]
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    with pytest.raises(ConfigError, match=r"train\.tf32 was None"):  # not at its default: it would change the run
        pretrain(_cfg(tmp_path, "run.max_steps=3", "train.tf32=false"))


def test_finished_run_resumes_to_its_end_without_training(tmp_path):
    pretrain(_cfg(tmp_path, "run.max_steps=2"))
    first = load_checkpoint(tmp_path / "checkpoint.pt")["teacher"]
    summary = pretrain(_cfg(tmp_path, "run.max_steps=2"))
    assert summary["steps"] == 2
    second = load_checkpoint(tmp_path / "checkpoint.pt")["teacher"]
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_knn_during_training_is_logged(tmp_path, monkeypatch):
    from geodino.engine.pretrain import Pretrainer

    checks = []
    evaluate = Pretrainer.evaluate_knn
    monkeypatch.setattr(Pretrainer, "evaluate_knn", lambda self: checks.append(self.step) or evaluate(self))
    summary = pretrain(_cfg(tmp_path, "run.max_steps=2", "eval.knn=true", "eval.knn_every=1",
                            "data.eval_train_samples=16", "data.eval_val_samples=8"))
    assert checks == [0, 1, 2]  # the end of the run reuses the check of its last step
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "knn_top1" in r] == [0, 1, 2]  # the random teacher first
    knn = json.loads((tmp_path / "knn.json").read_text())
    last = next(r for r in records if r["step"] == 2 and "knn_top1" in r)
    assert knn["trained_teacher"]["top1"] == last["knn_top1"]
    assert set(knn) == {"metric", "random_teacher", "trained_teacher", "gain", "top1_gain", "initial"}
    assert knn["initial"] == "random init"
    assert knn["metric"] == "top1" and knn["gain"] == knn["top1_gain"]
    assert knn["trained_teacher"]["num_val"] == 8 and summary["knn"]["top1_gain"] == knn["top1_gain"]


def test_a_run_says_what_it_is_before_its_first_step(tmp_path, caplog):
    with caplog.at_level("INFO", logger="geodino"):
        pretrain(_cfg(tmp_path, "run.max_steps=1", "objective.patch=selfpatch"))
    header = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("pretraining into"))
    for part in ("model      vit_tiny_patch16_224", "DINO head K=", "objective  DINO + selfpatch (weight",
                 "crops      2 global x", "per process x 1 =", "device     cpu"):
        assert part in header, part


def _wandb_history(run_file) -> list[dict[str, float]]:
    """The logged rows of an offline W&B run file: its records are protobuf messages in a LevelDB-style
    log (a 7-byte ``:W&B`` header, then 32 KiB blocks of records with 7-byte headers)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    raw = run_file.read_bytes()
    assert raw[:4] == b":W&B", f"not a W&B run file: {raw[:7]!r}"
    pos, chunks, pending = 7, [], b""
    while pos + 7 <= len(raw):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if kind == 0:
            break
        pending += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            chunks.append(pending)
            pending = b""
    rows = []
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): float(item.value_json) for item in record.history.item})
    return rows


def test_the_wandb_tracker_receives_the_losses_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
                       "WANDB_CONSOLE": "off"}.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "run"
    pretrain(_cfg(out, "run.max_steps=2", "train.log_every=1", "train.trackers=[wandb]"))
    run_files = sorted(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(run_files) == 1, "no offline W&B run"
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # W&B's own writer process may still be flushing the file when the run has returned (a loaded CI
    # machine once read it empty): wait for it, a minute at most.
    deadline = time.monotonic() + 60
    while len(history := _wandb_history(run_files[0])) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [row["_step"] for row in history] == [1, 2]
    for row, record in zip(history, logged):
        assert row["loss"] == pytest.approx(record["loss"]) and row["lr"] == pytest.approx(record["lr"])


def test_the_tensorboard_tracker_receives_the_losses(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    pretrain(_cfg(tmp_path, "run.max_steps=2", "train.log_every=1", "train.trackers=[tensorboard]"))
    events = sorted((tmp_path / "geodino").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    scalars = EventAccumulator(str(events[0])).Reload()
    assert [e.step for e in scalars.Scalars("loss")] == [1, 2]


def test_a_run_with_data_workers_exits_even_when_its_loader_is_still_referenced(tmp_path):
    """The workers ignore SIGTERM (the scheduler's signal is the trainer's), so workers still alive
    at interpreter exit left multiprocessing's exit handler waiting forever: a finished run hung
    once an installed package (wandb, imported by timm) kept the loader referenced. The run stops
    its workers when it ends; here a global keeps the whole trainer alive until exit."""
    import subprocess
    import sys

    from tests.engine.runs import env

    script = (
        "import sys\n"
        "from geodino.config import load_config\n"
        "from geodino.engine.pretrain import Pretrainer\n"
        "KEPT = Pretrainer(load_config(None, sys.argv[1:]))\n"
        "KEPT.fit()\n"
        "print('fit done', flush=True)\n"
    )
    overrides = [f"run.out_dir={tmp_path}", *TINY, "run.max_steps=2", "data.num_workers=2", "train.progress=false"]
    done = subprocess.run([sys.executable, "-c", script, *overrides], env=env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fit done" in done.stdout


@pytest.mark.parametrize("ending", ["last step", "stop signal"])
def test_the_last_update_is_not_saved_when_its_weights_give_a_non_finite_loss(tmp_path, monkeypatch, ending):
    # The last update of a run, or the one before a stop, has no next step whose loss would show
    # that it diverged: lr=1e30 after one step left finite weights of 4e27 in checkpoint.pt, the
    # run exited 0, and the next run called that checkpoint "the last good" one (issue 14).
    import signal

    from geodino.engine.pretrain import PENDING_CHECKPOINT_NAME, Pretrainer

    steps = "run.max_steps=1" if ending == "last step" else "run.max_steps=5"
    if ending == "stop signal":  # asked to stop during the first step
        original = Pretrainer.views
        monkeypatch.setattr(Pretrainer, "views",
                            lambda self, images, step: (os.kill(os.getpid(), signal.SIGUSR1),
                                                        original(self, images, step))[1])
    cfg = _cfg(tmp_path, "optim.lr=1e30", "optim.warmup_epochs=0", "optim.clip_grad=0",
               "optim.freeze_last_layer=0", "train.checkpoint_every=1", steps)
    with pytest.raises(NonFiniteLossError, match="the weights after step 1 give a non-finite loss") as err:
        pretrain(cfg)
    assert "the last step with a finite loss is 1" in str(err.value)
    assert "no checkpoint was written yet" in str(err.value)
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / PENDING_CHECKPOINT_NAME).exists()


def test_the_check_of_the_last_update_leaves_centers_and_random_streams_as_they_were(tmp_path):
    # losses_now stands in for the next step's loss before the last checkpoint: it must not move
    # the loss centers or draw random numbers, or a resumed run would differ from one that never stopped.
    from geodino.engine.pretrain import Pretrainer

    pretrainer = Pretrainer(_cfg(tmp_path, "objective.patch=selfpatch"))
    images = pretrainer.data.images(next(iter(pretrainer.data.batches(0, 0))), torch.device("cpu"))
    views = pretrainer.views(images, 0)
    pretrainer.core(views, 0)
    centers = [b.clone() for b in pretrainer.core.objectives.buffers()]
    rng = torch.get_rng_state()
    losses = pretrainer.core.losses_now(views, 0)
    assert set(losses) == {"loss", "loss_dino", "loss_selfpatch"} and all(map(math.isfinite, losses.values()))
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(a, b) for a, b in zip(centers, pretrainer.core.objectives.buffers()))
    pretrainer.data.close()
