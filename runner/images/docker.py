"""The Docker engine as `gilmatrix images` and the docker backend use it: which client, is the
engine there, image facts, the base image (and making it with debootstrap), a build with progress.

Everything here shells out to the ``docker`` command line with argument lists (never a shell
string), so what gilmatrix does can be replayed by hand from the log.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_BASE = "debian:bookworm-slim"
DEBIAN_MIRROR = "http://deb.debian.org/debian"

# Debian's docker.io 20.10 client has BuildKit built in (DOCKER_BUILDKIT=1); newer clients need the
# buildx plugin for it, which a machine without a registry may not have. Prefer the former.
_CLIENT_CANDIDATES = ("/usr/bin/docker", "docker")


class DockerError(Exception):
    """The engine or a docker command failed; the message says what to do."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path


@dataclass(frozen=True, slots=True)
class Client:
    path: str
    buildkit: bool  # whether `docker build` may use BuildKit with this client

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_BUILDKIT"] = "1" if self.buildkit else "0"
        return env


def find_client() -> Client:
    """The docker client to use: $GILMATRIX_DOCKER, Debian's /usr/bin/docker, or the one on PATH."""
    candidates = [os.environ["GILMATRIX_DOCKER"]] if os.environ.get("GILMATRIX_DOCKER") else []
    candidates += _CLIENT_CANDIDATES
    for candidate in candidates:
        path = shutil.which(candidate)
        if path:
            return Client(path, _client_has_buildkit(path))
    raise DockerError(
        "no docker client found: install Debian's docker.io "
        "(`apt-get install docker.io`) or set GILMATRIX_DOCKER"
    )


