"""The source lock (images/sources.toml) and getting a verified CPython tarball from it.

A tarball comes from a mirror folder (``--sources DIR`` or $GILMATRIX_SOURCES) when it is there,
else from its python.org URL. Either way its sha256 must equal the lock's checksum for *that*
file (``mirror_sha256`` or ``url_sha256``): a mismatch is an error, and a file whose checksum the
lock does not record is refused rather than trusted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import tomllib

IMAGES_DIR = Path(os.environ.get("GILMATRIX_IMAGES_DIR")
                  or Path(__file__).resolve().parent.parent / "images")
DEFAULT_LOCK = IMAGES_DIR / "sources.toml"
SOURCES_ENV = "GILMATRIX_SOURCES"
_HEX64 = frozenset("0123456789abcdef")


class SourceError(Exception):
    """A source tarball cannot be had or does not verify; the message says what to do."""


class ChecksumMismatch(SourceError):
    pass


@dataclass(frozen=True, slots=True)
class Release:
    version: str  # "3.15.0rc2"
    file: str  # "Python-3.15.0rc2.tar.xz"
    url: str
    mirror_sha256: str  # "" when unknown
    url_sha256: str  # "" when unknown


@dataclass(frozen=True, slots=True)
class Lock:
    path: Path
    releases: Mapping[str, Release]
    harness_requirements: Mapping[str, str]  # distribution -> exact version

    def release(self, version: str) -> Release:
        try:
            return self.releases[version]
        except KeyError:
            raise SourceError(f"{self.path}: no release {version!r} in the source lock; it has "
                              f"{', '.join(self.releases) or 'none'}") from None


@dataclass(frozen=True, slots=True)
class VerifiedSource:
    release: Release
    path: Path  # a local file whose sha256 was just checked
    sha256: str
    origin: str  # "mirror /path/to/dir" or "download https://..."


def _checksum_field(value: object, where: str) -> str:
    if not isinstance(value, str) or (value and (len(value) != 64 or set(value) - _HEX64)):
        raise SourceError(f"{where}: expected 64 lower-case hex digits or \"\", got {value!r}")
    return value


def parse_lock(text: str, path: Path = DEFAULT_LOCK) -> Lock:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SourceError(f"{path}: not valid TOML: {exc}") from None
    if data.get("format") != 1:
        raise SourceError(f"{path}: expected `format = 1`, got {data.get('format')!r}")
    releases: dict[str, Release] = {}
    for version, entry in (data.get("releases") or {}).items():
        where = f"{path}: releases.{version!r}"
        if not isinstance(entry, dict):
            raise SourceError(f"{where}: expected a table")
        unknown = set(entry) - {"file", "url", "mirror_sha256", "url_sha256"}
        if unknown:
            raise SourceError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("file", "url"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise SourceError(f"{where}: `{key}` must be a non-empty string")
        if "/" in entry["file"] or not entry["url"].endswith("/" + entry["file"]):
            raise SourceError(f"{where}: `url` must end with /{entry['file']} (the file name)")
        if version not in entry["file"]:
            raise SourceError(f"{where}: file {entry['file']!r} does not name version {version}")
        releases[version] = Release(
            version=version, file=entry["file"], url=entry["url"],
            mirror_sha256=_checksum_field(entry.get("mirror_sha256", ""), f"{where}.mirror_sha256"),
            url_sha256=_checksum_field(entry.get("url_sha256", ""), f"{where}.url_sha256"),
        )
    requirements = data.get("harness_requirements") or {}
    if not all(isinstance(v, str) and v for v in requirements.values()):
        raise SourceError(f"{path}: harness_requirements: each value must be an exact version")
    return Lock(path=path, releases=releases, harness_requirements=dict(requirements))


def load_lock(path: Path = DEFAULT_LOCK) -> Lock:
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


def verify(path: Path, expected: str, what: str) -> str:
    """Check ``path``'s sha256 against ``expected``; return it. Unknown or different: an error."""
    actual = sha256_file(path)
    if not expected:
        raise SourceError(f"{path}: the source lock has no checksum for {what}, so it is not "
                          f"trusted. Its sha256 is {actual}: if that matches the checksum the "
                          f"publisher gives, record it in {DEFAULT_LOCK.name}")
    if actual != expected:
        raise ChecksumMismatch(f"{path}: sha256 {actual} does not match the lock's {expected} "
                               f"for {what}: the file is damaged or not the one locked; "
                               "refusing to build from it")
    return actual


def fetch_source(release: Release, *, mirror: Path | None, cache_dir: Path,
                 log: Callable[[str], None] = print, timeout: float = 60.0) -> VerifiedSource:
    """A verified local copy of ``release``: from ``mirror`` if it has the file, else downloaded."""
    if mirror is not None:
        if not mirror.is_dir():
            raise SourceError(f"source mirror {mirror} is not a folder "
                              f"(--sources / ${SOURCES_ENV})")
        candidate = mirror / release.file
        if candidate.is_file():
            sha = verify(candidate, release.mirror_sha256, f"{release.file} (mirror_sha256)")
            return VerifiedSource(release, candidate, sha, f"mirror {mirror}")
        log(f"source {release.file}: not in mirror {mirror}; downloading {release.url}")
    cached = cache_dir / release.file
    if cached.is_file():
        sha = verify(cached, release.url_sha256, f"{release.file} (url_sha256)")
        return VerifiedSource(release, cached, sha, f"download {release.url}")
    if not release.url_sha256:
        # Refuse before spending the download: the file could not be verified anyway.
        raise SourceError(f"{release.file}: not in a mirror{f' ({mirror})' if mirror else ''} and "
                          f"the source lock has no url_sha256 for {release.url}; give a mirror "
                          f"with --sources DIR (or ${SOURCES_ENV}) or record python.org's "
                          f"checksum in {DEFAULT_LOCK}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(cached.name + ".part")
    try:
        with urllib.request.urlopen(release.url, timeout=timeout) as response, \
                open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise SourceError(f"downloading {release.url} failed: {exc}; give a mirror folder with "
                          f"--sources DIR (or ${SOURCES_ENV})") from None
    try:
        sha = verify(partial, release.url_sha256, f"{release.file} (url_sha256)")
    except SourceError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(cached)
    return VerifiedSource(release, cached, sha, f"download {release.url}")
