"""Remote shards: local paths, ``pipe:`` commands, http(s) through urllib and fsspec URLs read the
same bytes; transient failures are retried, others are not; damaged tars are one ShardReadError."""

from __future__ import annotations

import io
import re
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.data.shards.tiny import serve_folder

from geodino.data.shards.remote import (
    RemoteError,
    RemoteNotFoundError,
    ShardReadError,
    expand_remote,
    is_remote,
    iter_tar_members,
    open_shard,
    read_text,
    sibling,
)

FAST = {"tries": 4, "backoff": 0.01}  # retries without waiting in tests
MEMBERS = [("a.json", b'{"k": 1}'), ("a.bin", bytes(range(256)) * 3), ("b.json", b"{}"),
           ("b.bin", b"\x07" * 1500), ("c.json", b'{"k": 3}'), ("c.bin", b"\x01" * 900)]


def make_tar(path: Path, members=MEMBERS, directory: str | None = None) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        if directory is not None:
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def member_offsets(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder with a shard and its index.json, served by ``python -m http.server`` on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("served")
    make_tar(folder / "train-000000.tar")
    (folder / "index.json").write_text('{"shards": []}\n')
    with serve_folder(folder) as base:
        yield folder, base


class Scripted:
    """An http server in a thread that answers each GET with the next entry of ``script``
    (a status code, or ``("short", n)``: promise more bytes than the ``n`` it sends, then hang up),
    repeating the last one; ``requests`` counts the GETs."""

    def __init__(self, script, body: bytes = b"payload") -> None:
        self.script = list(script)
        self.body = body
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                owner.requests += 1
                step = owner.script[min(owner.requests, len(owner.script)) - 1]
                if isinstance(step, tuple):
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(owner.body) * 10))
                    self.end_headers()
                    self.wfile.write(owner.body[: step[1]])
                    self.close_connection = True
                    return
                self.send_response(step)
                payload = owner.body if step == 200 else b"error"
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def url(self, name: str = "train-000000.tar") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def read_all(url: str, **kw) -> bytes:
    with open_shard(url, **kw) as f:
        return f.read()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- same bytes wherever they come from -----------------------------------------------------------
def test_http_pipe_local_and_file_url_give_the_same_bytes(served):
    folder, base = served
    path = folder / "train-000000.tar"
    expected = path.read_bytes()
    assert read_all(str(path)) == expected
    assert read_all(path.as_uri()) == expected
    assert read_all(f"pipe:cat {path}") == expected
    assert read_all(f"{base}/train-000000.tar") == expected
    # partial reads are complete (tarfile's stream reader relies on read(n) giving n bytes)
    with open_shard(f"{base}/train-000000.tar") as f:
        assert f.read(1000) == expected[:1000]
        assert f.read() == expected[1000:]


def test_read_text_over_http_and_beside_a_pipe_shard(served):
    folder, base = served
    assert read_text(f"{base}/index.json") == '{"shards": []}\n'
    pipe_url = f"pipe:cat {folder}/train-000000.tar"
    assert read_text(sibling(pipe_url, "index.json")) == '{"shards": []}\n'
    assert read_text(sibling(f"{base}/train-000000.tar", "index.json")) == '{"shards": []}\n'
    assert read_text(sibling(str(folder / "train-000000.tar"), "index.json")) == '{"shards": []}\n'


def test_missing_http_file(served):
    _, base = served
    url = f"{base}/train-000009.tar"
    assert read_text(url) is None
    with pytest.raises(RemoteError) as err:
        open_shard(url)
    message = str(err.value)
    assert url in message and "404" in message and "\n" not in message
    assert isinstance(err.value, FileNotFoundError)  # callers catching FileNotFoundError see it too


def test_404_is_not_retried():
    with Scripted([404]) as server:
        start = time.monotonic()
        with pytest.raises(RemoteNotFoundError, match="404"):
            open_shard(server.url(), tries=4, backoff=5.0)  # a retry would sleep 5 s
        assert read_text(server.url(), tries=4, backoff=5.0) is None
        assert server.requests == 2
        assert time.monotonic() - start < 2


