"""``python -m gilmatrix.harness {serve,run,facts}``: the harness' entry point in each interpreter."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gilmatrix.harness")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        (
            "serve",
            "run worker processes of a job's cells as the host asks (one JSON command per line on stdin)",
        ),
        ("run", "run a job's cells one after the other, fixed processes each"),
    ):
        run = commands.add_parser(name, help=text)
        run.add_argument("--job", required=True, help="job file (JSON) written by the host")
        run.add_argument("--out", required=True, help="run directory; cells go below OUT/cells/")
    commands.add_parser("facts", help="print this interpreter's build facts as JSON")
    args = parser.parse_args(argv)
    if args.command == "facts":
        from gilmatrix.harness.facts import main as facts_main

        return facts_main()
    from gilmatrix.harness.drive import run_job

    return run_job(args.job, args.out, serve=args.command == "serve")


if __name__ == "__main__":
    sys.exit(main())
