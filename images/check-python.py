"""Build-time check of a gilmatrix image (runs as the unprivileged user, on CPython 3.10+).

usage: check-python.py EXPECTED_VERSION FREE_THREADED(0|1)

Fails (exit 1, one line per problem) unless the interpreter reports EXPECTED_VERSION, is the
expected GIL build (free-threaded: Py_GIL_DISABLED == 1 and sys._is_gil_enabled() is False, also
after importing pyperf and psutil, whose C extension would re-enable the GIL if it did not declare
free-threading support), and can import what the harness and its workloads use. Prints what it
found as one JSON line for the build log.
"""

import importlib
import json
import platform
import sys
import sysconfig


def gil_enabled():
    probe = getattr(sys, "_is_gil_enabled", None)
    return None if probe is None else bool(probe())


def main(argv):
    expected, free_threaded = argv[1], argv[2] == "1"
    problems = []
    found = {
        "version": platform.python_version(),
        "executable": sys.executable,
        "py_gil_disabled": sysconfig.get_config_var("Py_GIL_DISABLED"),
        "gil_enabled_at_start": gil_enabled(),
        "config_args": sysconfig.get_config_var("CONFIG_ARGS"),
    }
    if found["version"] != expected:
        problems.append("version is %s, expected %s" % (found["version"], expected))
    if free_threaded:
        if found["py_gil_disabled"] != 1:
            problems.append(
                "Py_GIL_DISABLED is %r, expected 1 (--disable-gil build)" % (found["py_gil_disabled"],)
            )
        if found["gil_enabled_at_start"] is not False:
            problems.append(
                "sys._is_gil_enabled() is %r at start, expected False" % (found["gil_enabled_at_start"],)
            )
    elif found["py_gil_disabled"]:
        problems.append(
            "Py_GIL_DISABLED is %r in a build that should have the GIL" % (found["py_gil_disabled"],)
        )
    modules = [
        "concurrent.futures",
        "multiprocessing",
        "asyncio",
        "json",
        "ctypes",
        "decimal",
        "_decimal",
        "hashlib",
        "ssl",
        "sqlite3",
        "lzma",
        "bz2",
        "zlib",
        "readline",
        "uuid",
        "pyperf",
        "psutil",
    ]
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - report every failure, not the first
            problems.append("import %s failed: %s: %s" % (name, type(exc).__name__, exc))
    found["pyperf"] = getattr(sys.modules.get("pyperf"), "__version__", None)
    found["psutil"] = getattr(sys.modules.get("psutil"), "__version__", None)
    found["gil_enabled_after_imports"] = gil_enabled()
    if free_threaded and found["gil_enabled_after_imports"] is not False:
        problems.append(
            "the GIL was re-enabled by an import (an extension module without free-threading support)"
        )
    print("gilmatrix check: " + json.dumps(found, sort_keys=True))
    for problem in problems:
        print("gilmatrix check FAILED: " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
