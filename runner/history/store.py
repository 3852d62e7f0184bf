"""The history: every run kept as it was delivered, and an index to ask it questions fast.

``HISTORY/runs/<run id>/`` holds a run's own files — its ``manifest.json``, each interpreter's
pyperf suite, and the same of each replicate folder of a merged CI run — copied byte for byte
and never rewritten: they are the source of truth, as asv keeps its results. Beside them,
``HISTORY/index.sqlite`` (SQLite: in the standard library, one file a workflow can carry, and
an index on the series key answers a year of weekly runs in milliseconds) holds one row per
run and one per cell, derived from those files by the report's own reader
(gilmatrix.reports.results): it can be deleted and rebuilt (``gilmatrix history reindex``), and
``sync`` (what ``gilmatrix site`` does first) indexes what it lacks — so a workflow carries the
runs in a git branch and the index in a cache, and a stale or missing index costs time only.

What ``add`` does with what it is given:

- a new run: its files copied into a temporary folder, checked (each file read back against the
  digest computed from the source), renamed into place, then indexed in one transaction;
- the same run again (same id, same bytes): nothing changes, and it says so;
- another run under an id the history holds: refused, nothing replaced (give it another id);
- a run whose manifest cannot be read, or one of whose files leads out of its folder, is not a
  regular file or is too large: refused, nothing written;
- a run with failed or missing cells, or whose suite cannot be parsed: kept as it is, its
  readable cells indexed and the rest listed with their reason;
- a run of another matrix (its matrix file's digest differs from the last run's): kept; the
  index records each run's matrix, so that a change point there says so.

Stage: after the run (and the merge of a CI run); before the site.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gilmatrix.errors import UserError
from gilmatrix.images.sources import sha256_file
from gilmatrix.run.manifest import MANIFEST, file_problem, name_problem

SCHEMA_VERSION = 1
INDEX = "index.sqlite"
RUNS = "runs"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    added TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    state TEXT,
    profile TEXT,
    matrix_sha256 TEXT,
    tool_version TEXT,
    machines TEXT,
    floor REAL,
    drift REAL,
    cells_ok INTEGER NOT NULL,
    cells_other INTEGER NOT NULL,
    problems TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    interpreter TEXT NOT NULL,
    workload TEXT NOT NULL,
    executor TEXT NOT NULL,
    workers INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    version TEXT,
    build TEXT,
    image_id TEXT,
    params TEXT,
    machine TEXT,
    mean REAL,
    median REAL,
    ci_low REAL,
    ci_high REAL,
    processes INTEGER,
    proc_sd REAL,
    precision REAL,
    PRIMARY KEY (run_id, interpreter, workload, executor, workers)
);
CREATE INDEX IF NOT EXISTS cells_by_series ON cells (workload, executor, workers, interpreter);
"""


@dataclass(frozen=True, slots=True)
class Added:
    """What ``History.add`` did: ``status`` is "added" or "present" (the same run was there)."""

    status: str
    run_id: str
    path: Path
    cells_ok: int = 0
    cells_other: int = 0
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())


def kept_files(run_dir: Path) -> list[Path]:
    """The files of a run folder the history keeps, relative to it: the manifest, the suites
    its interpreters name, a CI runner's facts, and the same of each replicate folder the
    manifest names. UserError when one cannot be read safely (nothing is kept then)."""
    from gilmatrix.run.manifest import read_manifest

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)  # a UserError names what is wrong with it
    files = [Path(MANIFEST)]
    for entry in (manifest.get("interpreters") or {}).values():
        results = entry.get("results") if isinstance(entry, Mapping) else None
        if results:
            files.append(Path(results))
    if os.path.lexists(run_dir / "github-runner.json"):
        files.append(Path("github-runner.json"))
    replicates = manifest.get("replicates")
    runs = replicates.get("runs") if isinstance(replicates, Mapping) else None
    for rel in (runs or {}).values() if isinstance(runs, Mapping) else ():
        if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise UserError(f"{run_dir}: a replicate folder {str(rel)[:80]!r} is not a path inside the run")
        inner = [Path(rel) / f for f in kept_files(run_dir / rel)]
        files.extend(inner)
    for rel in files:
        problem = file_problem(run_dir / rel, run_dir)
        if problem is not None:
            raise UserError(f"{run_dir / rel}: {problem}: the run is not added (nothing was written)")
    return sorted(dict.fromkeys(files))


