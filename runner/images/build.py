"""One Docker image per interpreter: plan it, hash its inputs into its tag, build it when missing.

An image is described by an :class:`ImageSpec` (pure data, from the matrix entry and the source
lock). Everything that goes into the image — Dockerfile and scripts, build arguments, the source
tarball's checksum or the prefix's file list, the base image id, the wheels, the harness files —
is hashed into the tag (``gilmatrix/cpython:3.14t-fast-<hash>``), so an existing tag means an
up-to-date image and nothing is rebuilt. When something did change, Docker's layer cache still
reuses every layer before it: a harness change rebuilds only the last layer.

Public API (the CLI and the docker backend use these):
- :func:`build_images` — ensure images for several interpreters, one :class:`ImageResult` each;
- :meth:`ImageBuilder.ensure` — the same for one interpreter (raises :class:`ImageError`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gilmatrix.backends.staging import PACKAGE, PACKAGE_ROOT
from gilmatrix.backends.staging import harness_files as shipped_harness_files
from gilmatrix.images import docker as dk
from gilmatrix.images.sources import (
    IMAGE_FILES,
    LOCK_NAME,
    Lock,
    SourceError,
    download_base,
    fetch_source,
    images_dir,
    load_lock,
    mirror_dir,
)
from gilmatrix.images.wheels import WheelError, collect_wheels
from gilmatrix.matrix.model import Interpreter

IMAGE_REPO = "gilmatrix/cpython"
FORMAT = 1  # bump when the meaning of the inputs changes without the files changing
SOURCE_PREFIX = "/usr/local"  # where source builds are installed in the image
BUILD_PROFILES = ("fast", "release")
# Same for every version; build-python.sh adds LDFLAGS=-Wl,-rpath,$PREFIX/lib. Every version uses
# the expat and libmpdec bundled with CPython: Debian bookworm ships no mpdecimal, and its patched
# expat 2.5.0 fails 3.14's test_xml_etree, which aborts the PGO training run of `release` builds.
BASE_CONFIGURE_FLAGS = (
    "--enable-shared",
    "--without-system-libmpdec",
    "--with-ensurepip=install",
    "--enable-option-checking=fatal",
)
PROFILE_FLAGS = {"fast": (), "release": ("--enable-optimizations", "--with-lto")}


class ImageError(Exception):
    """An image cannot be built or used; the message says why and what to do."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path  # the kept build log, when a build ran and failed


@dataclass(frozen=True, slots=True)
class ImageSpec:
    interpreter_id: str
    kind: str  # "source" | "prefix"
    python_version: str  # what the interpreter must report: "3.14.7"
    free_threaded: bool
    prefix: str  # install prefix inside the image (a copied-in prefix keeps its host path)
    build_profile: str  # "fast" | "release" | "prefix" (a copied-in build keeps its own flags)
    configure_flags: tuple[str, ...] = ()
    source_file: str = ""
    source_sha256: str = ""
    source_origin: str = ""
    source_path: Path | None = None  # verified local tarball
    host_prefix: Path | None = None  # the prefix on this machine

    @property
    def python(self) -> str:
        return f"{self.prefix}/bin/python3"

    @property
    def abi(self) -> str:
        major, minor = self.python_version.split(".")[:2]
        return f"cp{major}{minor}{'t' if self.free_threaded else ''}"

    @property
    def site_packages(self) -> str:
        major, minor = self.python_version.split(".")[:2]
        thread = "t" if self.free_threaded else ""
        return f"{self.prefix}/lib/python{major}.{minor}{thread}/site-packages"

    def build_args(self, base: str) -> dict[str, str]:
        return {
            "BASE": base,
            "KIND": self.kind,
            "PREFIX": self.prefix,
            "INTERPRETER_ID": self.interpreter_id,
            "PYTHON_VERSION": self.python_version,
            "FREE_THREADED": "1" if self.free_threaded else "0",
            "BUILD_PROFILE": self.build_profile,
            "CONFIGURE_FLAGS": " ".join(self.configure_flags),
            "SOURCE_FILE": self.source_file,
            "SOURCE_SHA256": self.source_sha256,
            "SITE_PACKAGES": self.site_packages,
        }


