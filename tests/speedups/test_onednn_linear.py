"""OneDNNLinear computes what nn.Linear computes, value and gradients, and steps aside where it must."""

import copy

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from geodino.speedups.onednn_linear import OneDNNLinear, matmul_t, onednn_linear_available, use_onednn_linears

needs_onednn = pytest.mark.skipif(not onednn_linear_available(), reason="oneDNN linear needs an x86-64 build")


@pytest.fixture(autouse=True)
def forced_on(monkeypatch):
    """These tests check what the oneDNN path computes, whatever this CPU's measured choice is."""
    monkeypatch.setenv("GEODINO_ONEDNN_LINEAR", "1")


def _pair(bias: bool = True):
    torch.manual_seed(0)
    plain = nn.Linear(24, 40, bias=bias)
    fast = copy.deepcopy(plain)
    assert use_onednn_linears(fast) == 1 and type(fast) is OneDNNLinear
    return plain, fast


def _run(layer, x):
    x = x.clone().requires_grad_(True)
    out = layer(x)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()  # a gradient that is not all ones
    grads = [x.grad] + [p.grad for p in layer.parameters()]
    layer.zero_grad()
    return out, grads


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 24), (3, 5, 24), (24,)])
def test_value_and_gradients_match_nn_linear(bias, shape):
    plain, fast = _pair(bias)
    x = torch.randn(shape)
    (want, want_grads), (got, got_grads) = _run(plain, x), _run(fast, x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert len(got_grads) == len(want_grads) == (3 if bias else 2)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@needs_onednn
def test_flop_counter_counts_the_onednn_matmuls():
    plain, fast = _pair()
    counts = []
    for layer in (plain, fast):
        with FlopCounterMode(display=False) as counter:
            _run(layer, torch.randn(3, 5, 24))
        counts.append(counter.get_total_flops())
    assert counts[1] == counts[0] == 3 * 2 * 15 * 24 * 40  # forward, input and weight gradients


@needs_onednn
def test_strided_input_is_handled():
    plain, fast = _pair()
    x = torch.randn(24, 9).t()  # a transposed view, not contiguous
    torch.testing.assert_close(_run(fast, x)[1][1], _run(plain, x)[1][1], atol=1e-5, rtol=1e-5)


def _dense_layout(t: torch.Tensor) -> bool:
    return t.is_contiguous() or t.t().is_contiguous()


@needs_onednn
def test_rows_of_a_larger_tensor_reach_onednn_as_one_dense_block(monkeypatch):
    """The CLS tokens of a token batch (every N-th row) are multiplied by a slow generic oneDNN kernel
    unless copied into one block first: each operand oneDNN sees is row- or column-major (issue 14)."""
    from geodino.speedups import onednn_linear as od

    seen = []
    real = od._onednn
    monkeypatch.setattr(od, "_onednn", lambda a, b, bias: seen.append((a, b)) or real(a, b, bias))
    plain, fast = _pair()
    tokens = torch.randn(6, 5, 24)
    cls = tokens[:, 0]  # rows 5 apart: neither contiguous nor a transpose
    assert not _dense_layout(cls)
    (want, want_grads), (got, got_grads) = _run(plain, cls), _run(fast, cls)
    assert len(seen) == 3 and all(_dense_layout(a) and _dense_layout(b) for a, b in seen)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
    seen.clear()
    matmul_t(cls, torch.randn(7, 24)[::1])
    matmul_t(torch.randn(4, 48)[:, ::2], torch.randn(7, 24))  # every other column
    assert len(seen) == 2 and all(_dense_layout(a) and _dense_layout(b) for a, b in seen)


@needs_onednn
def test_other_dtypes_and_autocast_take_torchs_path():
    plain, fast = _pair()
    x = torch.randn(4, 24)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast(x).dtype == plain(x).dtype == torch.bfloat16
    assert fast(torch.randn(0, 24)).shape == (0, 40)
    assert fast.double()(x.double()).dtype == torch.float64


@needs_onednn
def test_wrong_input_size_gets_torchs_error():
    _, fast = _pair()
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        fast(torch.randn(4, 23))
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        matmul_t(torch.randn(4, 23), torch.randn(5, 24))


@needs_onednn
def test_conversion_keeps_parameters_and_state_dict():
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2), nn.LayerNorm(2))
    params = [id(p) for p in model.parameters()]
    keys = list(model.state_dict())
    assert use_onednn_linears(model) == 2
    assert [id(p) for p in model.parameters()] == params and list(model.state_dict()) == keys
    assert use_onednn_linears(model) == 0  # already converted


def test_environment_variable_turns_it_off(monkeypatch):
    monkeypatch.setenv("GEODINO_ONEDNN_LINEAR", "0")
    model = nn.Linear(4, 8)
    assert not onednn_linear_available() and use_onednn_linears(model) == 0 and type(model) is nn.Linear


def test_matmul_t_multiplies_by_the_transpose_and_falls_back_under_autocast():
    a, b = torch.randn(6, 32), torch.randn(40, 32)
    torch.testing.assert_close(matmul_t(a, b), a @ b.t(), atol=1e-5, rtol=1e-5)
    c, d = torch.randn(32, 40).t(), torch.randn(32, 7).t()  # transposed views, not contiguous
    torch.testing.assert_close(matmul_t(c, d), c @ d.t(), atol=1e-5, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert matmul_t(a, b).dtype == torch.bfloat16


@needs_onednn
@pytest.mark.parametrize("gain, converted", [(0.93, 0), (1.86, 2)])  # Xeon with AMX, AMD EPYC (issue 14)
def test_the_path_is_chosen_by_measurement_on_this_machine_and_remembered(monkeypatch, tmp_path, caplog, gain,
                                                                          converted):
    from geodino.speedups import onednn_linear as od

    monkeypatch.delenv("GEODINO_ONEDNN_LINEAR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(od, "_choice", None)
    calls = []
    monkeypatch.setattr(od, "measure_onednn_gain", lambda shapes: calls.append(shapes) or gain)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))
    with caplog.at_level("INFO", logger="geodino"):
        assert use_onednn_linears(copy.deepcopy(model)) == converted
    assert calls == [[(8, 16), (16, 8)]]
    assert f"oneDNN is {gain:.2f}x PyTorch's own" in caplog.text
    assert ("using oneDNN" if converted else "using PyTorch's") in caplog.text
    # Another process on this machine reads the verdict instead of measuring again.
    monkeypatch.setattr(od, "_choice", None)
    with caplog.at_level("INFO", logger="geodino"):
        assert use_onednn_linears(copy.deepcopy(model)) == converted
    assert len(calls) == 1 and "measured earlier on this machine" in caplog.text
    x = torch.randn(4, 8)
    torch.testing.assert_close(od.matmul_t(x, model[0].weight), x @ model[0].weight.t(), atol=1e-5, rtol=1e-5)


@needs_onednn
def test_the_probe_times_both_paths(monkeypatch):
    # No bounds on the ratio itself: it is a timing, and a loaded machine can skew one round by 30x.
    import math

    from geodino.speedups import onednn_linear as od

    calls = []
    real = od._onednn
    monkeypatch.setattr(od, "_onednn", lambda a, b, bias: calls.append(1) or real(a, b, bias))
    gain = od.measure_onednn_gain([(32, 64), (64, 16)], rows=64, rounds=1)
    assert math.isfinite(gain) and gain > 0
    assert len(calls) == 2 * 2 * 3  # warm-up and one round, 2 shapes, forward and 2 gradients each
