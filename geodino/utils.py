"""Small helpers shared across the package: atomic file writes (figures too), dotted-key views of
nested configs, a temporary torch thread count."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

if TYPE_CHECKING:
    import torch


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash mid-write leaves the previous file (if any) untouched and no half-written file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file as 0600, and some writers (safetensors) replace the file they
        # are given with one of their own: give the result the mode a plain open() would (0666
        # minus umask), after writing, so that checkpoints, exports and shards stay readable by the
        # rest of a team on a shared cluster.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        _fsync(tmp_path)  # the data on disk before the name points at it: a crash never leaves an empty file
        os.replace(tmp_path, path)
        _fsync(path.parent)  # and the rename itself
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_failure(path: str | os.PathLike, err: BaseException) -> OSError:
    """An OSError for a writer's failure to write ``path`` (libraries that report a refused write
    as their own error), with the free space of its disk."""
    import shutil

    parent = Path(path).parent
    try:
        free = f"{shutil.disk_usage(parent).free / 2**20:.0f} MiB free on its disk"
    except OSError:
        free = "its disk could not be asked for its free space"
    return OSError(f"cannot write {path}: {one_line(err)} ({free}; a full disk, a quota or a file-size limit "
                   "stops a write)")


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def remove_stale_temps(folder: str | os.PathLike, names: Iterable[str] | None = None) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left in ``folder`` (``.<name>.*.tmp``) when a
    process was killed mid-write: of the files ``names`` only, or of any file. Call it only for
    files no other live process is writing (e.g. holding the run's lock)."""
    patterns = [f".{name}.*.tmp" for name in names] if names is not None else [".*.tmp"]
    removed = []
    for pattern in patterns:
        for tmp in Path(folder).glob(pattern):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def one_line(err: BaseException, limit: int = 600) -> str:
    """``err``'s message on one line: libraries' multi-line messages (PyTorch's unpickling and
    state-dict errors, timm's assertions) are joined, and very long ones cut."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def comma_list(text: str | None, what: str, kind: type = str) -> list:
    """``"a,b,c"`` → ``[kind("a"), ...]`` for a comma-separated option (``what`` names it in
    errors). An empty item (``",a"``, ``"a,,b"``) or one ``kind`` cannot read is an error: it is
    a typo more often than a wish, and dropping it quietly runs something else."""
    items = [] if text is None else [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise ValueError(f"{what} {text!r}: an empty item in the comma-separated list")
    try:
        return [kind(item) for item in items]
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected comma-separated {kind.__name__} values") from None


def read_json(path: str | os.PathLike, expect: type | None = dict) -> Any:
    """The JSON in the file at ``path``; a file that is not JSON, or whose top level is not an
    ``expect`` (a JSON object by default), is a ValueError naming the file and where it breaks."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    return _expect(data, expect, path, "a JSON object")


def read_yaml(path: str | os.PathLike, text: str | None = None, expect: type | None = dict) -> Any:
    """The YAML in ``text`` (default: the file at ``path``); as :func:`read_json`, for YAML (a
    mapping by default). ``path`` names the source in errors."""
    import yaml

    try:
        data = parse_yaml(Path(path).read_text() if text is None else text)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({yaml_problem(err)})") from None
    return _expect(data, expect, path, "a YAML mapping")


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load``, except that a key given twice in one mapping is an error (a
    ``yaml.YAMLError`` saying where) instead of the last one silently winning: in a recipe or a
    card, the second ``lr:`` is a mistake, not an override."""
    import yaml

    class UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError("while reading a mapping", node.start_mark,
                                                            f"the key {key!r} is given twice", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return yaml.load(text, Loader=UniqueKeys)  # noqa: S506 - a SafeLoader


def yaml_problem(err: Any) -> str:
    """One line out of a YAML error: what, and where (line, column)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def _expect(data: Any, expect: type | None, path: Any, what: str) -> Any:
    if expect is not None and not isinstance(data, expect):
        raise ValueError(f"{path}: expected {what}, found {type(data).__name__ if data is not None else 'nothing'}")
    return data


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch ops on ``count`` threads inside the block, then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110, **kwargs: Any) -> Path:
    """Write a matplotlib figure atomically (a half-written picture never replaces a good one) and
    close it: a PNG, or the format the name says (``.svg``, ``.pdf``); a name of some other kind
    (``curves.txt``) is an error rather than a PNG under that name."""
    import matplotlib.pyplot as plt

    suffix = Path(path).suffix.lower().lstrip(".")
    formats = {"png", "svg", "pdf", "jpg", "jpeg"}
    if suffix not in formats:
        plt.close(fig)
        raise ValueError(f"{path}: a picture's name ends in .png (or {', '.join(sorted(formats - {'png'}))})")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=suffix, **kwargs)
    plt.close(fig)
    return Path(path)