@dataclass(frozen=True, slots=True)
class ImageResult:
    interpreter_id: str
    status: str  # "built" | "cached" | "failed"
    tag: str | None = None
    image_id: str | None = None
    python: str | None = None
    seconds: float = 0.0
    size_bytes: int | None = None
    log_path: Path | None = None
    error: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # provenance for the manifest

    @property
    def ok(self) -> bool:
        return self.status in ("built", "cached")


# -- planning (pure) ----------------------------------------------------------------------------


def configure_flags(free_threaded: bool, profile: str) -> tuple[str, ...]:
    if profile not in PROFILE_FLAGS:
        raise ImageError(f"unknown build profile {profile!r}: choose one of {', '.join(BUILD_PROFILES)}")
    return (*BASE_CONFIGURE_FLAGS, *(("--disable-gil",) if free_threaded else ()), *PROFILE_FLAGS[profile])


def prefix_version(host_prefix: Path, minor: str) -> str:
    """The exact version of an install prefix, from its patchlevel.h (no need to run it)."""
    for header in sorted(host_prefix.glob(f"include/python{minor}*/patchlevel.h")):
        for line in header.read_text(errors="replace").splitlines():
            if line.startswith("#define PY_VERSION "):
                return line.split('"')[1].rstrip("+")
    raise ImageError(
        f"{host_prefix}: not a CPython {minor} install prefix (no include/python{minor}*/patchlevel.h)"
    )


def plan_image(interp: Interpreter, lock: Lock, profile: str) -> ImageSpec:
    """What to build for ``interp`` (without fetching anything)."""
    if interp.prefix:
        in_image = os.path.normpath(os.path.expanduser(interp.prefix))
        host = Path(in_image).resolve()
        if not (host / "bin" / "python3").exists():
            raise ImageError(
                f"{interp.id}: prefix {interp.prefix} has no bin/python3 on this "
                "machine; install that interpreter there or change matrix.yaml"
            )
        return ImageSpec(
            interp.id,
            "prefix",
            prefix_version(host, interp.minor),
            interp.free_threaded,
            in_image,
            "prefix",
            host_prefix=host,
        )
    if interp.source:
        try:
            release = lock.release(interp.source)
        except SourceError as exc:
            raise ImageError(f"{interp.id}: {exc}") from None
        return ImageSpec(
            interp.id,
            "source",
            release.version,
            interp.free_threaded,
            SOURCE_PREFIX,
            profile,
            configure_flags(interp.free_threaded, profile),
            source_file=release.file,
        )
    raise ImageError(
        f"{interp.id}: matrix.yaml gives neither `source:` (a release to build) nor "
        "`prefix:` (an install to copy in), so the docker backend has no image for it"
    )


def prefix_fingerprint(root: Path) -> str:
    """Hash of a prefix tree's file names, sizes, modes and mtimes (stat only: fast on 300 MB)."""
    digest = hashlib.sha256()
    for path in sorted(_prefix_files(root)):
        st = path.lstat()
        digest.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mode}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _prefix_files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            path = Path(dirpath) / name
            if not _excluded_from_prefix(root, path):
                yield path


def _excluded_from_prefix(root: Path, path: Path) -> bool:
    # .pth files in site-packages run code at every start-up; those of this machine (sandbox CA
    # hooks and the like) do not belong in a benchmark image.
    return path.suffix == ".pth" and "site-packages" in path.relative_to(root).parts