def test_403_is_not_retried_and_is_an_error_for_read_text():
    with Scripted([403]) as server:
        with pytest.raises(RemoteError, match="403") as err:
            read_text(server.url("index.json"), tries=4, backoff=5.0)
        assert not isinstance(err.value, FileNotFoundError)
        assert server.requests == 1


# -- retries --------------------------------------------------------------------------------------
def test_503_twice_then_success():
    with Scripted([503, 503, 200], body=b"tar bytes") as server:
        assert read_all(server.url(), **FAST) == b"tar bytes"
        assert server.requests == 3
    with Scripted([429, 200], body=b"{}") as server:
        assert read_text(server.url("index.json"), **FAST) == "{}"
        assert server.requests == 2


def test_always_503_gives_one_error_line_after_all_tries():
    with Scripted([503]) as server:
        url = server.url()
        with pytest.raises(RemoteError) as err:
            open_shard(url, tries=3, backoff=0.01)
        assert str(err.value) == f"cannot read {url} after 3 tries: HTTP 503 Service Unavailable"
        assert server.requests == 3


def test_retry_waits_grow_exponentially():
    with Scripted([503]) as server:
        start = time.monotonic()
        with pytest.raises(RemoteError, match="after 3 tries"):
            read_text(server.url("index.json"), tries=3, backoff=0.1)
        assert 0.3 <= time.monotonic() - start < 2  # 0.1 + 0.2 s of back-off


def test_connection_refused_is_retried_then_named():
    url = f"http://127.0.0.1:{free_port()}/train-000000.tar"
    with pytest.raises(RemoteError) as err:
        open_shard(url, tries=3, backoff=0.01)
    assert str(err.value).startswith(f"cannot read {url} after 3 tries:")
    assert "refused" in str(err.value).lower()


def test_a_transfer_that_breaks_mid_read_names_the_url():
    with Scripted([("short", 100)], body=b"x" * 1000) as server:
        url = server.url()
        with pytest.raises(RemoteError) as err:
            read_all(url)
        assert url in str(err.value) and "after 100 of 10000 bytes" in str(err.value)
        with pytest.raises(RemoteError, match=re.escape(url)):
            list(iter_tar_members(url))


# -- pipes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["false", "cat /nonexistent/train-000000.tar"])
def test_failing_command_names_itself(command):
    with pytest.raises(RemoteError) as err:
        read_all(f"pipe:{command}")
    assert f"pipe:{command}" in str(err.value) and "exit status 1" in str(err.value)
    if command.startswith("cat"):
        assert "No such file or directory" in str(err.value)


def test_command_failing_half_way_reports_status_and_stderr_tail(tmp_path):
    path = make_tar(tmp_path / "s.tar")
    url = f"pipe:head -c 2000 {path}; echo first >&2; echo 'last words' >&2; exit 3"
    with pytest.raises(RemoteError) as err:
        list(iter_tar_members(url))
    message = str(err.value)
    assert "exit status 3" in message and "last words" in message and "\n" not in message


def test_closing_a_pipe_early_stops_the_command_quietly():
    stream = open_shard("pipe:cat /dev/zero")
    assert stream.read(100_000) == bytes(100_000)
    start = time.monotonic()
    stream.close()
    assert time.monotonic() - start < 2
    assert stream._proc.returncode is not None


def test_closing_early_after_the_command_failed_reports_it():
    stream = open_shard("pipe:printf abc; echo broken >&2; exit 4")
    assert stream.read(1) == b"a"
    stream._proc.wait()  # it has ended on its own, with an error, before the reader stopped
    with pytest.raises(RemoteError, match=r"exit status 4\): broken"):
        stream.close()
    assert stream.closed


def test_read_text_of_pipes(tmp_path):
    (tmp_path / "card.yaml").write_text("name: x\n")
    assert read_text(f"pipe:cat {tmp_path}/card.yaml") == "name: x\n"
    assert read_text(f"pipe:cat {tmp_path}/index.json") is None  # "No such file": missing
    with pytest.raises(RemoteError, match="exit status 1"):
        read_text("pipe:false")
    with pytest.raises(RemoteError, match="127"):  # a missing command is not a missing file
        read_text("pipe:no-such-command-geodino s3://b/index.json")


