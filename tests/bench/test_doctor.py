"""``geodino doctor``: one JSON line per check, the CPU form end to end, and a failing check that
fails the command without stopping the others."""

import json
import math

import pytest
import torch

from geodino.bench import doctor
from geodino.cli import main


def _lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_cpu_form_passes_with_one_line_per_check(tmp_path, capsys):
    from geodino.engine.pretrain import make_accelerator

    make_accelerator("no")  # a state left by earlier work: the doctor trains in bf16 all the same
    out = tmp_path / "doctor.json"
    assert main(["doctor", "--only", "versions,steps,precision,augment,throughput", "--out", str(out)]) == 0
    lines = _lines(capsys)
    assert [line["check"] for line in lines] == ["versions", "steps", "precision", "throughput", "augment"]
    assert json.loads(out.read_text()) == lines
    checks = {line["check"]: line for line in lines}
    assert checks["versions"]["torch"] == torch.__version__ and checks["versions"]["cpu"]
    runs = checks["steps"]["runs"]
    assert {r["objective"] for r in runs} == {"dino", "selfpatch", "masked"}
    assert all(r["finite"] and all(math.isfinite(v) for v in r["losses"].values()) for r in runs)
    assert "loss_selfpatch" in runs[1]["losses"] and "loss_masked" in runs[2]["losses"]
    assert checks["precision"]["ok"] and len(checks["precision"]["abs_diff_per_step"]) == checks["precision"]["steps"]
    assert checks["precision"]["max_rel_diff"] < checks["precision"]["rtol"] == 0.01
    assert checks["augment"]["cpu_crops_per_s"] > 0
    if not torch.cuda.is_available():
        assert checks["throughput"]["skipped"] == "no GPU" and "ok" not in checks["throughput"]
        assert all(r["syncs_per_step"] is None for r in runs)
    make_accelerator("no")  # and it leaves no mixed precision behind for what runs next


@pytest.mark.slow
def test_resume_and_torchrun_pass(capsys):
    assert main(["doctor", "--only", "resume,torchrun"]) == 0
    resume, torchrun = _lines(capsys)
    assert resume["ok"] and resume["stopped_at"] == 4 and resume["final_step"] == 8
    assert resume["max_abs_diff"] < 1e-5
    assert torchrun["ok"] and torchrun["returncode"] == 0


def test_a_failing_check_fails_the_command_and_the_next_check_runs(monkeypatch, capsys):
    def broken():
        raise RuntimeError("no such library\nsecond line of detail")

    monkeypatch.setitem(doctor.CHECKS, "versions", broken)
    assert main(["doctor", "--only", "throughput,versions,augment"]) == 1
    versions, throughput, augment = _lines(capsys)  # in the doctor's order, not --only's
    assert versions["check"] == "versions" and versions["ok"] is False
    assert versions["error"] == "RuntimeError: no such library"
    assert throughput["check"] == "throughput" and augment["check"] == "augment" and augment["ok"]


def test_an_unknown_check_is_a_one_line_error(capsys):
    assert main(["doctor", "--only", "versions,speed"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "speed" in err[0] and "versions" in err[0]


def test_the_loader_check_sets_the_data_path_against_the_step(capsys, monkeypatch):
    # Shards written for the check, read by the training loader with workers and assembled on the
    # device, against the images/s of a training step measured alongside.
    assert main(["doctor", "--only", "loader"]) == 0
    (line,) = _lines(capsys)
    assert line["check"] == "loader" and line["ok"] and line["workers"] == 2
    assert line["loader_samples_per_s"] > 0 and line["step_images_per_s"] > 0
    assert line["loader_over_step"] == pytest.approx(line["loader_samples_per_s"] / line["step_images_per_s"],
                                                     rel=0.02)
    assert line["keeps_up"] == (line["loader_samples_per_s"] >= line["step_images_per_s"])
    assert line["step_from"].startswith("cpu form")
    # After the throughput check (a GPU), its step rate is the one compared against.
    monkeypatch.setitem(doctor._STEP_IMAGES_PER_S, "dino", 1e9)
    assert main(["doctor", "--only", "loader"]) == 0
    (line,) = _lines(capsys)
    assert line["step_from"] == "throughput check" and line["step_images_per_s"] == 1e9
    assert line["keeps_up"] is False


def test_peak_flops_by_gpu_name_and_torchrun_runs_last():
    from geodino.bench import doctor

    assert doctor._peak_bf16("NVIDIA H200") == doctor._peak_bf16("NVIDIA H100 80GB HBM3") == 989e12
    assert doctor._peak_bf16("NVIDIA H200 NVL") == doctor._peak_bf16("NVIDIA H100 NVL") == 835e12  # not the SXM's
    assert doctor._peak_bf16("NVIDIA H100 PCIe") == 756e12 and doctor._peak_bf16("Tesla T4") is None
    assert list(doctor.CHECKS)[-1] == "torchrun"  # a hung NCCL set-up leaves the other checks' lines