def harness_files() -> dict[str, Path]:
    """The harness files as they go into the image: ``{"gilmatrix/harness/x.py": host path}``."""
    return {
        f"{PACKAGE}/{path.relative_to(PACKAGE_ROOT).as_posix()}": path for path in shipped_harness_files()
    }


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inputs_hash(
    spec: ImageSpec,
    *,
    base_id: str,
    image_files: Mapping[str, str],
    harness: Mapping[str, str],
    wheels: Mapping[str, str],
    prefix_fp: str = "",
) -> str:
    """The tag's hash: every input of the image as canonical JSON (names -> sha256 values)."""
    args = spec.build_args(base="(by id)")
    args.pop("BASE")
    payload = {
        "format": FORMAT,
        "build_args": args,
        "base_image_id": base_id,
        "source_sha256": spec.source_sha256,
        "prefix_fingerprint": prefix_fp,
        "image_files": dict(image_files),
        "harness": dict(harness),
        "wheels": dict(wheels),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def image_tag(spec: ImageSpec, digest: str) -> str:
    return f"{IMAGE_REPO}:{spec.interpreter_id}-{spec.build_profile}-{digest[:16]}"


# -- building (I/O) -----------------------------------------------------------------------------


@dataclass
class ImageBuilder:
    """Ensures images exist; holds the engine client, lock, base image id and options."""

    work_dir: Path
    build_profile: str = "fast"
    sources: Path | None = None  # mirror folder of tarballs (else $GILMATRIX_SOURCES)
    download_base: str | None = None  # python.org or a mirror of its ftp/python/ (else env, lock)
    images_dir: Path | None = None  # Dockerfile, scripts, lock (default: images_dir())
    wheelhouse: Path | None = None
    base: str = dk.DEFAULT_BASE
    bootstrap_base: bool | None = None  # None: bootstrap with a message when missing & no pull
    log: Callable[[str], None] = print
    lock: Lock | None = None
    client: dk.Client | None = None
    _base_id: str | None = None

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir).resolve()  # logs and contexts are shown by full path
        self.images_dir = Path(self.images_dir or images_dir())

    def _setup(self) -> tuple[dk.Client, Lock, str]:
        if self.client is None:
            self.client = dk.find_client()
        if self.lock is None:
            self.lock = load_lock(Path(self.images_dir or images_dir()) / LOCK_NAME)
        if self._base_id is None:
            self._base_id = dk.ensure_base(
                self.client,
                self.base,
                bootstrap=self.bootstrap_base,
                log=self.log,
                work_dir=self.work_dir / "tmp",
            )
        return self.client, self.lock, self._base_id

    def ensure(self, interp: Interpreter) -> ImageResult:
        """The image for ``interp``, built if missing; raises ImageError when it cannot be had."""
        started = time.monotonic()
        try:
            client, lock, base_id = self._setup()
            spec = plan_image(interp, lock, self.build_profile)
            return self._ensure(client, lock, base_id, spec, started)
        except (dk.DockerError, SourceError, WheelError, OSError) as exc:
            raise ImageError(f"{interp.id}: {exc}", getattr(exc, "log_path", None)) from None

    def _ensure(
        self, client: dk.Client, lock: Lock, base_id: str, spec: ImageSpec, started: float
    ) -> ImageResult:
        label = spec.interpreter_id
        prefix_fp = ""
        if spec.kind == "source":
            release = lock.release(spec.python_version)
            source = fetch_source(
                release,
                mirror=mirror_dir(self.sources),
                cache_dir=self.work_dir / "sources",
                log=self.log,
                base=download_base(self.download_base, lock),
            )
            spec = _with_source(spec, source.path, source.sha256, source.origin)
        else:
            assert spec.host_prefix is not None
            prefix_fp = prefix_fingerprint(spec.host_prefix)
        wheels = collect_wheels(
            lock.harness_requirements,
            spec.abi,
            spec.python_version,
            wheelhouse=self.wheelhouse,
            cache=self.work_dir / "wheelhouse",
            log=self.log,
        )
        harness = harness_files()
        assert self.images_dir is not None
        image_files = {name: self.images_dir / name for name in IMAGE_FILES}
        digest = inputs_hash(
            spec,
            base_id=base_id,
            prefix_fp=prefix_fp,
            image_files={n: _file_sha(p) for n, p in image_files.items()},
            harness={n: _file_sha(p) for n, p in harness.items()},
            wheels={p.name: _file_sha(p) for p in wheels},
        )
        tag = image_tag(spec, digest)
        details = {
            "build_profile": spec.build_profile,
            "kind": spec.kind,
            "python_version": spec.python_version,
            "configure_flags": " ".join(spec.configure_flags),
            "base_image": self.base,
            "base_image_id": base_id,
            "inputs_hash": digest,
            "source_lock": str(lock.path),
            **(
                {
                    "source_file": spec.source_file,
                    "source_sha256": spec.source_sha256,
                    "source_origin": spec.source_origin,
                }
                if spec.kind == "source"
                else {"prefix": spec.prefix, "prefix_fingerprint": prefix_fp}
            ),
            "wheels": sorted(p.name for p in wheels),
        }
        info = dk.image_inspect(client, tag)
        if info is not None:
            self.log(f"[{label}] up to date: {tag} (no build)")
            return ImageResult(
                label,
                "cached",
                tag,
                info["Id"],
                spec.python,
                time.monotonic() - started,
                info.get("Size"),
                details={**details, "build_seconds": 0.0},
            )
        context = self.work_dir / "images" / "context" / label
        log_path = self.work_dir / "images" / "logs" / f"{label}-{digest[:16]}.log"
        what = (
            f"{spec.source_file} ({spec.source_origin}), {spec.build_profile} profile"
            if spec.kind == "source"
            else f"prefix {spec.prefix}"
        )
        self.log(f"[{label}] building {tag} from {what}; log: {log_path}")
        _assemble_context(context, spec, image_files, harness, wheels, lock)
        args = [
            "-f",
            str(context / "Dockerfile"),
            "-t",
            tag,
            "-t",
            f"{IMAGE_REPO}:{label}-{spec.build_profile}",
        ]
        for key, value in {**spec.build_args(self.base), "INPUTS_HASH": digest}.items():
            args += ["--build-arg", f"{key}={value}"]
        seconds = dk.build(client, args, context, log_path, label=label, log=self.log)
        info = dk.image_inspect(client, tag)
        if info is None:
            raise dk.DockerError(f"the build reported success but {tag} is missing; log: {log_path}")
        shutil.rmtree(context, ignore_errors=True)
        size = info.get("Size")
        self.log(
            f"[{label}] built {tag} in {dk._fmt(seconds)}, {(size or 0) / 1e6:.0f} MB ({info['Id'][:19]})"
        )
        return ImageResult(
            label,
            "built",
            tag,
            info["Id"],
            spec.python,
            seconds,
            size,
            log_path,
            details={**details, "build_seconds": round(seconds, 1)},
        )


