"""GEODINO_SPEEDUPS=off turns every machine-specific speed-up off, and the results stay the same."""

from __future__ import annotations

import pytest
import torch

from geodino.models import build_backbone
from geodino.speedups import cpu_memory, onednn_linear, prepare_model, supports_cls_only


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    monkeypatch.setattr(cpu_memory, "_applied", None)
    monkeypatch.setattr(onednn_linear, "_choice", None)


def _vit():
    torch.manual_seed(0)
    return build_backbone("vit_tiny_patch16_224", in_chans=4, img_size=32, patch_size=8, depth=2).eval()


def test_off_means_no_speed_up_at_all(monkeypatch) -> None:
    monkeypatch.setenv("GEODINO_ONEDNN_LINEAR", "1")  # a feature's own variable cannot overrule the switch
    monkeypatch.setenv("GEODINO_SPEEDUPS", "off")
    vit = _vit()
    assert not onednn_linear.onednn_linear_available()
    assert prepare_model(vit, "cpu") == 0 and not any(isinstance(m, onednn_linear.OneDNNLinear) for m in vit.modules())
    assert cpu_memory.keep_freed_memory() is False
    assert not supports_cls_only(vit.model.blocks[-1])


def test_each_feature_has_its_own_variable_and_the_results_agree(monkeypatch) -> None:
    x = torch.randn(2, 4, 32, 32)
    fast = _vit()(x, cls_only=True).cls
    monkeypatch.setenv("GEODINO_CLS_ONLY", "0")
    vit = _vit()
    assert not supports_cls_only(vit.model.blocks[-1])
    torch.testing.assert_close(vit(x, cls_only=True).cls, fast, atol=1e-5, rtol=1e-5)
    monkeypatch.setenv("GEODINO_SPEEDUPS", "off")
    torch.testing.assert_close(_vit()(x, cls_only=True).cls, fast, atol=1e-5, rtol=1e-5)


def test_a_model_for_a_gpu_gets_no_cpu_speed_up(monkeypatch) -> None:
    # The oneDNN probe times this machine's CPU: for a model that will run on a GPU it would cost
    # seconds in every process and swap in layers that only fall back to F.linear there.
    monkeypatch.setenv("GEODINO_ONEDNN_LINEAR", "1")  # forced on: only the device decides
    vit = _vit()
    assert prepare_model(vit, torch.device("cuda", 0)) == 0 and prepare_model(vit, "cuda") == 0
    assert not any(isinstance(m, onednn_linear.OneDNNLinear) for m in vit.modules())
    if onednn_linear.onednn_linear_available():
        assert prepare_model(vit, "cpu") > 0
