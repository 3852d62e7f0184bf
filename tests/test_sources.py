"""The source lock and getting a verified tarball: the lock itself, the mirror folder, the cache,
and real downloads from a stand-in for python.org served on 127.0.0.1 (laid out like its
``ftp/python/``): a good download, a checksum mismatch, 404, connection refused, a transfer cut
off half-way, and the CLI pointed at the stand-in with --download-base."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gilmatrix.images import sources as images_sources
from gilmatrix.images.sources import ChecksumMismatch, SourceError, fetch_source, parse_lock
from gilmatrix.matrix.model import load_matrix

REPO = Path(__file__).resolve().parent.parent
LOCK = images_sources.load_lock(REPO / "images" / "sources.toml")
SHA256_TABLE = REPO.parent / "shared" / "cpython-sources" / "PYTHON_ORG_SHA256.md"
TARBALL = b"the bytes python.org serves for 3.15.0rc2 " * 1000

GOOD_LOCK = """
format = 2
download_base = "https://www.python.org/ftp/python"
[releases."3.15.0rc2"]
file = "Python-3.15.0rc2.tar.xz"
sha256 = "{sha}"
sha256_from = "a test"
[harness_requirements]
pyperf = "2.10.0"
"""


def release_of(content: bytes = TARBALL) -> images_sources.Release:
    lock = parse_lock(GOOD_LOCK.format(sha=hashlib.sha256(content).hexdigest()), Path("s.toml"))
    return lock.release("3.15.0rc2")


def quiet(message: str) -> None:
    pass


# -- the lock ----------------------------------------------------------------------------------


def test_every_release_of_the_lock_has_python_orgs_checksum_and_its_origin():
    assert LOCK.download_base == "https://www.python.org/ftp/python"
    for release in LOCK.releases.values():
        assert re.fullmatch(r"[0-9a-f]{64}", release.sha256), release.version
        assert release.sha256_from, release.version
    pre = LOCK.release("3.15.0rc2")
    assert pre.url(LOCK.download_base) == "https://www.python.org/ftp/python/3.15.0/Python-3.15.0rc2.tar.xz"


def test_lock_agrees_with_the_published_checksum_table_when_present():
    if not SHA256_TABLE.is_file():
        pytest.skip(f"no table at {SHA256_TABLE}")
    table = {
        m.group(1): m.group(2)
        for m in re.finditer(
            r"^\| [^|]*\| (Python-[\w.]+) \| ([0-9a-f]{64}) \|", SHA256_TABLE.read_text(), re.M
        )
    }
    for release in LOCK.releases.values():
        assert table.get(release.file) == release.sha256, release.file


def test_mirror_files_have_the_locked_checksums_when_present():
    sums = REPO.parent / "shared" / "cpython-sources" / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip(f"no mirror at {sums.parent}")
    listed = dict(reversed(line.split()) for line in sums.read_text().splitlines() if line.strip())
    by_file = {r.file: r.sha256 for r in LOCK.releases.values()}
    assert listed and all(by_file[name] == sha for name, sha in listed.items())


def test_lock_covers_every_source_of_the_matrix_and_pins_the_harness():
    for entry in load_matrix(REPO / "matrix.yaml").interpreters:
        assert entry.source, f"{entry.id}: the default matrix builds every interpreter from source"
        assert LOCK.release(entry.source).file.startswith(f"Python-{entry.source}.")
    assert set(LOCK.harness_requirements) >= {"pyperf", "psutil"}


@pytest.mark.parametrize(
    "mutation, message",
    [
        (lambda t: t.replace('sha256 = "', 'sha256 = "x'), "64 lower-case hex"),
        (lambda t: t.replace('file = "Python-3.15.0rc2', 'file = "Python-3.14.0'), "python.org's name"),
        (lambda t: t.replace('sha256_from = "a test"', 'sha256_from = "a test"\nmd5 = "x"'), "unknown key"),
        (lambda t: t.replace('sha256_from = "a test"', ""), "sha256_from"),
        (lambda t: t.replace("format = 2", "format = 1"), "format = 2"),
        (lambda t: t.replace("https://www.python.org", "ftp://x"), "download_base"),
        (lambda t: t.replace('"3.15.0rc2"]', '"3.15"]'), "release number"),
        (lambda t: t + "[oops", "not valid TOML"),
    ],
)
def test_bad_lock_is_an_error_naming_the_problem(mutation, message):
    with pytest.raises(SourceError, match=message):
        parse_lock(mutation(GOOD_LOCK.format(sha="a" * 64)), Path("sources.toml"))


def test_unknown_release_is_an_error():
    with pytest.raises(SourceError, match=r"no release '3\.99\.0'"):
        LOCK.release("3.99.0")


# -- mirror folder and cache --------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["flat", "python.org"])
def test_mirror_file_with_the_locked_checksum_is_used(tmp_path, layout):
    release = release_of()
    where = tmp_path / "mirror" / ("3.15.0" if layout == "python.org" else "")
    where.mkdir(parents=True)
    (where / release.file).write_bytes(TARBALL)
    got = fetch_source(
        release,
        mirror=tmp_path / "mirror",
        cache_dir=tmp_path / "cache",
        base="http://127.0.0.1:9",
        log=quiet,
    )
    assert got.path == where / release.file and got.sha256 == release.sha256
    assert got.origin == f"mirror {tmp_path / 'mirror'}"


def test_mirror_checksum_mismatch_is_an_error_and_never_falls_back(tmp_path):
    (tmp_path / "mirror").mkdir()
    release = release_of()
    (tmp_path / "mirror" / release.file).write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatch, match="does not match"):
        fetch_source(
            release,
            mirror=tmp_path / "mirror",
            cache_dir=tmp_path / "cache",
            base="http://127.0.0.1:9",
            log=quiet,
        )
    assert not (tmp_path / "cache").exists()  # no download was attempted


def test_sources_and_download_base_env_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("GILMATRIX_SOURCES", str(tmp_path))
    assert images_sources.mirror_dir(None) == tmp_path
    assert images_sources.mirror_dir(Path("/x")) == Path("/x")  # --sources wins
    monkeypatch.delenv("GILMATRIX_SOURCES")
    assert images_sources.mirror_dir(None) is None
    assert images_sources.download_base(None, LOCK) == LOCK.download_base
    monkeypatch.setenv("GILMATRIX_DOWNLOAD_BASE", "https://mirror.example/python")
    assert images_sources.download_base(None, LOCK) == "https://mirror.example/python"
    assert images_sources.download_base("http://x/y", LOCK) == "http://x/y"


# -- a stand-in for python.org on 127.0.0.1 ------------------------------------------------------


class FtpPython:
    """A folder laid out like python.org's ftp/python/, served over HTTP on 127.0.0.1.

    ``cut_after`` makes the server announce the whole length, send that many bytes and close the
    connection: a transfer cut off half-way. ``requests`` lists the paths asked for.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cut_after: int | None = None
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                path = root / self.path.lstrip("/")
                if server.cut_after is None or not path.is_file():
                    return super().do_GET()
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: server.cut_after])
                self.wfile.flush()
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/ftp/python"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def publish(self, release: images_sources.Release, content: bytes) -> None:
        folder = self.root / "ftp" / "python" / release.folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / release.file).write_bytes(content)


