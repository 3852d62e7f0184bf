"""``gilmatrix``: validate, plan, run and report a benchmark matrix.

Exit codes: 0 success (every cell of the plan ok, or skipped with its reason); 1 the run ended
but some cells failed, timed out or are missing (they are in the manifest), or a stage failed;
2 bad input, or the run folder is being written by another process (nothing ran); 130
interrupted (finished cells kept; ``--resume`` continues).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import gilmatrix
from gilmatrix.errors import UserError

if TYPE_CHECKING:
    from gilmatrix.matrix.model import Matrix
    from gilmatrix.matrix.plan import Plan
    from gilmatrix.run.store import RunDir

DEFAULT_OUT = Path("_build")


def out_arg(p: argparse.ArgumentParser, what: str = "output folder") -> None:
    """``--out``: gilmatrix's work folder (results, report, images' caches), _build by default."""
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"{what} (default: %(default)s)")


def repeatable(p: argparse.ArgumentParser, flag: str, metavar: str, help: str) -> None:
    """An option that may be given many times, collected into a list (empty by default)."""
    p.add_argument(flag, action="append", default=[], metavar=metavar, help=help)


def _parse_python(value: str) -> tuple[str, str]:
    interp, sep, path = value.partition("=")
    if not sep or not interp or not path:
        raise argparse.ArgumentTypeError(
            f"expected ID=PATH (e.g. 3.13t=/opt/py/bin/python3.13t), got {value!r}"
        )
    return interp, path


def _existing_dir(value: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value}: not a folder")
    return path


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own errors: exit 2 with a usage line, as ours
        self.print_usage(sys.stderr)
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gilmatrix", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"gilmatrix {gilmatrix.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def matrix_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "matrix_file", nargs="?", type=Path, metavar="MATRIX", help="matrix file (same as --matrix)"
        )
        p.add_argument("--matrix", type=Path, default=None, help="matrix file (default: matrix.yaml)")
        override_arg(p)

    def plan_args(p: argparse.ArgumentParser) -> None:
        matrix_args(p)
        p.add_argument("--profile", help="profile of the matrix (default: its default_profile)")
        repeatable(p, "--only", "ID", "only this interpreter or workload id (repeatable)")

    p = commands.add_parser("validate", help="check a matrix file; exit 2 with file:line:key if bad")
    matrix_args(p)

    p = commands.add_parser("plan", help="list the cells a run would measure (and skip, and why)")
    plan_args(p)
    p.add_argument(
        "--sys-root",
        type=_existing_dir,
        metavar="DIR",
        help="plan for the machine whose /sys is under DIR (DIR/sys/devices/system/cpu/..., "
        "its allowed CPUs in DIR/sys/fs/cgroup/cpuset.cpus.effective): a profile's "
        "max_workers and placement then count that machine's cores (default: this machine)",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument(
        "--github",
        action="store_true",
        help="print the GitHub Actions job matrices: image jobs, and bench jobs (shards of "
        "workloads x replicates, each running every interpreter); also written to "
        "$GITHUB_OUTPUT when set",
    )
    p.add_argument(
        "--runner-labels",
        metavar="LABELS",
        help="--github: runner labels of bench jobs whose profile and workloads name none "
        "(JSON list or comma-separated; default: ubuntu-latest)",
    )
    p.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="--github: bench jobs per replicate (default: the profile's ci)",
    )
    p.add_argument(
        "--job-minutes",
        type=float,
        metavar="M",
        help="--github: as many shards as make each about M minutes of measuring",
    )
    p.add_argument(
        "--replicates", type=int, metavar="K", help="--github: run every shard on K runners (default: 1)"
    )
    p.add_argument(
        "--timings",
        type=Path,
        metavar="RUN_DIR",
        help="--github: balance shards with the worker times an earlier run recorded",
    )

    p = commands.add_parser("run", help="run the planned cells; results as pyperf JSON")
    plan_args(p)
    run_args(p)

    p = commands.add_parser("report", help="build the HTML report of a run")
    p.add_argument("run_dir", nargs="?", type=Path, help="run folder (default: the newest under OUT/results)")
    out_arg(p)
    baseline_arg(p)
    chart_images_arg(p)

    images_args(commands)
    from gilmatrix.history.cli import history_args, site_args

    history_args(commands)
    site_args(commands)

    p = commands.add_parser("merge", help="merge runs of several machines into one run folder")
    p.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        metavar="RUN_DIR",
        help="run folders, or folders holding run folders (downloaded artifacts)",
    )
    out_arg(p, "output folder: the run goes to OUT/results/RUN_ID")
    p.add_argument("--run-id", help="name of the merged run (default: the inputs' common run id)")
    repeatable(
        p, "--expect", "ID[,ID...]", "interpreters that should be there: absent ones are recorded as missing"
    )
    p.add_argument(
        "--matrix", type=Path, help="matrix file: plans the cells of missing interpreters (as missing)"
    )
    override_arg(p)
    p.add_argument("--profile", help="profile, when no input says it (default: the inputs')")
    repeatable(
        p,
        "--only",
        "ID",
        "--matrix: the run's filter, as given to plan (repeatable): the cells it plans that no input "
        "holds are recorded as missing",
    )

    p = commands.add_parser("matrix", help="run, then report: the whole pipeline")
    plan_args(p)
    run_args(p)
    baseline_arg(p)
    chart_images_arg(p)
    return parser


OVERRIDE_ENV = "GILMATRIX_OVERRIDE"


def env_overrides() -> list[Path]:
    """Override files named by $GILMATRIX_OVERRIDE (os.pathsep-separated)."""
    return [Path(v) for v in os.environ.get(OVERRIDE_ENV, "").split(os.pathsep) if v]


def override_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--override",
        action="append",
        type=Path,
        default=env_overrides(),
        metavar="FILE",
        help="apply this override file to the matrix' interpreters, e.g. install "
        "prefixes of this machine (repeatable; default: $GILMATRIX_OVERRIDE, "
        f"'{os.pathsep}'-separated)",
    )


def matrix_path(args: argparse.Namespace) -> Path:
    """The matrix file from ``MATRIX`` or ``--matrix`` (not both), default ./matrix.yaml."""
    positional, option = getattr(args, "matrix_file", None), args.matrix
    if positional is not None and option is not None and positional != option:
        raise UserError(f"two matrix files given: {positional} and --matrix {option}")
    return positional or option or Path("matrix.yaml")


def load_args_matrix(args: argparse.Namespace) -> Matrix:
    from gilmatrix.matrix.model import load_matrix

    return load_matrix(matrix_path(args), args.override)


def run_args(p: argparse.ArgumentParser) -> None:
    from gilmatrix.backends import BACKEND_NAMES

    p.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default=None,
        help="where interpreters run (default: auto, docker when an engine answers, else "
        "local; --resume: the run's own)",
    )
    out_arg(p)
    p.add_argument("--run-id", help="name of the run folder (default: date-time-profile)")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted run: only cells without a result run",
    )
    p.add_argument(
        "--python",
        action="append",
        type=_parse_python,
        default=[],
        metavar="ID=PATH",
        help="local backend: use this interpreter for ID (repeatable)",
    )
    p.add_argument(
        "--wheelhouse", type=_existing_dir, help="install pyperf from this folder of wheels (offline)"
    )
    p.add_argument(
        "--sources",
        type=Path,
        default=os.environ.get("GILMATRIX_SOURCES"),
        help="docker backend: offline mirror of CPython source tarballs (default: $GILMATRIX_SOURCES)",
    )
    download_base_arg(p)
    p.add_argument(
        "--build-profile",
        choices=("fast", "release"),
        default=None,
        help="docker backend: CPython build flags (release = PGO + LTO; default: fast; "
        "--resume: the run's own)",
    )
    p.add_argument(
        "--cpuset",
        help="the CPUs to run on: docker --cpuset-cpus, local taskset (--resume: the run's own)",
    )
    p.add_argument(
        "--shard",
        metavar="ID",
        help="CI: the shard this run is (recorded in the manifest; `gilmatrix merge` joins shards)",
    )
    p.add_argument(
        "--replicate",
        type=int,
        metavar="N",
        help="CI: which replicate of its shard this run is (recorded; merge pools replicates)",
    )
    p.add_argument(
        "--run-minutes",
        type=float,
        metavar="M",
        help="the run's budget in minutes, instead of the profile's precision.run_minutes "
        "(a shard's share of it, as `plan --github` gives)",
    )


def download_base_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--download-base",
        metavar="URL",
        help="docker backend: where CPython tarballs are downloaded from, laid out like "
        "https://www.python.org/ftp/python (a corporate mirror; default: "
        "$GILMATRIX_DOWNLOAD_BASE, else python.org); checksums are always checked",
    )


def images_args(
    subparsers: argparse._SubParsersAction[Any],
) -> argparse.ArgumentParser:
    """Add `gilmatrix images`; its handler is ``args.handler(args) -> exit code``."""
    from gilmatrix.images import docker as dk
    from gilmatrix.images.build import BUILD_PROFILES
    from gilmatrix.images.cli import images_command

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "images",
        help="build one Docker image per interpreter (only what changed)",
        description="Build (or find up to date) one Docker image per matrix interpreter: CPython "
        "from a checksummed source tarball, or an install prefix copied in.",
    )
    parser.add_argument("--matrix", type=Path, default=Path("matrix.yaml"), help="matrix file")
    override_arg(parser)
    repeatable(parser, "--only", "ID", "only this interpreter (repeatable), e.g. --only 3.14t")
    parser.add_argument(
        "--sources",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"mirror folder of CPython tarballs (default: ${'GILMATRIX_SOURCES'}; "
        "else download from python.org)",
    )
    parser.add_argument(
        "--wheelhouse",
        type=Path,
        default=None,
        metavar="DIR",
        help="pre-downloaded harness wheels/sdists (default: download into OUT)",
    )
    download_base_arg(parser)
    parser.add_argument(
        "--build-profile",
        choices=BUILD_PROFILES,
        default="fast",
        help="fast: no PGO (minutes); release: --enable-optimizations --with-lto",
    )
    parser.add_argument(
        "--bootstrap-base",
        action="store_true",
        help=f"make the base image ({dk.DEFAULT_BASE}) with debootstrap when it "
        "is missing, without trying a pull",
    )
    out_arg(parser, "work folder for build contexts, caches and logs")
    parser.add_argument(
        "--prune", action="store_true", help="remove superseded tags of the same interpreter and profile"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--tags",
        action="store_true",
        help="print only the images' tags, one a line (the summary goes to stderr): for docker save",
    )
    parser.set_defaults(handler=images_command)
    return parser


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_validate(args: argparse.Namespace) -> int:
    matrix = load_args_matrix(args)
    print(
        f"{matrix.path}: ok — {len(matrix.interpreters)} interpreters, {len(matrix.workloads)} "
        f"workloads, {len(matrix.executors)} executors, workers {list(matrix.workers)}, "
        f"profiles {', '.join(matrix.profiles)}" + "".join(f"; override {o}" for o in matrix.overrides)
    )
    from gilmatrix.matrix.plan import matrix_warnings

    for warning in matrix_warnings(matrix):
        print(f"warning: {warning}", file=sys.stderr)
    for interp in matrix.interpreters:
        if interp.prefix:
            python = Path(os.path.expanduser(os.path.expandvars(interp.prefix))) / "bin" / "python3"
            if not python.exists():
                print(
                    f"warning: {interp.id}: prefix {interp.prefix} has no bin/python3 on this "
                    "machine: the docker backend cannot build its image here (the local "
                    "backend looks for the interpreter elsewhere)",
                    file=sys.stderr,
                )
    return _validate_user_modules(matrix)


def _validate_user_modules(matrix: Any) -> int:
    """Import every user workload's file in a subprocess of this Python and run two of its
    tasks: a missing function, an import that fails, a task that raises, said with file:line.
    A module it cannot import because a requirement is not installed here is only a note: the
    run installs requirements per interpreter."""
    import tempfile

    from gilmatrix.backends.staging import stage_harness
    from gilmatrix.matrix.usercode import import_check

    user = [w for w in matrix.workloads if w.module is not None]
    if not user:
        return 0
    harness = stage_harness(Path(tempfile.gettempdir()) / f"gilmatrix-harness-{os.getuid()}")
    failed = 0
    for workload in user:
        module = workload.module
        result = import_check(module, harness, workload.params)
        if result["ok"]:
            print(f"{workload.id}: {module.path}: imports; two of its {result['tasks']} tasks ran")
        elif result.get("missing") and workload.requirements:
            print(
                f"{workload.id}: {module.path}: needs {result['missing']!r}, "
                f"which this Python lacks; the run installs {', '.join(workload.requirements)} per "
                "interpreter (if it is not one of them, add it to requirements)"
            )
        else:
            failed += 1
            where = result.get("where") or str(module.path)
            print(f"error: {where}: {workload.id}: {result['error']}", file=sys.stderr)
    return 2 if failed else 0


def cmd_plan(args: argparse.Namespace) -> int:
    from gilmatrix.harness.facts import cpu_topology, format_cpulist
    from gilmatrix.matrix.plan import plan_cells

    matrix = load_args_matrix(args)
    topology = cpu_topology(str(args.sys_root)) if args.sys_root is not None else None
    plan = plan_cells(matrix, args.profile, args.only, topology)
    ci_options = ("runner_labels", "shards", "job_minutes", "replicates", "timings")
    if args.github:
        from gilmatrix.github import emit, parse_runner_labels
        from gilmatrix.run.manifest import read_manifest
        from gilmatrix.shards import plan_shards, recorded_seconds

        ci = plan_shards(
            matrix,
            plan,
            shards=args.shards,
            job_minutes=args.job_minutes,
            replicates=args.replicates,
            runner_labels=parse_runner_labels(args.runner_labels),
            only=args.only,
            recorded=recorded_seconds(read_manifest(args.timings)) if args.timings else None,
        )
        print(json.dumps(emit(ci), indent=1))
        return 0
    given = [name for name in ci_options if getattr(args, name) is not None]
    if given:
        raise UserError(f"--{given[0].replace('_', '-')} goes with --github")
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        json.dump(plan.to_json(), sys.stdout, indent=1)
        print()
        return 0
    pinned = format_cpulist(plan.cpuset) if plan.cpuset else "(not pinned)"
    width = max((len(c.id) for c in plan.cells), default=0)
    for cell in plan.cells:
        if cell.status == "skipped":
            print(f"{cell.interpreter:<6} {cell.id}  skipped: {cell.reason}")
            continue
        tasks = "-" if cell.tasks is None else str(cell.tasks)
        note = f"  ({cell.note})" if cell.note else ""
        print(
            f"{cell.interpreter:<6} {cell.id:<{width}}  workers {cell.workers:>3}  tasks {tasks:>4}  "
            f"cpus {pinned}{note}"
        )
    counts = plan.to_json()["counts"]
    print(f"{counts['planned']} cells planned, {counts['skipped']} skipped (profile {plan.profile.name})")
    for line in machine_lines(plan):
        print(line)
    return 0


def machine_lines(plan: Plan) -> list[str]:
    """What the plan took from the machine: its CPUs and cores, the worker counts it dropped,
    the CPUs placement pins."""
    from gilmatrix.harness.facts import format_cpulist

    topology = plan.topology
    if topology is None:
        return []
    where = "this machine" if topology.root in ("/", os.sep) else f"--sys-root {topology.root}"
    sockets = f"{topology.sockets} socket{'s' * (topology.sockets != 1)}"
    lines = [
        f"machine ({where}): {len(topology.cpus)} usable CPUs on {len(topology.cores)} physical "
        f"cores{' (SMT)' if topology.smt else ''}, {sockets}"
        + (f"; {len(topology.efficiency)} CPUs of efficiency cores" if topology.efficiency else "")
    ]
    kind = "performance" if topology.efficiency else "physical"
    cores = f"{len(topology.physical)} {kind} cores of socket {topology.package}"
    if plan.dropped:
        limit = plan.profile.max_workers
        bound = {"physical-cores": cores, "cpus": f"{len(topology.cpus)} usable CPUs"}.get(str(limit), "")
        lines.append(
            f"worker counts {', '.join(map(str, plan.dropped))} dropped: above max_workers {limit}"
            + (f" = {bound}" if bound else "")
        )
    if plan.cpuset:
        lines.append(
            f"placement {plan.profile.placement}: the run is pinned to {len(plan.cpuset)} CPUs "
            f"{format_cpulist(plan.cpuset)}: one per {kind} core of socket {topology.package}"
            + (" (their SMT siblings stay idle)" if topology.smt else "")
        )
    return lines


def cmd_run(args: argparse.Namespace) -> tuple[int, Path | None]:
    from gilmatrix.run.resume import resumed_settings
    from gilmatrix.run.store import RunDir

    check_faults()
    matrix = load_args_matrix(args)
    profile, only = args.profile, args.only
    settings = {
        "backend": args.backend or "auto",
        "python": dict(args.python),
        "cpuset": args.cpuset,
        "build_profile": args.build_profile or "fast",
    }
    ci = ci_settings(args)
    resume_dir = None
    if args.resume:
        resume_dir = RunDir.open(args.resume)
        resume_dir.check_cells()  # a cut-off cell file: exit 2 now, not a traceback at the end
        manifest = resume_dir.manifest()
        stored = manifest["matrix"]
        profile, only = stored["profile"], stored.get("only") or []
        backend, pythons, cpuset, build_profile = resumed_settings(
            manifest,
            resume_dir.path,
            backend=args.backend,
            pythons=settings["python"],
            cpuset=args.cpuset,
            build_profile=args.build_profile,
        )
        settings = {"backend": backend, "python": pythons, "cpuset": cpuset, "build_profile": build_profile}
        if ci:
            raise UserError("--resume continues a run with its own --shard, --replicate and --run-minutes")
        ci = manifest.get("ci") or {}
        resume_dir.acquire("resume")  # refused at once while another process writes it
    try:
        return _run(args, matrix, profile, only, settings, resume_dir, ci)
    finally:
        if resume_dir is not None:
            resume_dir.release()


def _run(
    args: argparse.Namespace,
    matrix: Matrix,
    profile: str | None,
    only: list[str],
    settings: dict[str, Any],
    resume_dir: RunDir | None,
    ci: dict[str, Any],
) -> tuple[int, Path | None]:
    from gilmatrix.backends import BackendOptions, get_backend
    from gilmatrix.harness.contract import Status
    from gilmatrix.images.sources import images_dir
    from gilmatrix.matrix.plan import plan_cells
    from gilmatrix.run.execute import exit_code, nothing_measured, start_run
    from gilmatrix.run.resume import resume_run

    plan = with_run_minutes(plan_cells(matrix, profile, only), ci.get("run_minutes"))
    for warning in plan.warnings:
        log(f"warning: {warning}")
    if plan.cpuset and not settings["cpuset"]:
        settings["cpuset"] = ",".join(map(str, plan.cpuset))
        smt = plan.topology is not None and plan.topology.smt
        log(
            f"placement: one CPU per physical core, CPUs {settings['cpuset']}"
            + (" (this machine has SMT: their siblings stay idle)" if smt else "")
        )
    options = BackendOptions(
        work_dir=args.out,
        explicit_pythons=settings["python"],
        wheelhouse=args.wheelhouse,
        sources=Path(args.sources) if args.sources else None,
        cpuset=settings["cpuset"],
        build_profile=settings["build_profile"],
        log=log,
        download_base=args.download_base,
        images_dir=images_dir(matrix.path),
    )
    backend = get_backend(settings["backend"], options)
    planned = sum(c.status == Status.PLANNED for c in plan.cells)
    log(
        f"gilmatrix {gilmatrix.__version__}: {backend.name} backend"
        + (" (the run's own)" if resume_dir is not None else "")
        + f", profile {plan.profile.name}, {len(plan.cells)} cells on {len(plan.interpreters)} "
        f"interpreters: {planned} runnable, {len(plan.cells) - planned} not supported"
    )
    if resume_dir is not None:
        code = resume_run(matrix, plan, backend, resume_dir, log=log)
        run_dir = resume_dir
    else:
        run_dir, code = start_run(
            matrix, plan, backend, args.out, only=only, run_id=args.run_id, log=log, ci=ci or None
        )
    manifest = run_dir.manifest()
    counts: dict[str, int] = {}
    for cell in manifest["cells"]:
        counts[cell["status"]] = counts.get(cell["status"], 0) + 1
    log(f"results: {run_dir.path} — " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    code = exit_code(code, counts)
    empty = nothing_measured(plan, manifest) if code == 0 else None
    if empty is not None:
        what, why = empty
        log(
            f"exit 1: no cell was measured: {why}"
            + (_what_would_work(backend.name) if what == "interpreters" else "")
        )
        return 1, run_dir.path
    if code == 1:
        bad = sum(n for s, n in counts.items() if s not in ("ok", "skipped"))
        log(
            f"exit 1: {bad} of {len(manifest['cells'])} cells did not finish ok (see the manifest; "
            f"`gilmatrix run --resume {run_dir.path}` runs them again)"
        )
    return code, run_dir.path


def _what_would_work(backend: str) -> str:
    """What gets interpreters when the ``backend`` could have none of the matrix'."""
    from gilmatrix.backends.local import found_locally

    found = found_locally()
    local = (
        f"CPython {', '.join(found)} on this machine (a matrix can name those)"
        if found
        else "no CPython at all on this machine (install one, e.g. `pyenv install 3.13`)"
    )
    if backend == "local":
        return (
            f". The local backend finds {local}; install the missing ones "
            "(pyenv or uv) or pass --python ID=PATH, or use --backend docker, which builds them"
        )
    return (
        ". The docker backend builds interpreters from CPython source tarballs: give --sources DIR "
        "(a folder of them) or --download-base URL (a mirror laid out like python.org/ftp/python) "
        f"when python.org cannot be reached. Or use --backend local: it finds {local}"
    )


def ci_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a CI bench job is (its shard, replicate, budget), for the manifest's ``ci``."""
    given = {"shard": args.shard, "replicate": args.replicate, "run_minutes": args.run_minutes}
    if args.replicate is not None and args.replicate < 1:
        raise UserError(f"--replicate {args.replicate}: give 1 or more")
    if args.run_minutes is not None and args.run_minutes <= 0:
        raise UserError(f"--run-minutes {args.run_minutes}: give a positive number of minutes")
    if args.shard is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", args.shard):
        raise UserError(f"--shard {args.shard!r}: letters, digits, '.', '_' and '-' only")
    return {k: v for k, v in given.items() if v is not None}


def with_run_minutes(plan: Plan, minutes: float | None) -> Plan:
    """The plan with its profile's run budget set to ``minutes`` (a CI shard's share)."""
    if minutes is None:
        return plan
    precision = plan.profile.precision
    if precision is None:
        raise UserError(
            f"--run-minutes: profile {plan.profile.name} has no precision: (it runs a fixed number "
            "of processes per cell, with no run budget to set)"
        )
    profile = dataclasses.replace(
        plan.profile, precision=dataclasses.replace(precision, run_minutes=float(minutes))
    )
    return dataclasses.replace(plan, profile=profile)


def check_faults() -> None:
    from gilmatrix.harness.faults import ENV, parse_faults

    try:
        parse_faults(os.environ.get(ENV))
    except ValueError as exc:
        raise UserError(str(exc)) from None


def newest_run(out: Path) -> Path:
    runs = sorted((p for p in (out / "results").glob("*/manifest.json")), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise UserError(f"no runs under {out / 'results'}: run `gilmatrix run` first, or name a run folder")
    return runs[-1].parent


def baseline_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--baseline",
        type=Path,
        action="append",
        help="a previous run folder to compare with; repeated (the same cells run again, unchanged; "
        "4 or more advised): the report measures the machine's run-to-run component and adds it to "
        "every test",
    )


def chart_images_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-chart-images",
        dest="chart_images",
        action="store_false",
        help="skip the SVG/PNG copy of every chart (the page draws its charts itself; "
        "rendering the copies is most of the report's time on big runs)",
    )


def cmd_report(
    run_dir: Path | None, out: Path, baseline: Sequence[Path] | None, chart_images: bool = True
) -> int:
    from gilmatrix.run.store import RunDir

    run = RunDir.open(run_dir or newest_run(out))
    for base in baseline or ():
        RunDir.open(base)
    from gilmatrix.reports import build_report

    index = build_report(run.path, out / "report", baseline=baseline, chart_images=chart_images)
    log(f"report: {index}")
    print(index)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from gilmatrix.matrix.model import load_matrix
    from gilmatrix.merge import merge_runs

    expect = [i.strip() for value in args.expect for i in value.replace(" ", ",").split(",") if i.strip()]
    matrix = load_matrix(args.matrix, args.override) if args.matrix else None
    run = merge_runs(
        args.inputs,
        args.out,
        run_id=args.run_id,
        expect=expect,
        matrix=matrix,
        profile=args.profile,
        only=args.only,
        log=log,
    )
    print(run.path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "plan":
            return cmd_plan(args)
        if args.command == "run":
            return cmd_run(args)[0]
        if args.command == "merge":
            return cmd_merge(args)
        if getattr(args, "handler", None) is not None:
            return int(args.handler(args))
        if args.command == "report":
            return cmd_report(args.run_dir, args.out, args.baseline, args.chart_images)
        if args.command == "matrix":
            code, run_dir = cmd_run(args)
            if code in (0, 1) and run_dir is not None:
                report_code = cmd_report(run_dir, args.out, args.baseline, args.chart_images)
                return code or report_code
            return code
        raise AssertionError(args.command)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        from gilmatrix.harness.drive import NO_SPACE, is_no_space

        if not is_no_space(exc):
            raise
        print(f"error: {NO_SPACE} while writing {exc.filename or '?'}: free space there", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