def _client_has_buildkit(path: str) -> bool:
    try:
        version = subprocess.run(
            [path, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True, timeout=20
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return False
    major = re.match(r"(\d+)", version)
    if major and int(major.group(1)) < 23:
        return True  # BuildKit is built into 18.09 .. 22.x clients
    probe = subprocess.run([path, "buildx", "version"], capture_output=True, timeout=20)
    return probe.returncode == 0


def engine_answers(timeout: float = 10.0) -> bool:
    """True when a Docker engine answers `docker info` within ``timeout`` seconds."""
    try:
        client = find_client()
        result = subprocess.run(
            [client.path, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (DockerError, OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def docker(
    client: Client, *args: str, timeout: float | None = 120, check: bool = True, input: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one docker command, capture its output; raise DockerError when ``check`` and it fails."""
    try:
        result = subprocess.run(
            [client.path, *args],
            capture_output=True,
            text=input is None,
            timeout=timeout,
            env=client.env(),
            input=input,
        )
    except subprocess.TimeoutExpired:
        raise DockerError(f"`docker {' '.join(args[:3])} ...` did not answer in {timeout:.0f} s") from None
    if check and result.returncode != 0:
        err = result.stderr
        if not isinstance(err, str):
            err = err.decode(errors="replace")
        raise DockerError(f"`docker {' '.join(args)}` failed: {err.strip()[-2000:]}")
    return result


def image_inspect(client: Client, ref: str) -> dict[str, Any] | None:
    """`docker image inspect ref` as a dict, or None when there is no such image."""
    result = docker(client, "image", "inspect", ref, check=False)
    if result.returncode != 0:
        return None
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found[0]


def image_id(client: Client, ref: str) -> str | None:
    info = image_inspect(client, ref)
    return info["Id"] if info else None


# -- base image ----------------------------------------------------------------------------


def bootstrap_base(
    client: Client,
    tag: str = DEFAULT_BASE,
    log: Callable[[str], None] = print,
    mirror: str = DEBIAN_MIRROR,
    work_dir: Path | None = None,
) -> str:
    """Make ``tag`` (a Debian bookworm minbase) with debootstrap + `docker import`; return its id.

    This is what to do where no registry can be reached: the result is close to
    debian:bookworm-slim (same release, minimal package set), made from Debian's own archive.
    """
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise DockerError(
            f"base image {tag} is missing and cannot be pulled; making it needs "
            "debootstrap: `apt-get install debootstrap`"
        )
    if os.geteuid() != 0:
        raise DockerError(
            f"base image {tag} is missing; debootstrap needs root: run "
            "`gilmatrix images --bootstrap-base` as root once"
        )
    started = time.monotonic()
    log(
        f"base image {tag}: not present; making it with debootstrap --variant=minbase bookworm "
        f"from {mirror} (about 30 s)"
    )
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gilmatrix-base-", dir=work_dir) as tmp:
        root = Path(tmp) / "rootfs"
        result = subprocess.run(
            [debootstrap, "--variant=minbase", "bookworm", str(root), mirror], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise DockerError(
                f"debootstrap failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}"
            )
        _slim(root)
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [
                client.path,
                "import",
                "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                'CMD ["bash"]',
                "--message",
                f"gilmatrix: debootstrap --variant=minbase bookworm {mirror}",
                "-",
                tag,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            env=client.env(),
        )
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise DockerError(f"docker import of the bootstrapped base failed: {imported.stderr.strip()}")
    ident = image_id(client, tag)
    if ident is None:
        raise DockerError(f"docker import reported success but {tag} is not there")
    log(f"base image {tag}: made {ident[:19]} in {time.monotonic() - started:.0f} s")
    return ident


# What Debian's slim images leave out (their dpkg path-exclude list), so that later
# `apt-get install`s in the Dockerfile leave it out too.
_SLIM_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
    "/usr/share/groff/*",
)


def _slim(root: Path) -> None:
    """Trim a bootstrapped rootfs like debian:*-slim: no docs, man pages, locales, apt caches."""
    cfg = root / "etc" / "dpkg" / "dpkg.cfg.d" / "docker-slim"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        "".join(f"path-exclude {p}\n" for p in _SLIM_EXCLUDES) + "path-include /usr/share/doc/*/copyright\n"
    )
    for pattern in _SLIM_EXCLUDES:
        for path in root.glob(pattern.lstrip("/")):
            if path.is_dir() and not path.is_symlink():
                if pattern.startswith("/usr/share/doc/"):  # keep the licences
                    for item in path.iterdir():
                        if item.name != "copyright":
                            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
                    continue
                shutil.rmtree(path)
            else:
                path.unlink()
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (root / junk).glob("*"):
            if path.is_file():
                path.unlink()


def ensure_base(
    client: Client,
    tag: str,
    *,
    bootstrap: bool | None,
    log: Callable[[str], None],
    work_dir: Path | None = None,
) -> str:
    """The id of base image ``tag``: present, else pulled, else bootstrapped (if allowed).

    ``bootstrap=True`` makes it without trying a pull (no registry); None tries a pull first and
    bootstraps, with a message, when the pull fails.
    """
    ident = image_id(client, tag)
    if ident is not None:
        return ident
    if bootstrap is not True:
        log(f"base image {tag}: not present; trying `docker pull {tag}`")
        pulled = docker(client, "pull", tag, check=False, timeout=300)
        if pulled.returncode == 0:
            return image_id(client, tag) or ""
        if bootstrap is False:
            raise DockerError(
                f"base image {tag} is missing and `docker pull` failed; "
                "make it with `gilmatrix images --bootstrap-base`"
            )
        reason = (pulled.stderr.strip().splitlines() or ["no message"])[-1]
        log(f"base image {tag}: pull failed ({reason}); bootstrapping it instead")
    if tag != DEFAULT_BASE:
        log(f"note: bootstrapping a Debian bookworm minbase under the name {tag}")
    return bootstrap_base(client, tag, log=log, work_dir=work_dir)


# -- build with progress ----------------------------------------------------------------------

# `#12 [build 3/6] RUN ...` (BuildKit, --progress=plain) and `Step 7/21 : RUN ...` (legacy).
_BUILDKIT_STEP = re.compile(r"^#\d+ \[(?P<stage>[\w.-]+ )?(?P<n>\d+)/(?P<of>\d+)\] (?P<what>.*)$")
_LEGACY_STEP = re.compile(r"^Step (?P<n>\d+)/(?P<of>\d+) : (?P<what>.*)$")
_HEARTBEAT_S = 30.0


def _fmt(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def build(
    client: Client,
    args: Sequence[str],
    context: Path,
    log_path: Path,
    *,
    label: str,
    log: Callable[[str], None],
) -> float:
    """Run `docker build ARGS CONTEXT`, keep its whole output in ``log_path``, report progress.

    Progress lines name the image (``label``), the step and the time since the build started;
    a long step gets a line every 30 s. Returns the build's duration; raises DockerError naming
    the log file (and quoting its end) when the build fails.
    """
    cmd = [client.path, "build", *(["--progress=plain"] if client.buildkit else []), *args, str(context)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = last_report = time.monotonic()
    step, step_vertex = "starting", None
    tail: list[str] = []
    last_of: dict[str, str] = {}  # BuildKit step number -> its latest output line
    with open(log_path, "w", encoding="utf-8") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=client.env(),
            text=True,
            errors="replace",
            bufsize=1,
        )
        # A reader thread, so that a long silent step (a compile) still gets heartbeat lines.
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
        reader.start()
        while True:
            try:
                line = lines.get(timeout=min(5.0, _HEARTBEAT_S))
            except queue.Empty:
                line = ""
            now = time.monotonic()
            if line is None:
                break
            if line:
                out.write(line)
                out.flush()
                line = line.rstrip("\n")
                tail = [*tail[-39:], line]
                vertex = re.match(r"#(\d+) ", line)  # BuildKit numbers the output of each step
                match = _BUILDKIT_STEP.match(line) or _LEGACY_STEP.match(line)
                if vertex and not match:
                    last_of[vertex.group(1)] = line
                if match:
                    step_vertex = vertex.group(1) if vertex else None
                    stage = (match.groupdict().get("stage") or "").strip()
                    step = (
                        f"{stage + ' ' if stage else ''}{match.group('n')}/"
                        f"{match.group('of')} {match.group('what')}"
                    )
                    if len(step) > 110:
                        step = step[:107] + "..."
                    log(f"[{label}] {_fmt(now - started):>6} step {step}")
                    last_report = now
                    continue
            if now - last_report >= _HEARTBEAT_S:
                last = last_of.get(step_vertex or "") or (tail[-1] if tail else "")
                latest = f" | {last.strip()[:70]}" if last else ""
                log(f"[{label}] {_fmt(now - started):>6} ... still at step {step[:40]}{latest}")
                last_report = now
        code = proc.wait()
    elapsed = time.monotonic() - started
    if code != 0:
        quoted = "\n".join("    " + t for t in tail[-15:])
        raise DockerError(
            f"image build for {label} failed after {_fmt(elapsed)} (exit {code}); "
            f"full log: {log_path}\n  last lines:\n{quoted}",
            log_path,
        )
    return elapsed
