"""`gilmatrix history` (keep runs in a history folder, list them, rebuild its index) and
`gilmatrix site` (the history's static site)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

DEFAULT = Path("_build") / "history"


def history_args(subparsers: Any) -> argparse.ArgumentParser:
    """Add `gilmatrix history add|list|reindex`; the handler is ``args.handler(args)``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "history",
        help="keep runs in a history folder (add), list them, rebuild its index",
        description="The history: every run kept as delivered (manifest and pyperf suites, never "
        "rewritten) under HISTORY/runs/, and an SQLite index of its cells (HISTORY/index.sqlite).",
    )
    _history_arg(parser)
    commands = parser.add_subparsers(dest="history_command", required=True)
    add = commands.add_parser("add", help="keep run folders in the history and index them")
    add.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    commands.add_parser("list", help="the runs of the history, oldest first")
    commands.add_parser("reindex", help="rebuild the index from the kept runs")
    parser.set_defaults(handler=history_command)
    return parser


def history_folder(args: argparse.Namespace) -> Path:
    return Path(args.history or os.environ.get("GILMATRIX_HISTORY") or DEFAULT)


def _history_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--history",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"the history folder (default: $GILMATRIX_HISTORY, else {DEFAULT})",
    )


def site_args(subparsers: Any) -> argparse.ArgumentParser:
    """Add `gilmatrix site`; the handler is ``args.handler(args)``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "site",
        help="build the history's static site: change points, every run's report, the series",
        description="One static, offline site from a history folder: index.html (change points, "
        "newest first, and every run), runs/<run id>/ (each run's report, built again only when "
        "the run changed) and history.html (every series on one chart, with filters).",
    )
    _history_arg(parser)
    parser.add_argument("--out", type=Path, default=Path("_build") / "site", metavar="DIR",
                        help="where the site goes (default: _build/site)")  # fmt: skip
    parser.add_argument("--no-reports", action="store_true", help="the history pages only, no run reports")
    parser.add_argument(
        "--fdr",
        type=float,
        default=0.05,
        metavar="Q",
        help="the false discovery rate: the share of the listed change points that may be noise "
        "(default 0.05)",
    )
    parser.set_defaults(handler=site_command)
    return parser


def site_command(args: argparse.Namespace) -> int:
    from gilmatrix.errors import UserError
    from gilmatrix.history.site import build_site
    from gilmatrix.history.store import History

    if not 0.0 < args.fdr < 0.5:
        raise UserError(f"--fdr {args.fdr}: give a share between 0 and 0.5 (e.g. 0.05)")
    root = history_folder(args)
    history = History(root)
    if not history.runs.is_dir() or not history.kept_runs():
        raise UserError(f"{root}: no run in the history (add runs with `gilmatrix history add RUN_DIR`)")
    added, dropped = history.sync()
    if added or dropped:
        print(f"index of {root}: {len(added)} runs indexed, {len(dropped)} no longer kept dropped")
    build_site(history, args.out, reports=not args.no_reports, q=args.fdr)
    return 0


def history_command(args: argparse.Namespace) -> int:
    from gilmatrix.errors import UserError
    from gilmatrix.history.store import History

    root = history_folder(args)
    history = History(root)
    if args.history_command == "add":
        refused = 0
        for run_dir in args.runs:
            try:
                added = history.add(run_dir)
            except UserError as exc:
                print(f"error: {exc}")
                refused += 1
                continue
            if added.status == "present":
                print(f"{added.run_id}: already in the history ({added.path}); nothing changed")
                continue
            print(
                f"{added.run_id}: added ({added.path}): {added.cells_ok} cells measured"
                + (f", {added.cells_other} without a result" if added.cells_other else "")
            )
            for line in (*added.problems, *added.notes):
                print(f"   {line}")
        return 2 if refused else 0
    if args.history_command == "reindex":
        print(f"{history.reindex()} runs indexed in {history.index_path}")
        return 0
    runs = history.runs_table()
    if not runs:
        print(f"{root}: no run in the history")
    for run in runs:
        print(
            f"{run['run_id']}  {run['started'] or '?'}  {run['state']}  {run['cells_ok']} cells"
            + (f" (+{run['cells_other']} without a result)" if run["cells_other"] else "")
            + f"  floor {100 * (run['floor'] or 0):.1f}%"
        )
    return 0