def flatten_dict(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1e-3}}`` → ``{"optim.lr": 1e-3}``; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten_dict(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# Signals that ask a pretraining run to stop cleanly (geodino.runs.stop). Data-loader workers
# ignore them: the main process decides when to stop, and a worker killed by the scheduler's SIGTERM
# or by Ctrl-C would fail the run before its checkpoint.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` of the pretraining data loaders."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def to_device_async(host: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A CPU tensor on ``device`` without making the host wait. From ordinary (pageable) memory
    the CUDA driver may first wait for the work already queued on the stream (NVIDIA's notes on
    API synchronisation), and then the host cannot run ahead of the device; from pinned memory
    the copy is only queued. So ``host`` is pinned first there (PyTorch caches pinned blocks and
    keeps one until its copy is done)."""
    if device.type != "cuda":  # elsewhere (MPS) a non-blocking copy of a freed source can go wrong
        return host.to(device, dtype)
    return host.pin_memory().to(device, dtype, non_blocking=True)


def to_host_async(tensor: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Start copying ``tensor`` to the host; the returned function gives the copy.

    On a GPU the copy goes into pinned memory behind the work queued so far, and the function
    waits for that copy alone: read a step later, it returns at once instead of making the host
    wait for the step in flight (``.item()`` or ``.cpu()`` there wait for everything queued).
    Elsewhere the tensor is already on the host and is returned as it is."""
    import torch

    if tensor.device.type != "cuda":
        return lambda: tensor
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()

    def read() -> torch.Tensor:
        copied.synchronize()
        return host

    return read


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 when it is half or bfloat16; as it is otherwise, without dispatching an op
    (every op is host time on a GPU, issue 14)."""
    import torch

    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


#: Instruction sets that decide which CPU kernels win (oneDNN's AVX-512 and AMX paths, bf16).
_ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def split_heads(rows: torch.Tensor, items: int, tokens: int, parts: int, heads: int) -> tuple[torch.Tensor, ...]:
    """A fused attention projection ``[items * tokens, parts * width]`` (timm's qkv, a kv) as
    ``parts`` tensors ``[items, heads, tokens, width // heads]`` (query, key, value order).

    The same views as timm's ``reshape(...).permute(2, 0, 3, 1, 4).unbind(0)``, split on the
    axis before the permutation: autograd then stacks their gradients straight back in the
    projection's layout, where the permuted split stacks them permuted and copies them back
    (one kernel launch fewer per attention call in the backward; issue 14).
    """
    return tuple(t.transpose(1, 2) for t in rows.reshape(items, tokens, parts, heads, -1).unbind(2))


DOT_MAX_ELEMENTS = 2**31 - 1  # CUDA's torch.dot takes no more (cuBLAS's 32-bit sizes)


def flat_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum()`` over all elements, as one dot product (one kernel, no product tensor)
    where ``torch.dot`` can: it does not promote dtypes (done here) and CUDA's takes at most
    2^31 - 1 elements (a SelfPatch step at 64 images and 65536 prototypes has more)."""
    import torch

    dtype = a.dtype if a.dtype == b.dtype else torch.promote_types(a.dtype, b.dtype)  # (an op of its own)
    if a.numel() > DOT_MAX_ELEMENTS:
        return (a.to(dtype) * b.to(dtype)).sum()
    return torch.dot(a.reshape(-1).to(dtype), b.reshape(-1).to(dtype))


def cpu_model() -> str:
    """The CPU, so every figure and every per-machine choice names the machine (Linux): its model
    name, then its family and model numbers and the instruction sets that decide kernel choices,
    e.g. ``AMD EPYC (family 25 model 17; avx2 avx512f avx512_bf16)``. Virtual machines often show
    only ``AMD EPYC`` as the name, which covers generations whose kernels differ (the same code
    stepped ViT-Tiny at 7.1 img/s on one "AMD EPYC" and 4.0 on another, sessions 5 and 9)."""
    try:
        described = describe_cpu(Path("/proc/cpuinfo").read_text())
    except OSError:
        described = ""
    if described:
        return described
    import platform

    return platform.processor() or platform.machine()


def describe_cpu(cpuinfo: str) -> str:
    """:func:`cpu_model` from the text of ``/proc/cpuinfo`` (its first processor); "" without a model name."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if not key and fields:  # the end of the first processor's block
            break
        fields.setdefault(key, value.strip())
    name = fields.get("model name")
    if not name:
        return ""
    flags = set(fields.get("flags", "").split())
    isa = " ".join(f for f in _ISA_FLAGS if f in flags)
    family, model = fields.get("cpu family"), fields.get("model")
    detail = "; ".join(part for part in (f"family {family} model {model}" if family and model else "", isa) if part)
    return f"{name} ({detail})" if detail else name


PRECISIONS = ("auto", "bf16", "fp32")  # of evaluation and fine-tuning passes (resolve_precision)
# Loader processes of evaluation and fine-tuning with a GPU when not asked for a number: enough to
# read and decode ahead of a frozen or small model, few enough for a shared node
# (geodino.data.batches.loader_workers).
GPU_LOADER_WORKERS = 4


def resolve_precision(precision: str, device: Any) -> str:
    """The precision of an evaluation or fine-tuning pass: ``auto`` is bf16 on a CUDA GPU that
    supports it and fp32 elsewhere (bf16 on a CPU without bf16 units is slower than fp32)."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    cuda = torch.device(device).type == "cuda"
    return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"


def autocast_to(precision: str, device: Any):
    """The autocast context of ``precision`` (resolved: bf16 or fp32) on ``device``."""
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def resolve_device(device: str) -> str:
    """``"auto"``: the GPU when there is one, else the CPU; any other name as given, once checked:
    a device PyTorch does not know, or a GPU this machine lacks, is an error naming it."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r} is not a device name (auto, cpu, cuda, cuda:1, mps, ...)") from None
    if parsed.type == "cuda" and (not torch.cuda.is_available() or (parsed.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def allow_tf32(enabled: bool = True) -> None:
    """TF32 tensor cores for fp32 matmuls and convolutions on NVIDIA GPUs (Ampere and later): about
    the precision of bf16 autocast's inputs at several times fp32's speed. PyTorch leaves matmuls
    off by default."""
    import torch

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled
