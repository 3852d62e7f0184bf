"""A workload image: an interpreter's image plus the run's user workloads (``module:``).

``FROM`` the interpreter's image, one stage installs the workloads' requirements from
files downloaded on the host (a wheelhouse per ABI and workload; an sdist where the ABI has no
wheel, compiled in that stage with a gcc installed there only), and the image's last layer is
the workloads' files. Everything that goes in — the base image id, every workload's digest
(files and requirements), the downloaded files' names and sha256 — is hashed into the tag
(``<base tag>-u<hash16>``): an existing tag is reused, and editing a workload's file rebuilds
only the last layer. A requirement that does not install does not fail the build: the build
writes a status file, read back here, and that workload's cells are skipped on this interpreter
with pip's reason.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gilmatrix.backends.usercode import pip_reason, requirements_digest, stage_workload, workload_digest
from gilmatrix.images import docker as dk
from gilmatrix.images.sources import packaged_images_dir
from gilmatrix.images.wheels import requirement_files
from gilmatrix.matrix.model import Workload

FORMAT = 1  # bump when the meaning of the inputs changes without the files changing
ROOT = "/opt/gilmatrix"
WORKLOADS = f"{ROOT}/workloads"
DEPS = f"{ROOT}/deps"
STATUS = f"{DEPS}/status.json"
INSTALL_SCRIPT = "install-requirements.py"  # in images/ (gilmatrix/_images when installed)
READY = ".gilmatrix-files.json"


@dataclass(frozen=True, slots=True)
class Prepared:
    """One user workload as the workload image holds it."""

    workload: Workload
    folder: str  # its files in the image
    deps: str | None  # its requirements' --target folder in the image
    files: tuple[Path, ...] = ()  # downloaded for its requirements (host paths)
    sdists: tuple[str, ...] = ()  # names among ``files`` built in the image
    problem: str | None = None


@dataclass
class WorkloadImage:
    tag: str | None  # None: no image was needed (no workload to ship)
    image_id: str | None
    status: str  # built | cached | failed | none
    workloads: dict[str, Prepared] = field(default_factory=dict)
    log_path: Path | None = None


def abi_of(version_info: Sequence[int], free_threaded: bool) -> str:
    return f"cp{version_info[0]}{version_info[1]}{'t' if free_threaded else ''}"


def derived_tag(base_tag: str, digest: str) -> str:
    repo, _, tag = base_tag.rpartition(":")
    if not repo or "/" in tag:  # an untagged reference (a digest or a bare name)
        repo, tag = base_tag, "latest"
    return f"{repo}:{tag[:100]}-u{digest[:16]}"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_requirements(
    workload: Workload,
    abi: str,
    python_version: str,
    *,
    wheelhouse: Path | None,
    cache: Path,
    log: Callable[[str], None],
) -> tuple[list[Path], list[Path], str | None]:
    """The files to install ``workload``'s requirements from in an ``abi`` image: from
    ``wheelhouse`` (its ``<abi>/`` folder, then itself) when pip finds them all there, else
    downloaded (cached in ``cache/<abi>/<workload>-<hash>``). ``(files, sdists, problem)``."""
    sources: list[tuple[str, list[str]]] = []
    if wheelhouse is not None:
        for folder in (wheelhouse / abi, wheelhouse):
            if folder.is_dir():
                sources.append((str(folder.resolve()), ["--no-index", "--find-links", str(folder.resolve())]))
    sources.append(("PyPI", []))
    wanted = ", ".join(workload.requirements)
    problems: list[str] = []
    for name, index in sources:
        key = hashlib.sha256(f"{requirements_digest(workload)}\0{name}".encode()).hexdigest()[:16]
        dest = cache / abi / f"{workload.id}-{key}"
        ready = dest / READY
        try:
            done = json.loads(ready.read_text())
            return [dest / n for n in done["files"]], [dest / n for n in done["sdists"]], None
        except (OSError, ValueError, KeyError):
            pass
        shutil.rmtree(dest, ignore_errors=True)
        log(f"[{abi}] {workload.id}: downloading {wanted} for {abi} from {name}")
        files, sdists, problem = requirement_files(
            workload.requirements, abi, python_version, dest, index=index
        )
        if problem is None:
            record = {"files": [p.name for p in files], "sdists": [p.name for p in sdists]}
            ready.write_text(json.dumps(record, indent=1) + "\n")
            return files, sdists, None
        log(f"[{abi}] {workload.id}: {problem}")
        problems.append(problem)
        shutil.rmtree(dest, ignore_errors=True)
    # the first source's reason: the user's own wheelhouse when one was given
    also = f" (nor on {sources[-1][0]})" if len(problems) > 1 else ""
    return [], [], problems[0] + also


def plan_workloads(
    workloads: Sequence[Workload],
    abi: str,
    python_version: str,
    *,
    wheelhouse: Path | None,
    cache: Path,
    log: Callable[[str], None],
) -> list[Prepared]:
    out = []
    for workload in workloads:
        assert workload.module is not None
        folder = f"{WORKLOADS}/{workload.id}-{workload_digest(workload)[:16]}"
        if not workload.requirements:
            out.append(Prepared(workload, folder, None))
            continue
        # named by the requirements only: editing the file leaves the install layer as it is
        deps = f"{DEPS}/{workload.id}-{requirements_digest(workload)[:16]}"
        files, sdists, problem = fetch_requirements(
            workload, abi, python_version, wheelhouse=wheelhouse, cache=cache, log=log
        )
        out.append(Prepared(workload, folder, deps, tuple(files), tuple(p.name for p in sdists), problem))
    return out


def dockerfile(python: str, installs: Sequence[Prepared], compile_sdists: bool) -> str:
    lines = [
        "# gilmatrix workload image: generated by runner/images/workloads.py",
        "ARG BASE",
        "FROM ${BASE} AS deps",
        "USER root",
    ]
    if installs:
        if compile_sdists:  # only here: the image the benchmarks run in gets no compiler
            lines.append(
                "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
                "--no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*"
            )
        lines += [
            f"COPY {INSTALL_SCRIPT} {ROOT}-build/{INSTALL_SCRIPT}",
            f"COPY wheels/ {ROOT}-build/wheels/",
            f'RUN "{python}" {ROOT}-build/{INSTALL_SCRIPT} {ROOT}-build/wheels/plan.json',
        ]
    else:
        lines.append(f'RUN mkdir -p {DEPS} && echo "{{}}" > {STATUS} && chmod -R a+rX {ROOT}')
    lines += [
        "FROM ${BASE}",
        f"COPY --from=deps {DEPS}/ {DEPS}/",
        "# last: editing a workload's file rebuilds only this layer",
        f"COPY workloads/ {WORKLOADS}/",
        "ARG WORKLOADS_HASH",
        'LABEL io.gilmatrix.workloads-hash="${WORKLOADS_HASH}"',
        "USER gilmatrix",
        "WORKDIR /tmp",
    ]
    return "\n".join(lines) + "\n"


def ensure_workload_image(
    client: dk.Client,
    *,
    base_tag: str,
    base_id: str,
    python: str,
    abi: str,
    python_version: str,
    workloads: Sequence[Workload],
    work_dir: Path,
    wheelhouse: Path | None,
    label: str,
    log: Callable[[str], None],
) -> WorkloadImage:
    """The workload image of ``workloads`` on the interpreter image ``base_id``: reused when its
    tag exists, else built. Raises DockerError when the build itself fails."""
    prepared = plan_workloads(
        [w for w in workloads if w.module is not None],
        abi,
        python_version,
        wheelhouse=wheelhouse,
        cache=work_dir / "userdeps",
        log=log,
    )
    by_id = {p.workload.id: p for p in prepared}
    shipped = [p for p in prepared if p.problem is None]
    if not shipped:
        return WorkloadImage(None, None, "none", by_id)
    installs = [p for p in shipped if p.deps]
    compile_sdists = any(p.sdists for p in installs)
    text = dockerfile(python, installs, compile_sdists)
    script = packaged_images_dir() / INSTALL_SCRIPT  # gilmatrix's own, not an --images-dir copy
    payload = {
        "format": FORMAT,
        "base_image_id": base_id,
        "python": python,
        "dockerfile": hashlib.sha256(text.encode()).hexdigest(),
        "install_script": _sha(script) if installs else "",
        "workloads": {p.workload.id: workload_digest(p.workload) for p in shipped},
        "files": {p.workload.id: {f.name: _sha(f) for f in p.files} for p in installs},
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    tag = derived_tag(base_tag, digest)
    info = dk.image_inspect(client, tag)
    status, log_path = "cached", None
    if info is None:
        context = work_dir / "images" / "context" / f"{label}-u{digest[:16]}"
        log_path = work_dir / "images" / "logs" / f"{label}-u{digest[:16]}.log"
        what = ", ".join(p.workload.id for p in shipped)
        log(f"[{label}] building workload image {tag} ({what}); log: {log_path}")
        # By tag (BuildKit looks an image id up in a registry), checked to be that id: the
        # interpreter's tag names its inputs' hash, and the id is hashed into this tag.
        if dk.image_id(client, base_tag) != base_id:
            raise dk.DockerError(f"{base_tag} is no longer the image {base_id[:19]}: run again")
        _assemble(context, text, script, shipped, installs)
        args = ["-f", str(context / "Dockerfile"), "-t", tag, "--build-arg", f"BASE={base_tag}"]
        args += ["--build-arg", f"WORKLOADS_HASH={digest}"]
        dk.build(client, args, context, log_path, label=f"{label} workloads", log=log)
        shutil.rmtree(context, ignore_errors=True)
        info = dk.image_inspect(client, tag)
        if info is None:
            raise dk.DockerError(f"the build reported success but {tag} is missing; log: {log_path}")
        status = "built"
    else:
        log(f"[{label}] workload image up to date: {tag} (no build)")
    installed = read_status(client, tag) if installs else {}
    for p in installs:
        result = installed.get(p.workload.id) or {"ok": False, "output": "no status recorded by the build"}
        if not result.get("ok"):
            wanted = ", ".join(p.workload.requirements)
            reason = pip_reason(str(result.get("output", "")))
            by_id[p.workload.id] = _with_problem(p, f"pip could not install {wanted}: {reason}")
    return WorkloadImage(tag, info["Id"], status, by_id, log_path)


def _with_problem(p: Prepared, problem: str) -> Prepared:
    from dataclasses import replace

    return replace(p, problem=problem)


def read_status(client: dk.Client, tag: str) -> dict[str, dict[str, object]]:
    """What the build's install step recorded, per workload id."""
    args = ("run", "--rm", "--network", "none", "--user", "10001:10001", tag, "cat", STATUS)
    result = dk.docker(client, *args)
    status: dict[str, dict[str, object]] = json.loads(result.stdout)
    return status


def _readable(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)


def _assemble(
    context: Path, text: str, script: Path, shipped: Sequence[Prepared], installs: Sequence[Prepared]
) -> None:
    shutil.rmtree(context, ignore_errors=True)
    (context / "workloads").mkdir(parents=True)
    (context / "wheels").mkdir()
    (context / "Dockerfile").write_text(text)
    for p in shipped:
        staged = stage_workload(p.workload, context / "workloads")
        assert f"{WORKLOADS}/{staged.name}" == p.folder
    plan = []
    for p in installs:
        assert p.deps is not None
        folder = context / "wheels" / p.workload.id
        folder.mkdir()
        for f in p.files:
            shutil.copy2(f, folder / f.name)
        plan.append(
            {
                "id": p.workload.id,
                "target": p.deps,
                "find_links": f"{ROOT}-build/wheels/{p.workload.id}",
                "requirements": list(p.workload.requirements),
            }
        )
    if installs:
        shutil.copy2(script, context / INSTALL_SCRIPT)
    (context / "wheels" / "plan.json").write_text(json.dumps({"status": STATUS, "workloads": plan}, indent=1))
    _readable(context)
