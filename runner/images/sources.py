"""The source lock (images/sources.toml) and getting a verified CPython tarball from it.

Each release has one checksum, the sha256 of python.org's file, valid wherever the bytes come from:

1. a mirror folder of tarballs (``--sources DIR`` or $GILMATRIX_SOURCES), flat or laid out like
   python.org's ``ftp/python/`` — an offline stand-in;
2. the download cache (``OUT/sources``), holding only files that were verified when downloaded;
3. a download from ``<base>/<X.Y.Z>/<file>``, where the base is the lock's ``download_base``
   (python.org) unless ``--download-base URL`` or $GILMATRIX_DOWNLOAD_BASE names a mirror.

A mismatch is an error, a file the lock has no checksum for is refused, and a download lands in
the cache only once it is complete and verified (a cut-off or wrong transfer leaves nothing).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gilmatrix.backends.staging import PACKAGE_ROOT

SOURCES_ENV = "GILMATRIX_SOURCES"
DOWNLOAD_BASE_ENV = "GILMATRIX_DOWNLOAD_BASE"
IMAGES_DIR_ENV = "GILMATRIX_IMAGES_DIR"
LOCK_NAME = "sources.toml"
LOCK_FORMAT = 2
IMAGE_FILES = ("Dockerfile", "build-python.sh", "check-python.py")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_RELEASE = re.compile(r"^(3\.\d{1,2}\.\d{1,2})((a|b|rc)\d{1,2})?$")


class SourceError(Exception):
    """A source tarball cannot be had or does not verify; the message says what to do."""


class ChecksumMismatch(SourceError):
    pass


def packaged_images_dir() -> Path:
    """images/ as shipped: ``gilmatrix/_images`` in an installed wheel, ``images/`` in a checkout."""
    installed = PACKAGE_ROOT / "_images"
    return installed if (installed / LOCK_NAME).is_file() else PACKAGE_ROOT.parent / "images"


def images_dir(matrix_path: Path | None = None) -> Path:
    """The folder with the Dockerfile, scripts and lock: $GILMATRIX_IMAGES_DIR, else ``images/``
    next to the matrix file when it has them (a checkout, or a user's own copy), else the
    packaged one."""
    env = os.environ.get(IMAGES_DIR_ENV)
    if env:
        return Path(env)
    if matrix_path is not None:
        beside = Path(matrix_path).resolve().parent / "images"
        if all((beside / name).is_file() for name in (LOCK_NAME, *IMAGE_FILES)):
            return beside
    return packaged_images_dir()


@dataclass(frozen=True, slots=True)
class Release:
    version: str  # "3.15.0rc2"
    file: str  # "Python-3.15.0rc2.tar.xz"
    sha256: str  # python.org's
    sha256_from: str  # where that checksum was read

    @property
    def folder(self) -> str:
        """python.org's folder of the release: that of its final version (3.15.0rc2 -> 3.15.0)."""
        match = _RELEASE.match(self.version)
        return match.group(1) if match else self.version

    def url(self, base: str) -> str:
        return f"{base.rstrip('/')}/{self.folder}/{self.file}"


@dataclass(frozen=True, slots=True)
class Lock:
    path: Path
    download_base: str
    releases: Mapping[str, Release]
    harness_requirements: Mapping[str, str]  # distribution -> exact version

    def release(self, version: str) -> Release:
        try:
            return self.releases[version]
        except KeyError:
            raise SourceError(
                f"{self.path}: no release {version!r} in the source lock; it has "
                f"{', '.join(self.releases) or 'none'}"
            ) from None


@dataclass(frozen=True, slots=True)
class VerifiedSource:
    release: Release
    path: Path  # a local file whose sha256 was just checked
    sha256: str
    origin: str  # "mirror /path/to/dir", "cache <url>" or "download <url>"


def parse_lock(text: str, path: Path) -> Lock:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SourceError(f"{path}: not valid TOML: {exc}") from None
    if data.get("format") != LOCK_FORMAT:
        raise SourceError(f"{path}: expected `format = {LOCK_FORMAT}`, got {data.get('format')!r}")
    base = data.get("download_base")
    if not isinstance(base, str) or not re.match(r"^(https?|file)://", base):
        raise SourceError(f"{path}: `download_base` must be an http(s):// or file:// URL")
    releases: dict[str, Release] = {}
    for version, entry in (data.get("releases") or {}).items():
        where = f"{path}: releases.{version!r}"
        if not _RELEASE.match(version):
            raise SourceError(f"{where}: not a CPython release number like 3.14.7 or 3.15.0rc2")
        if not isinstance(entry, dict):
            raise SourceError(f"{where}: expected a table")
        unknown = set(entry) - {"file", "sha256", "sha256_from"}
        if unknown:
            raise SourceError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("file", "sha256", "sha256_from"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise SourceError(f"{where}: `{key}` must be a non-empty string")
        if "/" in entry["file"] or entry["file"] not in (f"Python-{version}.tar.xz", f"Python-{version}.tgz"):
            raise SourceError(
                f"{where}: file {entry['file']!r} is not python.org's name for "
                f"{version} (Python-{version}.tar.xz or .tgz)"
            )
        if not _HEX64.match(entry["sha256"]):
            raise SourceError(f"{where}.sha256: expected 64 lower-case hex digits, got {entry['sha256']!r}")
        releases[version] = Release(version, entry["file"], entry["sha256"], entry["sha256_from"])
    requirements = data.get("harness_requirements") or {}
    if not all(isinstance(v, str) and v for v in requirements.values()):
        raise SourceError(f"{path}: harness_requirements: each value must be an exact version")
    return Lock(path, base, releases, dict(requirements))


def load_lock(path: Path | None = None) -> Lock:
    """The lock at ``path`` (default: the packaged images/sources.toml)."""
    path = path or packaged_images_dir() / LOCK_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read the source lock: {exc}") from None
    return parse_lock(text, path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mirror_dir(explicit: Path | None) -> Path | None:
    """The mirror folder: ``explicit`` (--sources), else $GILMATRIX_SOURCES, else None."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(SOURCES_ENV)
    return Path(env) if env else None


def download_base(explicit: str | None, lock: Lock) -> str:
    """Where downloads come from: ``explicit`` (--download-base), $GILMATRIX_DOWNLOAD_BASE, the lock's."""
    return explicit or os.environ.get(DOWNLOAD_BASE_ENV) or lock.download_base


def verify(path: Path, release: Release, where: str) -> str:
    """Check ``path``'s sha256 against the lock's; return it. Different: ChecksumMismatch."""
    actual = sha256_file(path)
    if actual != release.sha256:
        raise ChecksumMismatch(
            f"{where}: sha256 {actual} does not match the lock's "
            f"{release.sha256} for {release.file}: the file is damaged or not "
            "python.org's; refusing to build from it"
        )
    return actual


def fetch_source(
    release: Release,
    *,
    mirror: Path | None,
    cache_dir: Path,
    base: str,
    log: Callable[[str], None] = print,
    timeout: float = 60.0,
) -> VerifiedSource:
    """A verified local copy of ``release``: from ``mirror``, the cache, or downloaded."""
    if mirror is not None:
        if not mirror.is_dir():
            raise SourceError(f"source mirror {mirror} is not a folder (--sources / ${SOURCES_ENV})")
        for candidate in (mirror / release.file, mirror / release.folder / release.file):
            if candidate.is_file():
                sha = verify(candidate, release, str(candidate))
                return VerifiedSource(release, candidate, sha, f"mirror {mirror}")
        log(f"source {release.file}: not in mirror {mirror}; downloading it")
    url = release.url(base)
    cached = cache_dir / release.file
    if cached.is_file():
        try:
            return VerifiedSource(release, cached, verify(cached, release, str(cached)), f"cache {url}")
        except ChecksumMismatch:
            log(f"source {release.file}: the cached copy does not verify; downloading it again")
            cached.unlink()
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f"{cached.name}.part-{os.getpid()}")
    hint = (
        f"; for an offline build give a folder of tarballs with --sources DIR (${SOURCES_ENV}), "
        f"or a mirror of python.org's ftp/python/ with --download-base URL "
        f"(${DOWNLOAD_BASE_ENV})"
    )
    try:
        log(f"source {release.file}: downloading {url}")
        _download(url, partial, timeout)
        sha = verify(partial, release, f"download {url}")
    except ChecksumMismatch:
        partial.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise SourceError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}{hint}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise SourceError(f"downloading {url} failed: {reason}{hint}") from None
    except BaseException:  # Ctrl-C: no partial file left behind either
        partial.unlink(missing_ok=True)
        raise
    partial.replace(cached)
    return VerifiedSource(release, cached, sha, f"download {url}")


def _download(url: str, dest: Path, timeout: float) -> None:
    """``url`` into ``dest``; a transfer shorter than its Content-Length is an error."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        expected = response.headers.get("Content-Length")
        received = 0
        while block := response.read(1 << 20):
            out.write(block)
            received += len(block)
    if expected is not None and expected.isdigit() and received != int(expected):
        raise OSError(f"the transfer was cut off after {received} of {expected} bytes")
