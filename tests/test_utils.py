import os

import pytest
import torch

from geodino.utils import atomic_path, write_json_atomic


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "state.json"
    write_json_atomic(target, {"step": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text().strip().endswith("}") and '"step": 1' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_written_file_has_umask_mode(tmp_path):
    target = tmp_path / "x.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("ok")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_cpu_is_named_with_family_model_and_the_instruction_sets_that_pick_kernels():
    """VMs name every EPYC generation "AMD EPYC"; per-machine choices (oneDNN) and figures need more."""
    from geodino.utils import describe_cpu

    epyc = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
            "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16\n\nprocessor\t: 1\nmodel name\t: other\n")
    assert describe_cpu(epyc) == "AMD EPYC (family 25 model 17; avx2 avx512f avx512_bf16)"
    xeon = ("processor\t: 0\ncpu family\t: 6\nmodel\t\t: 143\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
            "flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n")
    assert describe_cpu(xeon) == ("Intel(R) Xeon(R) Platinum 8480+ (family 6 model 143; avx2 avx512f avx512_bf16 "
                                  "amx_tile amx_bf16)")
    assert describe_cpu("model name\t: Some CPU\n") == "Some CPU"


def test_a_picture_is_written_in_the_format_its_name_says_and_other_names_are_refused(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pytest

    from geodino.utils import save_figure

    save_figure(plt.figure(), tmp_path / "a.png")
    save_figure(plt.figure(), tmp_path / "a.svg")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG" and b"<svg" in (tmp_path / "a.svg").read_bytes()
    with pytest.raises(ValueError, match=r"curves\.txt: a picture's name ends in \.png"):
        save_figure(plt.figure(), tmp_path / "curves.txt")  # was a PNG under that name
    assert not (tmp_path / "curves.txt").exists()


def test_comma_lists_refuse_empty_or_unreadable_items_by_option():
    import pytest

    from geodino.utils import comma_list

    assert comma_list("s2, s1,s2+s1", "--modalities") == ["s2", "s1", "s2+s1"]
    assert comma_list("64,1024", "--images", int) == [64, 1024] and comma_list(None, "--x") == []
    for text in (",versions", "s2,,s1", "a,"):  # empty items were dropped without a word
        with pytest.raises(ValueError, match=rf"--opt {text!r}: an empty item"):
            comma_list(text, "--opt")
    with pytest.raises(ValueError, match=r"--steps '1,x': expected comma-separated int values"):
        comma_list("1,x", "--steps", int)


def test_to_device_async_copies_and_casts():
    import torch

    from geodino.utils import to_device_async

    host = torch.arange(6, dtype=torch.float64).view(2, 3)
    out = to_device_async(host, torch.device("cpu"), torch.float32)
    assert out.dtype == torch.float32 and torch.equal(out, host.float())
    if torch.cuda.is_available():  # pinned first, so the copy can overlap the device's work
        on_gpu = to_device_async(host, torch.device("cuda"))
        assert torch.equal(on_gpu.cpu(), host)


def test_flat_dot_promotes_and_falls_back_to_multiply_and_sum_past_cudas_dot_limit(monkeypatch):
    import torch

    import geodino.utils as utils

    a, b = torch.randn(4, 5), torch.randn(4, 5, dtype=torch.float64)
    want = (a.double() * b).sum()
    got = utils.flat_dot(a, b)  # torch.dot alone raises on mixed dtypes
    assert got.dtype == torch.float64 and torch.allclose(got, want)
    monkeypatch.setattr(utils, "DOT_MAX_ELEMENTS", 19)  # CUDA's dot takes at most 2^31 - 1
    got = utils.flat_dot(a, b)
    assert got.dtype == torch.float64 and torch.allclose(got, want)


def test_a_host_copy_of_a_cpu_tensor_is_the_tensor():
    from geodino.utils import to_host_async

    t = torch.arange(3)
    assert to_host_async(t)() is t


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_host_copy_started_on_the_gpu_is_read_without_a_stream_synchronisation():
    from geodino.utils import to_host_async

    t = torch.arange(3, device="cuda") * 7
    torch.cuda.set_sync_debug_mode("error")  # .item() or .cpu() here would raise
    try:
        read = to_host_async(t)
        torch.cuda._sleep(10_000_000)  # work queued after the copy is not waited for
        host = read()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert host.tolist() == [0, 7, 14] and host.is_pinned()