def _with_source(spec: ImageSpec, path: Path, sha: str, origin: str) -> ImageSpec:
    from dataclasses import replace

    return replace(spec, source_path=path, source_sha256=sha, source_origin=origin)


def _assemble_context(
    context: Path,
    spec: ImageSpec,
    image_files: Mapping[str, Path],
    harness: Mapping[str, Path],
    wheels: Iterable[Path],
    lock: Lock,
) -> None:
    """Lay out the build context: only what the Dockerfile copies, nothing else of the repo."""
    shutil.rmtree(context, ignore_errors=True)
    (context / "src").mkdir(parents=True)
    for name, path in image_files.items():
        shutil.copy2(path, context / name)
    if spec.kind == "source":
        assert spec.source_path is not None
        shutil.copy2(spec.source_path, context / "src" / spec.source_file)
    else:
        assert spec.host_prefix is not None
        shutil.copytree(
            spec.host_prefix,
            context / "src" / "prefix",
            symlinks=True,
            ignore=_ignore_in_prefix(spec.host_prefix),
            copy_function=_link_or_copy,
        )
    (context / "wheels").mkdir()
    for wheel in wheels:
        shutil.copy2(wheel, context / "wheels" / wheel.name)
    (context / "wheels" / "requirements.txt").write_text(
        "".join(
            f"{name}=={version}\n"
            for name, version in lock.harness_requirements.items()
            if name != "setuptools"
        )
    )
    for rel, path in harness.items():
        (context / "harness" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, context / "harness" / rel)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a prefix file into the context (hundreds of MB, read only), copy across devices."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _ignore_in_prefix(root: Path) -> Callable[[str, list[str]], list[str]]:
    def ignore(directory: str, names: list[str]) -> list[str]:
        return [n for n in names if _excluded_from_prefix(root, Path(directory) / n)]

    return ignore


def build_images(interpreters: Iterable[Interpreter], builder: ImageBuilder) -> list[ImageResult]:
    """Ensure one image per interpreter, in order; a failure is recorded and the rest go on."""
    results = []
    for interp in interpreters:
        try:
            results.append(builder.ensure(interp))
        except ImageError as exc:
            builder.log(f"[{interp.id}] FAILED: {exc}")
            results.append(ImageResult(interp.id, "failed", error=str(exc), log_path=exc.log_path))
    return results