@pytest.fixture
def python_org(tmp_path) -> Iterator[FtpPython]:
    site = FtpPython(tmp_path / "site")
    site.thread.start()
    try:
        yield site
    finally:
        site.httpd.shutdown()
        site.httpd.server_close()


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_good_download_is_verified_cached_and_not_downloaded_again(python_org, tmp_path):
    release = release_of()
    python_org.publish(release, TARBALL)
    cache = tmp_path / "cache"
    got = fetch_source(release, mirror=None, cache_dir=cache, base=python_org.base, log=quiet)
    assert got.sha256 == release.sha256 and got.path == cache / release.file
    assert got.origin == f"download {python_org.base}/3.15.0/{release.file}"
    assert python_org.requests == ["/ftp/python/3.15.0/Python-3.15.0rc2.tar.xz"]
    again = fetch_source(release, mirror=None, cache_dir=cache, base=python_org.base, log=quiet)
    assert again.origin.startswith("cache ") and len(python_org.requests) == 1
    assert leftovers(cache) == [release.file]


def test_a_damaged_cached_copy_is_downloaded_again(python_org, tmp_path):
    release = release_of()
    python_org.publish(release, TARBALL)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / release.file).write_bytes(b"bit rot")
    got = fetch_source(release, mirror=None, cache_dir=tmp_path / "cache", base=python_org.base, log=quiet)
    assert got.origin.startswith("download ") and got.path.read_bytes() == TARBALL