def run_digest(run_dir: Path, files: Sequence[Path]) -> str:
    """One digest of the kept files: their names and bytes (what "the same run" means)."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel.as_posix()}\0{sha256_file(run_dir / rel)}\n".encode())
    return digest.hexdigest()


class History:
    """A history folder: ``runs/`` (the runs as delivered) and ``index.sqlite``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs = self.root / RUNS
        self.index_path = self.root / INDEX

    # -- the folder ------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One writer at a time (a second ``add`` waits)."""
        self.runs.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def index(self) -> Iterator[sqlite3.Connection]:
        """The index, in one transaction (committed at the end, rolled back on an error)."""
        db = self.connect()
        try:
            with db:
                yield db
        finally:
            db.close()

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.index_path)
        db.executescript(_SCHEMA)
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        found = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
        if found != str(SCHEMA_VERSION):
            db.close()
            raise UserError(
                f"{self.index_path}: an index of schema {found}, this gilmatrix writes {SCHEMA_VERSION}: "
                "`gilmatrix history reindex` rebuilds it from the runs"
            )
        return db

    def add(self, run_dir: Path) -> Added:
        """Keep ``run_dir`` and index it; see the module's docstring for every case."""
        from gilmatrix.run.manifest import read_manifest

        run_dir = Path(run_dir)
        files = kept_files(run_dir)
        run_id = str(read_manifest(run_dir).get("run_id") or "")
        problem = name_problem(run_id)
        if problem is not None:
            raise UserError(f"{run_dir}: its run id {run_id[:80]!r} {problem}: the run is not added")
        digest = run_digest(run_dir, files)
        with self.locked():
            target = self.runs / run_id
            if target.exists():
                kept = run_digest(target, kept_files(target))
                if kept != digest:
                    raise UserError(
                        f"{run_dir}: the history holds another run with the id {run_id} "
                        f"({target}); nothing was replaced — give this run another id "
                        "(gilmatrix run --run-id, merge --run-id)"
                    )
                with self.index() as db:  # a run copied before an interrupted add: index it
                    present = db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                    if present is None:
                        added = self._index(db, target, digest)
                        return Added("added", run_id, target, *added)
                return Added("present", run_id, target)
            staging = self.runs / f".incoming-{run_id}-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                for rel in files:
                    (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(run_dir / rel, staging / rel)  # the content, never a link
                if run_digest(staging, files) != digest:
                    raise UserError(f"{run_dir}: its files changed while they were copied; nothing was added")
                os.rename(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            with self.index() as db:
                counts = self._index(db, target, digest)
        return Added("added", run_id, target, *counts)

    def kept_runs(self) -> list[Path]:
        """The run folders of ``runs/``, by name (not an add's staging folder)."""
        return sorted(p for p in self.runs.iterdir() if p.is_dir() and not p.name.startswith("."))

    def sync(self) -> tuple[list[str], list[str]]:
        """Bring the index in line with ``runs/``: index the kept runs it lacks or holds with
        another digest, drop the rows of runs no longer kept (e.g. an index restored from a
        cache older than the history it sits in). Returns (runs indexed, runs dropped)."""
        with self.locked():
            kept = self.kept_runs()
            with self.index() as db:
                indexed = dict(db.execute("SELECT run_id, digest FROM runs").fetchall())
                added = []
                for path in kept:
                    digest = run_digest(path, kept_files(path))
                    if indexed.get(path.name) != digest:
                        self._index(db, path, digest)
                        added.append(path.name)
                dropped = sorted(set(indexed) - {p.name for p in kept})
                for run_id in dropped:
                    db.execute("DELETE FROM cells WHERE run_id = ?", (run_id,))
                    db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        return added, dropped

    def reindex(self) -> int:
        """Rebuild the index from ``runs/`` (the source of truth); returns the runs indexed."""
        with self.locked():
            self.index_path.unlink(missing_ok=True)
            with self.index() as db:
                count = 0
                for path in self.kept_runs():
                    self._index(db, path, run_digest(path, kept_files(path)))
                    count += 1
        return count

    # -- the index -------------------------------------------------------------------------

    def _index(
        self, db: sqlite3.Connection, path: Path, digest: str
    ) -> tuple[int, int, tuple[str, ...], tuple[str, ...]]:
        """Index one kept run: (cells ok, other cells, problems, notes)."""
        from gilmatrix.reports.results import load_run
        from gilmatrix.reports.stats import cell_table

        results = load_run(path)
        facts = results.facts
        table = cell_table(results.frame)
        by_interp = {i.id: i for i in results.interpreters}
        rows: list[tuple[Any, ...]] = []
        for r in table.itertuples(index=False):
            interp = by_interp.get(str(r.interpreter))
            rows.append(
                (
                    results.run_id,
                    str(r.interpreter),
                    str(r.workload),
                    str(r.executor),
                    int(r.workers),
                    "ok",
                    None,
                    interp.version if interp else None,
                    interp.build if interp else None,
                    interp.image_id if interp else None,
                    str(r.params),
                    str(getattr(r, "machine", "") or ""),
                    float(r.mean),
                    float(r.median),
                    _finite(r.ci_low),
                    _finite(r.ci_high),
                    int(r.processes),
                    _finite(r.proc_sd),
                    _finite(r.precision),
                )
            )
        measured = {(row[1], f"{row[2]}/{row[3]}/{row[4]}") for row in rows}
        problems = []
        for p in results.problems:
            if p.cell == "*":
                problems.append(f"{p.interpreter}: {p.reason}")
                continue
            if (p.interpreter, p.cell) in measured:
                continue
            workload, executor, workers = _cell_parts(p.cell)
            if workload is None:
                problems.append(f"{p.interpreter} {p.cell}: {p.reason}")
                continue
            interp = by_interp.get(p.interpreter)
            rows.append(
                (results.run_id, p.interpreter, workload, executor, workers, p.status, p.reason,
                 interp.version if interp else None, interp.build if interp else None,
                 interp.image_id if interp else None, None, None, None, None, None, None, None, None, None)
            )  # fmt: skip
        ok = len(measured)
        machines = sorted({str(m) for m in table["machine"]} - {""}) if "machine" in table else []
        notes = []
        last = db.execute(
            "SELECT run_id, matrix_sha256 FROM runs WHERE started <= ? ORDER BY started DESC LIMIT 1",
            (facts.started,),
        ).fetchone()
        if last is not None and last[1] != facts.matrix_sha256:
            notes.append(f"its matrix differs from the one of {last[0]} (the run before it)")
        db.execute("DELETE FROM cells WHERE run_id = ?", (results.run_id,))
        db.execute("DELETE FROM runs WHERE run_id = ?", (results.run_id,))
        db.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                results.run_id,
                digest,
                datetime.now(UTC).isoformat(timespec="seconds"),
                facts.started,
                facts.finished,
                facts.state,
                facts.profile,
                facts.matrix_sha256,
                str(facts.tool.get("version") or ""),
                json.dumps(machines),
                facts.floor,
                _finite(facts.noise.get("drift")),
                ok,
                len(rows) - ok,
                json.dumps(problems),
            ),
        )
        db.executemany(f"INSERT INTO cells VALUES ({', '.join('?' * 19)})", rows)
        return ok, len(rows) - ok, tuple(problems), tuple(notes)

    # -- questions -------------------------------------------------------------------------

    def runs_table(self) -> list[dict[str, Any]]:
        """Every run, oldest first, as the index holds it."""
        if not self.index_path.exists():
            return []
        with self.index() as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM runs ORDER BY started, run_id")]

    def series(
        self,
        workload: str | None = None,
        executor: str | None = None,
        workers: int | None = None,
        interpreter: str | None = None,
    ) -> list[dict[str, Any]]:
        """The cells of every run matching the filters, with their run's start and floor, in
        run order: the series of the history pages and of change point detection."""
        where, values = [], []
        for column, value in (
            ("workload", workload),
            ("executor", executor),
            ("workers", workers),
            ("interpreter", interpreter),
        ):
            if value is not None:
                where.append(f"c.{column} = ?")
                values.append(value)
        query = (
            "SELECT c.*, r.started, r.floor, r.drift, r.matrix_sha256, r.tool_version FROM cells c "
            "JOIN runs r USING (run_id)"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY c.workload, c.executor, c.workers, c.interpreter, r.started, c.run_id"
        )
        if not self.index_path.exists():
            return []
        with self.index() as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(query, values)]


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _cell_parts(cell: str) -> tuple[str | None, str | None, int | None]:
    from gilmatrix.harness.contract import CellId

    parsed = CellId.maybe(cell)
    return (None, None, None) if parsed is None else (parsed.workload, parsed.executor, parsed.workers)
