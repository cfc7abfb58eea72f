"""Defaults of the command line: the GPU when there is one, TF32 there, one-line errors unless --debug (issue 14)."""

import pytest
import torch

from geodino.cli import main
from geodino.eval.protocols import EvalOptions
from geodino.finetune.config import SegRunConfig
from geodino.utils import allow_tf32, resolve_device


def test_auto_is_the_gpu_when_there_is_one(monkeypatch):
    assert EvalOptions().device == SegRunConfig().device == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cpu") == "cpu"


def test_a_device_that_is_not_one_or_not_here_is_named(monkeypatch):
    with pytest.raises(ValueError, match=r"device 'bogus' is not a device name"):
        resolve_device("bogus")  # was torch's RuntimeError, a traceback, at first use
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ValueError, match=r"device 'cuda:1': this machine has 0 CUDA GPU\(s\)"):
        resolve_device("cuda:1")


def test_tf32_is_turned_on_where_cuda_is(monkeypatch):
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    try:
        allow_tf32(True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_debug_shows_the_traceback_that_errors_otherwise_hide(tmp_path, capsys):
    import pytest

    from geodino.cli import main

    assert main(["pretrain", "model.depth=[1,"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    from geodino.config import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "pretrain", "model.depth=[1,"])


def test_overrides_may_follow_flags(capsys, tmp_path) -> None:
    out = tmp_path / "x"
    assert main(["pretrain", "quickstart", "--out", str(out), "model.depth=2", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "depth: 2" in printed and f"out_dir: {out}" in printed
    with pytest.raises(SystemExit):
        main(["pretrain", "quickstart", "--out", str(out), "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_a_precision_this_machine_would_not_apply_is_refused_not_faked():
    """fp16 on a CPU: Accelerate accepted it and trained fp32, while the run's header said fp16."""
    if torch.cuda.is_available():
        pytest.skip("fp16 is real on a CUDA GPU")
    from geodino.engine.pretrain import make_accelerator

    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    try:
        with pytest.raises(ValueError, match=r"train\.precision=fp16 is not available on cpu"):
            make_accelerator("fp16")
        assert make_accelerator("bf16").native_amp  # the refused one left no state behind
    finally:
        AcceleratorState._reset_state()
