"""`gilmatrix images`: build (or find up to date) one Docker image per matrix interpreter (its
arguments are defined with the other commands', in gilmatrix.cli)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from typing import Any

from gilmatrix.images import docker as dk
from gilmatrix.images.build import IMAGE_REPO, ImageBuilder, ImageResult, build_images


def images_command(args: argparse.Namespace) -> int:
    from gilmatrix.images.sources import images_dir
    from gilmatrix.matrix.model import load_matrix

    matrix = load_matrix(args.matrix, args.override)
    wanted = list(matrix.interpreters)
    if args.only:
        known = {i.id for i in wanted}
        unknown = [i for i in args.only if i not in known]
        if unknown:
            from gilmatrix.errors import UserError

            raise UserError(
                f"--only {unknown[0]}: not an interpreter of {args.matrix} ({', '.join(sorted(known))})"
            )
        wanted = [i for i in wanted if i.id in args.only]
    builder = ImageBuilder(
        work_dir=args.out,
        build_profile=args.build_profile,
        sources=args.sources,
        wheelhouse=args.wheelhouse,
        download_base=args.download_base,
        images_dir=images_dir(matrix.path),
        bootstrap_base=True if args.bootstrap_base else None,
        log=_stderr,
    )
    started = time.monotonic()
    results = build_images(wanted, builder)
    summary = format_summary(results, time.monotonic() - started)
    if args.tags:
        _stderr(summary)
        print("\n".join(r.tag for r in results if r.ok and r.tag))
    else:
        print(summary)
    if args.prune and builder.client is not None:
        for tag in prune_superseded(builder.client, results):
            _stderr(f"removed superseded {tag}")
    if args.json:
        print(json.dumps([_result_json(r) for r in results], indent=2))
    return 0 if all(r.ok for r in results) else 1


def superseded_tags(tags: Iterable[str], current: str) -> list[str]:
    """Tags of ``current``'s interpreter and profile with another inputs hash."""
    stem = current.rsplit("-", 1)[0] + "-"
    return sorted(
        t
        for t in tags
        if t != current
        and t.startswith(stem)
        and len(t) == len(current)
        and all(c in "0123456789abcdef" for c in t[len(stem) :])
    )


def prune_superseded(client: dk.Client, results: Iterable[ImageResult]) -> list[str]:
    """Untag (and so free, when nothing else uses them) older builds of the images just ensured."""
    listed = dk.docker(client, "images", IMAGE_REPO, "--format", "{{.Repository}}:{{.Tag}}")
    tags = listed.stdout.split()
    removed = []
    for result in results:
        if result.ok and result.tag:
            for tag in superseded_tags(tags, result.tag):
                if dk.docker(client, "rmi", tag, check=False).returncode == 0:
                    removed.append(tag)
    return removed


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def format_summary(results: list[ImageResult], seconds: float) -> str:
    lines = [f"{'interpreter':<12} {'status':<7} {'seconds':>8} {'size':>7}  image"]
    for r in results:
        size = f"{r.size_bytes / 1e6:.0f}MB" if r.size_bytes else "-"
        lines.append(
            f"{r.interpreter_id:<12} {r.status:<7} {r.seconds:>8.1f} {size:>7}  "
            f"{r.tag or (r.error or '').splitlines()[0]}"
        )
    built = sum(r.status == "built" for r in results)
    failed = sum(r.status == "failed" for r in results)
    lines.append(
        f"{len(results)} images: {built} built, {len(results) - built - failed} up to "
        f"date, {failed} failed, in {seconds:.1f} s"
    )
    return "\n".join(lines)


def _result_json(r: ImageResult) -> dict[str, Any]:
    return {
        "interpreter": r.interpreter_id,
        "status": r.status,
        "tag": r.tag,
        "image_id": r.image_id,
        "python": r.python,
        "seconds": round(r.seconds, 1),
        "size_bytes": r.size_bytes,
        "log": str(r.log_path) if r.log_path else None,
        "error": r.error,
        **dict(r.details),
    }