def test_local_read_text(tmp_path):
    (tmp_path / "index.json").write_text("{}")
    assert read_text(str(tmp_path / "index.json")) == "{}"
    assert read_text(str(tmp_path / "card.yaml")) is None


# -- fsspec ---------------------------------------------------------------------------------------
def test_fsspec_memory_url(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    data = make_tar(tmp_path / "s.tar").read_bytes()
    with fsspec.open("memory://geodino-test/ds/train-000000.tar", "wb") as f:
        f.write(data)
    url = "memory://geodino-test/ds/train-000000.tar"
    assert read_all(url) == data
    assert [n for n, _ in iter_tar_members(url)] == [n for n, _ in MEMBERS]
    assert read_text(sibling(url, "index.json")) is None
    with pytest.raises(RemoteNotFoundError):
        open_shard("memory://geodino-test/ds/train-000001.tar")


def test_fsspec_scheme_without_its_package():
    pytest.importorskip("fsspec")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("s3fs is installed")
    with pytest.raises(RemoteError) as err:
        open_shard("s3://bucket/train-000000.tar", **FAST)
    assert "s3fs" in str(err.value) and "s3://bucket/train-000000.tar" in str(err.value)


def test_without_fsspec(monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)  # makes `import fsspec` fail
    with pytest.raises(RemoteError, match="fsspec") as err:
        open_shard("gs://bucket/train-000000.tar", **FAST)
    assert "gs://bucket/train-000000.tar" in str(err.value) and "\n" not in str(err.value)


# -- URL arithmetic -------------------------------------------------------------------------------
def test_is_remote():
    assert is_remote("pipe:cat x.tar")
    assert is_remote("https://h/x.tar") and is_remote("s3://b/x.tar") and is_remote("file:///x.tar")
    assert not is_remote("/data/x.tar") and not is_remote("data/train-{0..3}.tar")
    assert not is_remote(Path("/data/x.tar"))


@pytest.mark.parametrize("url, expected", [
    ("/data/ds/train-000000.tar", "/data/ds/index.json"),
    ("train-000000.tar", "index.json"),
    ("https://host/ds/train-000000.tar", "https://host/ds/index.json"),
    ("https://host/ds/train-000000.tar?token=abc", "https://host/ds/index.json?token=abc"),
    ("s3://b/p/train-000000.tar", "s3://b/p/index.json"),
    ("pipe:aws s3 cp s3://b/p/train-000000.tar -", "pipe:aws s3 cp s3://b/p/index.json -"),
    ("pipe:cat  /d/train-000000.tar", "pipe:cat  /d/index.json"),
    ("pipe:gsutil cat 'gs://b/my ds/x.tar'", "pipe:gsutil cat 'gs://b/my ds/index.json'"),
    ("pipe:tool --src=train-000000.tar | cat", "pipe:tool --src=index.json | cat"),
    ("pipe:cp /a/old.tar /b/new.tar", "pipe:cp /a/old.tar /b/index.json"),
])
def test_sibling(url, expected):
    assert sibling(url, "index.json") == expected


def test_sibling_of_a_command_without_a_tar():
    with pytest.raises(ValueError, match=".tar"):
        sibling("pipe:curl https://host/data", "index.json")


def test_expand_remote():
    assert expand_remote("https://host/ds/train-{000000..000003}.tar") == [
        f"https://host/ds/train-00000{i}.tar" for i in range(4)]
    assert expand_remote("pipe:aws s3 cp s3://b/{train,val}-000000.tar -") == [
        "pipe:aws s3 cp s3://b/train-000000.tar -", "pipe:aws s3 cp s3://b/val-000000.tar -"]
    assert expand_remote("s3://b/train-000000.tar") == ["s3://b/train-000000.tar"]


# -- tars -----------------------------------------------------------------------------------------
def as_url(path: Path, how: str) -> str:
    return str(path) if how == "local" else f"pipe:cat {path}"


@pytest.fixture(params=["local", "pipe"])
def how(request) -> str:
    return request.param


def test_members_in_order(tmp_path, how):
    path = make_tar(tmp_path / "s.tar", directory="sub")
    assert list(iter_tar_members(as_url(path, how))) == MEMBERS  # the directory entry is skipped


def test_members_over_http(served):
    _, base = served
    assert list(iter_tar_members(f"{base}/train-000000.tar")) == MEMBERS


def test_members_of_a_gzipped_tar(tmp_path, how):
    path = tmp_path / "s.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in MEMBERS:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert list(iter_tar_members(as_url(path, how))) == MEMBERS


def cut(tmp_path: Path, length: int, extra: bytes = b"") -> Path:
    whole = make_tar(tmp_path / "whole.tar").read_bytes()
    path = tmp_path / "cut.tar"
    path.write_bytes(whole[:length] + extra)
    return path


def test_cut_inside_a_member(tmp_path, how):
    fourth = member_offsets(make_tar(tmp_path / "whole.tar"))[3]
    url = as_url(cut(tmp_path, fourth.offset_data + 100), how)
    with pytest.raises(ShardReadError) as err:
        list(iter_tar_members(url))
    assert str(err.value) == f"shard {url}: truncated inside member 'b.bin' after 3 members"


def test_cut_inside_a_header(tmp_path, how):
    fourth = member_offsets(make_tar(tmp_path / "whole.tar"))[3]
    url = as_url(cut(tmp_path, fourth.offset + 100), how)
    seen = []
    with pytest.raises(ShardReadError, match="truncated after 3 members") as err:
        for name, _ in iter_tar_members(url):
            seen.append(name)
    assert url in str(err.value)
    assert seen == ["a.json", "a.bin", "b.json"]


def test_corrupt_header(tmp_path, how):
    fourth = member_offsets(make_tar(tmp_path / "whole.tar"))[3]
    url = as_url(cut(tmp_path, fourth.offset, extra=b"garbage!" * 64), how)
    with pytest.raises(ShardReadError, match="corrupt header after 3 members"):
        list(iter_tar_members(url))


def test_cut_between_members_reads_short_unless_strict(tmp_path, how):
    fourth = member_offsets(make_tar(tmp_path / "whole.tar"))[3]
    url = as_url(cut(tmp_path, fourth.offset), how)
    assert [n for n, _ in iter_tar_members(url)] == ["a.json", "a.bin", "b.json"]
    with pytest.raises(ShardReadError, match="without the end-of-archive blocks"):
        list(iter_tar_members(url, strict_end=True))
    whole = as_url(tmp_path / "whole.tar", how)
    assert len(list(iter_tar_members(whole, strict_end=True))) == len(MEMBERS)


@pytest.mark.parametrize("content, reason", [(b"", "empty file"), (b"hello world\n" * 100, "not a tar file")])
def test_not_a_tar(tmp_path, how, content, reason):
    path = tmp_path / "s.tar"
    path.write_bytes(content)
    url = as_url(path, how)
    with pytest.raises(ShardReadError) as err:
        list(iter_tar_members(url))
    assert url in str(err.value) and reason in str(err.value) and "\n" not in str(err.value)


def test_a_corrupt_extended_header_is_a_shard_error(tmp_path):
    """pax records that do not parse: one ShardReadError naming the shard, not a ValueError."""
    import io as _io

    buf = _io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("a.bin")
        info.size = 3
        info.pax_headers = {"comment": "x" * 10}
        tar.addfile(info, _io.BytesIO(b"abc"))
    data = bytearray(buf.getvalue())
    start = data.index(b" comment=")
    data[start - 2:start] = b"zz"  # the record's length is no longer a number
    path = tmp_path / "train-000000.tar"
    path.write_bytes(bytes(data))
    with pytest.raises(ShardReadError, match="train-000000.tar: corrupt extended header"):
        list(iter_tar_members(str(path)))