def test_download_with_the_wrong_checksum_is_refused_and_nothing_cached(python_org, tmp_path):
    release = release_of()
    python_org.publish(release, b"not what python.org published")
    with pytest.raises(ChecksumMismatch, match="does not match the lock's"):
        fetch_source(release, mirror=None, cache_dir=tmp_path / "cache", base=python_org.base, log=quiet)
    assert leftovers(tmp_path / "cache") == []


def test_404_is_an_error_naming_the_url(python_org, tmp_path):
    with pytest.raises(SourceError, match=r"3\.15\.0/Python-3\.15\.0rc2\.tar\.xz failed: HTTP 404"):
        fetch_source(release_of(), mirror=None, cache_dir=tmp_path / "cache", base=python_org.base, log=quiet)
    assert leftovers(tmp_path / "cache") == []


def test_connection_refused_is_an_error_with_the_offline_hint(tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SourceError, match=r"(?s)refused.*--sources DIR.*--download-base"):
        fetch_source(
            release_of(),
            mirror=None,
            cache_dir=tmp_path / "cache",
            base=f"http://127.0.0.1:{port}/ftp/python",
            log=quiet,
        )
    assert leftovers(tmp_path / "cache") == []


def test_transfer_cut_off_half_way_is_refused_and_no_partial_file_is_left(python_org, tmp_path):
    release = release_of()
    python_org.publish(release, TARBALL)
    python_org.cut_after = len(TARBALL) // 2
    with pytest.raises(SourceError, match=r"failed: .*(cut off|IncompleteRead|incomplete)"):
        fetch_source(release, mirror=None, cache_dir=tmp_path / "cache", base=python_org.base, log=quiet)
    assert leftovers(tmp_path / "cache") == []
    python_org.cut_after = None  # the next try gets the whole file
    got = fetch_source(release, mirror=None, cache_dir=tmp_path / "cache", base=python_org.base, log=quiet)
    assert got.path.read_bytes() == TARBALL


def test_images_cli_downloads_from_the_download_base(python_org, tmp_path, monkeypatch):
    """`gilmatrix images --download-base URL` fetches the tarball there before it needs Docker:
    a mirror of python.org's layout serves a corporate network, too."""
    from gilmatrix.cli import main
    from gilmatrix.images import build as images
    from gilmatrix.images import docker as images_docker

    release = LOCK.release("3.14.7")
    mirror = REPO.parent / "shared" / "cpython-sources" / release.file
    if not mirror.is_file():
        pytest.skip("no mirror tarball to serve")
    python_org.publish(release, mirror.read_bytes())
    monkeypatch.delenv("GILMATRIX_SOURCES", raising=False)
    # Stop right after the download: no engine is needed to show where the bytes came from.
    monkeypatch.setattr(images_docker, "find_client", lambda: images_docker.Client("docker", False))
    monkeypatch.setattr(images_docker, "ensure_base", lambda *a, **k: "sha256:" + "0" * 64)

    def stop(*args, **kwargs):
        raise images_docker.DockerError("stopped by the test after the download")

    monkeypatch.setattr(images, "collect_wheels", stop)
    code = main(
        [
            "images",
            "--matrix",
            str(REPO / "matrix.yaml"),
            "--override",
            str(REPO / "examples" / "offline-mirror.yaml"),
            "--only",
            "3.14t",
            "--download-base",
            python_org.base,
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 1  # stopped before a build
    assert python_org.requests == [f"/ftp/python/3.14.7/{release.file}"]
    cached = tmp_path / "out" / "sources" / release.file
    assert images_sources.sha256_file(cached) == release.sha256
