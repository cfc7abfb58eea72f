"""RNG states in checkpoints: only this process's CUDA device, so that a resume under another launch
(another number of visible GPUs per process) restores instead of failing (issue 14)."""

from __future__ import annotations

import re

import torch

from geodino.runs import checkpoint as ckpt


class FakeCuda:
    """Stands in for ``torch.cuda`` on a machine without GPUs: ``n`` visible devices, one current."""

    def __init__(self, n: int, current: int = 0) -> None:
        self.states = [torch.full((16,), i, dtype=torch.uint8) for i in range(n)]
        self.current = current

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": self.states[self.current].clone())
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in self.states])

        def set_state(state, device="cuda"):
            self.states[self.current] = state.clone()

        def set_all(states):
            for i, state in enumerate(states):
                self.states[i] = state.clone()  # IndexError past the visible devices, as torch does

        monkeypatch.setattr(torch.cuda, "set_rng_state", set_state)
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", set_all)


def test_saved_on_four_visible_gpus_restored_where_one_is_visible(monkeypatch) -> None:
    four = FakeCuda(4, current=2)  # torchrun: rank 2 sees all four GPUs and uses the third
    four.install(monkeypatch)
    state = ckpt.rng_state()
    assert torch.equal(state["cuda_device"], torch.full((16,), 2, dtype=torch.uint8))
    assert "cuda" not in state

    one = FakeCuda(1)  # SLURM: one GPU per task
    one.install(monkeypatch)
    ckpt.set_rng_state(state)
    assert torch.equal(one.states[0], torch.full((16,), 2, dtype=torch.uint8))


def test_checkpoints_with_every_devices_state_still_resume(monkeypatch, caplog) -> None:
    four = FakeCuda(4)
    four.install(monkeypatch)
    old = {**ckpt.rng_state(), "cuda": [s.clone() for s in four.states]}
    del old["cuda_device"]
    one = FakeCuda(1)
    one.install(monkeypatch)
    ckpt.set_rng_state(old)  # used to raise IndexError
    assert torch.equal(one.states[0], torch.full((16,), 0, dtype=torch.uint8))

    other = FakeCuda(8, current=5)  # device 5 has no saved state: a warning, not a failure
    other.install(monkeypatch)
    with caplog.at_level("WARNING", logger="geodino"):
        ckpt.set_rng_state(old)
    assert "starts fresh" in caplog.text


def test_what_is_not_a_pretraining_checkpoint_is_named(tmp_path) -> None:
    import pytest

    export = tmp_path / "export"
    export.mkdir()
    (export / "model.safetensors").write_bytes(b"")
    seg = tmp_path / "seg.pt"
    torch.save({"model": {}, "config": {}, "classes": ["a"]}, seg)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    cases = [(export, "is a geodino export folder, not a pretraining checkpoint file"),
             (export / "model.safetensors", "holds weights only (safetensors)"),
             (seg, "is a segmentation checkpoint (geodino finetune seg): it has no 'step'"),
             (other, "is not a geodino pretraining checkpoint (its keys: ['state_dict'])")]
    for path, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            ckpt.load_pretraining_checkpoint(path)


def test_resume_from_an_export_is_one_line(tmp_path, capsys) -> None:
    from geodino.cli import main

    export = tmp_path / "export"
    export.mkdir()
    (export / "model.safetensors").write_bytes(b"")
    argv = ["pretrain", "model.depth=1", "eval.knn=false", "--out", str(tmp_path / "run"), "--resume", str(export)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a geodino export folder, not a pretraining checkpoint file" in err[0]
