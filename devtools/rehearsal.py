"""Rehearse ``.github/workflows/matrix.yml`` on this machine: its jobs' own steps, in order.

Not a re-implementation of the jobs: the workflow file is read and each ``run:`` step's script
runs under bash as GitHub runs it (``bash -eo pipefail``), with the step's ``env:`` evaluated
from the same expressions. What GitHub provides is emulated, so the commands are the same ones:

- every job gets its own workspace, a copy of this work tree (``actions/checkout``);
- ``actions/setup-python``: one venv for the rehearsal that also sees this environment's
  packages, so the jobs' ``pip install .`` installs gilmatrix alone, offline;
- artifacts are folders under ``OUT/artifacts/<name>``; the Actions cache is a folder per key
  under ``OUT/cache`` (a restore hits what a save stored earlier in the rehearsal, or in an
  earlier one given ``--cache DIR``; ``restore-keys`` the newest entry with that prefix); Pages
  "deploys" by pointing at the uploaded page;
- GitHub's git server (``github.server_url``) is a bare repository under ``OUT/remote``, kept
  from one rehearsal to the next: the report job's history branch grows run by run, as it does;
- every job gets its own runner name (``RUNNER_NAME``), as GitHub's runners have, so the merge
  sees each job as the runner it stands for; ``--slow-replicate N --slow-cpus C`` runs the bench
  jobs of replicate N with a CPU quota on their containers (``$GILMATRIX_DOCKER_CPUS``): a
  slower runner, to see what the report says of replicates that disagree;
- ``$GITHUB_OUTPUT``, ``$GITHUB_STEP_SUMMARY`` and the ``${{ }}`` expressions the workflow
  uses (contexts, ==, !=, &&, ||, !, always(), toJSON, fromJSON, hashFiles); an expression or
  action it does not know stops the rehearsal, so the workflow cannot drift from it silently.

``python -m devtools.rehearsal --profile smoke`` (what ``nox -s ci-rehearsal`` runs) uses
the local backend (``--backend auto``: docker when an engine answers). ``--backend docker``
replays the bench job as GitHub runs it: a non-editable ``pip install .``, the image step
(``gilmatrix images``), the cells in containers, the image saved for the cache; without
python.org, add ``--override examples/offline-mirror.yaml --sources DIR``.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import venv
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from gilmatrix.backends.local import purelib_of

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "matrix.yml"
_IGNORED = shutil.ignore_patterns(
    ".git", "_build", ".nox", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", "build"
)


class RehearsalError(Exception):
    pass


# -- expressions ----------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||[!()\[\],.])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise RehearsalError(f"expression {text!r}: cannot read it at {text[pos:]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class Expression:
    """A recursive-descent evaluator for the part of GitHub's expression language in use."""

    def __init__(
        self, text: str, context: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]
    ) -> None:
        self.text, self.tokens, self.pos = text, _tokens(text), 0
        self.context, self.functions = context, functions

    def value(self) -> Any:
        result = self._or()
        if self.pos != len(self.tokens):
            raise RehearsalError(f"expression {self.text!r}: unexpected {self.tokens[self.pos][1]!r}")
        return result

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise RehearsalError(f"expression {self.text!r}: ends too early")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def _or(self) -> Any:
        left = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            left = left or right
        return left

    def _and(self) -> Any:
        left = self._cmp()
        while self._peek() == "&&":
            self._take()
            right = self._cmp()
            left = left and right
        return left

    def _cmp(self) -> Any:
        left = self._unary()
        while self._peek() in ("==", "!="):
            op = self._take()[1]
            right = self._unary()
            same = _loose(left) == _loose(right)
            left = same if op == "==" else not same
        return left

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not self._unary()
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if text == "(":
            value = self._or()
            self._expect(")")
            return value
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind != "name":
            raise RehearsalError(f"expression {self.text!r}: unexpected {text!r}")
        if text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        if self._peek() == "(":
            self._take()
            args = []
            while self._peek() != ")":
                args.append(self._or())
                if self._peek() == ",":
                    self._take()
            self._expect(")")
            if text not in self.functions:
                raise RehearsalError(f"expression {self.text!r}: function {text}() not rehearsed")
            return self.functions[text](*args)
        if text not in self.context:
            raise RehearsalError(f"expression {self.text!r}: context {text!r} not rehearsed")
        value = self.context[text]
        while self._peek() in (".", "["):
            if self._take()[1] == ".":
                key = self._take()[1]
            else:
                key = self._or()
                self._expect("]")
            value = value.get(key) if isinstance(value, Mapping) else None
        return value

    def _expect(self, token: str) -> None:
        if self._take()[1] != token:
            raise RehearsalError(f"expression {self.text!r}: expected {token!r}")


def _loose(value: Any) -> Any:
    """GitHub compares loosely: booleans, numbers and numeric strings as numbers."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            return float(value) if value.strip() else 0
        except ValueError:
            return value.lower()
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


_TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.S)


# -- the runner -----------------------------------------------------------------------------


class Rehearsal:
    def __init__(
        self,
        workflow: Path,
        source: Path,
        out: Path,
        inputs: Mapping[str, Any],
        env: Mapping[str, str],
        log: Callable[[str], None] = print,
    ) -> None:
        self.spec = yaml.safe_load(workflow.read_text())
        self.source, self.out, self.log = source, out.resolve(), log
        self.inputs, self.extra_env = dict(inputs), dict(env)
        self.cache = self.out / "cache"
        self.remote = self.out / "remote"  # github.server_url: remote/local/rehearsal.git
        self.job_env: dict[tuple[str, str, str], dict[str, str]] = {}  # (job, key, value) -> env
        self.run_id = str(int(time.time()))
        self.needs: dict[str, dict[str, Any]] = {}
        self.python_bin: Path | None = None
        self.commands: list[tuple[str, str]] = []  # (job, step name) of every step that ran

    # expressions
    def evaluate(self, text: Any, ctx: Mapping[str, Any]) -> Any:
        if not isinstance(text, str):
            return text
        whole = _TEMPLATE.fullmatch(text.strip())
        if whole and "}}" not in whole.group(1):  # one expression, not "${{ a }}-${{ b }}"
            return Expression(whole.group(1), ctx, self._functions(ctx)).value()
        return _TEMPLATE.sub(lambda m: _text(Expression(m.group(1), ctx, self._functions(ctx)).value()), text)

    def condition(self, text: Any, ctx: Mapping[str, Any]) -> bool:
        if text is None:
            return bool(ctx["_success"])
        if isinstance(text, bool):
            return text
        text = text.strip()
        whole = _TEMPLATE.fullmatch(text)
        expr = whole.group(1) if whole else text
        uses_status = re.search(r"\b(always|failure|success|cancelled)\(", expr)
        value = bool(Expression(expr, ctx, self._functions(ctx)).value())
        return value if uses_status else value and bool(ctx["_success"])

    def _functions(self, ctx: Mapping[str, Any]) -> dict[str, Callable[..., Any]]:
        workspace = ctx.get("_workspace")
        return {
            "always": lambda: True,
            "success": lambda: bool(ctx["_success"]),
            "failure": lambda: not ctx["_success"],
            "cancelled": lambda: False,
            "toJSON": lambda v: json.dumps(v, indent=2),
            "fromJSON": lambda v: json.loads(v),
            "hashFiles": lambda *patterns: _hash_files(Path(workspace or "."), patterns),
        }

    # jobs
    def run(self) -> int:
        for child in ("artifacts", "jobs", "python"):
            shutil.rmtree(self.out / child, ignore_errors=True)
        (self.out / "artifacts").mkdir(parents=True)
        repository = self.remote / "local" / "rehearsal.git"
        if not repository.exists():  # kept between rehearsals, as the repository on GitHub is
            subprocess.run(["git", "init", "--quiet", "--bare", str(repository)], check=True)
        code = 0
        for job_id, job in self.spec["jobs"].items():
            needs = job.get("needs") or []
            needs = [needs] if isinstance(needs, str) else needs
            ctx = self._context(
                {"needs": {n: self.needs.get(n, {"result": "skipped", "outputs": {}}) for n in needs}},
                success=all(self.needs.get(n, {}).get("result") == "success" for n in needs),
            )
            if not self.condition(job.get("if"), ctx):
                self.log(f"\n=== job {job_id}: skipped (if: {job.get('if')})")
                self.needs[job_id] = {"result": "skipped", "outputs": {}}
                continue
            strategy = job.get("strategy") or {}
            if "matrix" in strategy:
                matrix = self.evaluate(strategy["matrix"], ctx)
                entries = matrix.get("include") or []
            else:
                entries = [None]
            results: list[Any] = []
            outputs: dict[str, Any] = {}
            for entry in entries:
                result, outputs = self.run_job(job_id, job, {**ctx, "matrix": entry or {}})
                results.append(result)
            result = "success" if all(r == "success" for r in results) else "failure"
            self.needs[job_id] = {"result": result, "outputs": outputs}
            code = code or (0 if result == "success" else 1)
        return code

    def _context(self, extra: Mapping[str, Any], success: bool = True) -> dict[str, Any]:
        return {
            "github": {
                "run_id": self.run_id,
                "run_attempt": "1",
                "event_name": "workflow_dispatch",
                "ref": "refs/heads/main",
                "repository": "local/rehearsal",
                # the stand-in for GitHub's git server: a bare repository kept under OUT
                "server_url": self.remote.as_uri(),
                "token": "rehearsal-token",
            },
            "inputs": self.inputs,
            "runner": {"os": "Linux", "arch": "X64"},
            "env": {},
            "matrix": {},
            "steps": {},
            "needs": {},
            "_success": success,
            **extra,
        }

    def run_job(self, job_id: str, job: Mapping[str, Any], ctx: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = self.evaluate(job.get("name", job_id), ctx)
        workspace = self.out / "jobs" / re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name))
        shutil.rmtree(workspace, ignore_errors=True)
        workspace.mkdir(parents=True)
        ctx = {**ctx, "steps": {}, "_workspace": workspace, "_success": True}
        env = {k: _text(self.evaluate(v, ctx)) for k, v in (self.spec.get("env") or {}).items()}
        env.update(self.extra_env)
        ctx["env"] = dict(env)
        env.update({k: _text(self.evaluate(v, ctx)) for k, v in (job.get("env") or {}).items()})
        for (job_name, key, value), extra in self.job_env.items():
            if job_name == job_id and str((ctx.get("matrix") or {}).get(key)) == value:
                env.update(extra)
        env["RUNNER_NAME"] = f"{socket.gethostname()}-rehearsal-{workspace.name}"
        ctx["env"] = dict(env)
        runs_on = self.evaluate(job.get("runs-on"), ctx)
        self.log(f"\n=== job {name} (runs-on {runs_on}; here: {workspace})")
        summary = workspace.parent / f"{workspace.name}.summary.md"
        for index, step in enumerate(job.get("steps") or []):
            label = step.get("name") or step.get("uses") or f"step {index + 1}"
            if not self.condition(step.get("if"), ctx):
                self.log(f"--- {label}: skipped")
                continue
            step_env = {
                **env,
                **{
                    k: _text(self.evaluate(v, {**ctx, "env": env}))
                    for k, v in (step.get("env") or {}).items()
                },
            }
            self.log(f"--- {label}")
            try:
                outputs = (
                    self.run_script(step["run"], step_env, workspace, summary)
                    if "run" in step
                    else self.use(step, ctx, workspace)
                )
                outcome = "success"
            except RehearsalError as exc:
                self.log(f"    failed: {exc}")
                outputs, outcome = {}, "failure"
            self.commands.append((job_id, label))
            if "id" in step:
                ctx["steps"][step["id"]] = {"outputs": outputs, "outcome": outcome}
            if outcome == "failure" and not step.get("continue-on-error"):
                ctx["_success"] = False
        result = "success" if ctx["_success"] else "failure"
        outputs = {k: _text(self.evaluate(v, ctx)) for k, v in (job.get("outputs") or {}).items()}
        self.log(f"=== job {name}: {result}" + (f" (summary: {summary})" if summary.exists() else ""))
        return result, outputs

    def run_script(
        self, script: str, env: Mapping[str, str], workspace: Path, summary: Path
    ) -> dict[str, str]:
        if "${{" in script:
            raise RehearsalError("a run: script with ${{ }} in it: pass values through env:")
        output = workspace.parent / f"{workspace.name}.output"
        output.write_text("")
        full_env = {
            **os.environ,
            **env,
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_RUN_ID": self.run_id,
            "GITHUB_WORKSPACE": str(workspace),
            "CI": "true",
            "RUNNER_OS": "Linux",
            "RUNNER_ENVIRONMENT": "local-rehearsal",
        }
        if self.python_bin is not None:
            full_env["PATH"] = f"{self.python_bin}{os.pathsep}{full_env.get('PATH', '')}"
            full_env["VIRTUAL_ENV"] = str(self.python_bin.parent)
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=workspace, env=full_env
        )
        if proc.returncode != 0:
            raise RehearsalError(f"exit code {proc.returncode}")
        return _read_outputs(output.read_text())

    def use(self, step: Mapping[str, Any], ctx: Mapping[str, Any], workspace: Path) -> dict[str, str]:
        action = str(step["uses"]).split("@")[0]
        args = {k: _text(self.evaluate(v, ctx)) for k, v in (step.get("with") or {}).items()}
        artifacts = self.out / "artifacts"
        if action == "actions/checkout":
            shutil.copytree(self.source, workspace, ignore=_IGNORED, dirs_exist_ok=True)
        elif action == "actions/setup-python":
            self._setup_python()
        elif action == "actions/cache/restore":
            key = args.get("key", "")
            stored = self.cache / _cache_name(key)
            if stored.is_dir():
                shutil.copytree(stored, workspace / args["path"], dirs_exist_ok=True)
                self.log(f"    cache hit: {key}")
                return {"cache-hit": "true", "cache-primary-key": key, "cache-matched-key": key}
            # restore-keys: the newest entry whose key starts with one of them, as GitHub does
            for prefix in (line.strip() for line in args.get("restore-keys", "").splitlines()):
                matches = sorted(
                    (p for p in self.cache.glob("*.key") if prefix and p.read_text().startswith(prefix)),
                    key=lambda p: p.stat().st_mtime_ns,
                )
                if matches:
                    matched = matches[-1].read_text()
                    shutil.copytree(matches[-1].with_suffix(""), workspace / args["path"], dirs_exist_ok=True)
                    self.log(f"    cache restored from {matched} (restore-keys {prefix})")
                    return {"cache-hit": "false", "cache-primary-key": key, "cache-matched-key": matched}
            self.log(f"    cache miss: {key}")
            return {"cache-hit": "false", "cache-primary-key": key}
        elif action == "actions/cache/save":
            key, path = args.get("key", ""), workspace / args["path"]
            if not key or not path.exists():
                raise RehearsalError(f"cache save: no key or nothing at {args.get('path')}")
            stored = self.cache / _cache_name(key)
            if not stored.exists():  # a key is written once, as on GitHub
                shutil.copytree(path, stored)
                stored.with_suffix(".key").write_text(key)
                self.log(f"    cached {args['path']} as {key}")
        elif action in ("actions/upload-artifact", "actions/upload-pages-artifact"):
            name = args.get("name") or "github-pages"
            path = workspace / args["path"]
            if not path.exists():
                if args.get("if-no-files-found", "warn") == "error":
                    raise RehearsalError(f"upload {name}: {args['path']} does not exist")
                self.log(f"    warning: no files at {args['path']}: nothing uploaded as {name}")
                return {}
            if (artifacts / name).exists():
                raise RehearsalError(f"an artifact named {name} exists already")
            if path.is_dir():
                shutil.copytree(path, artifacts / name)
            else:  # one file: the artifact holds it at its root
                (artifacts / name).mkdir(parents=True)
                shutil.copy2(path, artifacts / name / path.name)
            self.log(f"    uploaded {args['path']} as artifact {name}")
        elif action == "actions/download-artifact":
            pattern, target = args.get("pattern") or args.get("name") or "*", workspace / args["path"]
            found = sorted(artifacts.glob(pattern))
            for artifact in found:
                shutil.copytree(artifact, target / artifact.name)
            self.log(f"    downloaded {len(found)} artifacts ({pattern}) into {args['path']}")
        elif action == "actions/deploy-pages":
            page = artifacts / "github-pages" / "index.html"
            if not page.is_file():
                raise RehearsalError("no github-pages artifact with an index.html to deploy")
            self.log(f"    would deploy {page.parent} to GitHub Pages")
            return {"page_url": page.as_uri()}
        else:
            raise RehearsalError(f"action {action} is not rehearsed: teach devtools/rehearsal.py")
        return {}

    def _setup_python(self) -> None:
        if self.python_bin is not None:
            return
        env_dir = self.out / "python"
        venv.EnvBuilder(with_pip=False, clear=True).create(env_dir)
        # This environment's packages stay visible (a .pth line), so `pip install .` in the jobs
        # installs gilmatrix alone, from the workspace, without the network.
        purelib = str(purelib_of(str(env_dir / "bin" / "python")))
        import sysconfig

        parent = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        Path(purelib, "_gilmatrix_rehearsal.pth").write_text("\n".join(sorted(parent)) + "\n")
        self.python_bin = env_dir / "bin"
        self.log(f"    python: a venv of {sys.executable} at {env_dir}")


def _cache_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _read_outputs(text: str) -> dict[str, str]:
    outputs, lines = {}, iter(text.splitlines())
    for line in lines:
        if "<<" in line and "=" not in line.split("<<")[0]:
            key, marker = line.split("<<", 1)
            outputs[key] = "\n".join(iter(lambda: next(lines), marker))
        elif "=" in line:
            key, value = line.split("=", 1)
            outputs[key] = value
    return outputs


def _hash_files(workspace: Path, patterns: tuple[str, ...]) -> str:
    files = sorted(
        {
            p
            for pattern in patterns
            for p in glob.glob(str(workspace / pattern), recursive=True)
            if os.path.isfile(p)
        }
    )
    if not files:
        return ""
    digest = hashlib.sha256()
    for path in files:
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.rehearsal", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--workflow", type=Path, default=WORKFLOW)
    parser.add_argument("--source", type=Path, default=ROOT, help="work tree to check out")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "ci-rehearsal")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--only", default="", help="the workflow's `only` input (comma-separated)")
    parser.add_argument("--runner-labels", default="")
    parser.add_argument("--shards", default="", help="the workflow's `shards` input")
    parser.add_argument("--replicates", default="", help="the workflow's `replicates` input")
    parser.add_argument(
        "--cache",
        type=Path,
        help="keep the emulated Actions cache in DIR (default: OUT/cache, new each time)",
    )
    parser.add_argument(
        "--slow-replicate", type=int, metavar="N", help="run replicate N's bench jobs with a CPU quota"
    )
    parser.add_argument(
        "--slow-cpus", default="1", metavar="C", help="the quota of --slow-replicate, in CPUs (default: 1)"
    )
    parser.add_argument("--backend", default="local", choices=("local", "auto", "docker"))
    parser.add_argument(
        "--override",
        default="",
        metavar="FILE",
        help="an override file for every job's gilmatrix ($GILMATRIX_OVERRIDE; "
        "a relative path is found in each job's checkout), e.g. "
        "examples/offline-mirror.yaml where python.org is out of reach",
    )
    parser.add_argument(
        "--sources",
        type=Path,
        metavar="DIR",
        help="an offline folder of CPython tarballs for the image step ($GILMATRIX_SOURCES)",
    )
    args = parser.parse_args(argv)
    env = {"GILMATRIX_BACKEND": args.backend}
    if args.override:
        env["GILMATRIX_OVERRIDE"] = args.override
    if args.sources:
        env["GILMATRIX_SOURCES"] = str(args.sources.resolve())
    rehearsal = Rehearsal(
        args.workflow,
        args.source.resolve(),
        args.out,
        inputs={
            "profile": args.profile,
            "only": args.only,
            "runner_labels": args.runner_labels,
            "shards": args.shards,
            "replicates": args.replicates,
            "deploy": True,
        },
        env=env,
    )
    if args.cache:
        rehearsal.cache = args.cache.resolve()
    else:
        shutil.rmtree(rehearsal.cache, ignore_errors=True)
    if args.slow_replicate:
        rehearsal.job_env[("bench", "replicate", str(args.slow_replicate))] = {
            "GILMATRIX_DOCKER_CPUS": args.slow_cpus
        }
    started = time.monotonic()
    try:
        code = rehearsal.run()
    except RehearsalError as exc:
        print(f"rehearsal stopped: {exc}", file=sys.stderr)
        return 2
    results = ", ".join(f"{job} {info['result']}" for job, info in rehearsal.needs.items())
    print(
        f"\nrehearsal of {args.workflow.name}: {results} in {time.monotonic() - started:.0f} s; "
        f"report: {args.out / 'artifacts' / 'report' / 'index.html'}"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
