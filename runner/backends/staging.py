"""The harness' files, as shipped into interpreter environments (local venvs, docker images)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import gilmatrix

PACKAGE_ROOT = Path(gilmatrix.__file__).resolve().parent  # runner/ in a checkout
PACKAGE = "gilmatrix"  # the import name: the harness runs as ``python -m gilmatrix.harness``


def harness_files() -> list[Path]:
    """``gilmatrix/__init__.py`` and ``gilmatrix/harness/*.py``: all an interpreter needs of gilmatrix."""
    return [PACKAGE_ROOT / "__init__.py", *sorted((PACKAGE_ROOT / "harness").glob("*.py"))]


def harness_digest() -> str:
    digest = hashlib.sha256()
    for path in harness_files():
        digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def stage_harness(dest_root: Path) -> Path:
    """Copy the harness into ``dest_root/<digest>/gilmatrix/...``; return the folder to put on sys.path.

    Content-addressed, so an edited harness never runs from a stale copy.
    """
    target = dest_root / harness_digest()[:16]
    if not (target / PACKAGE / "harness" / "__main__.py").exists():
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for path in harness_files():
            dest = tmp / PACKAGE / path.relative_to(PACKAGE_ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target
