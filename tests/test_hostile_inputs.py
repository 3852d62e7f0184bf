"""Hostile or damaged inputs: matrix files built to exhaust the parser, results folders edited by
hand. Each ends in a clear error (exit 2, the file and what is wrong, no traceback), through the
real CLI in a subprocess; a subprocess timeout guards against a hang."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import gilmatrix, small_matrix

GUARD = 120  # seconds: a hang guard only; each command here takes about a second


def billion_laughs() -> str:
    """Nine lines, 9^9 values once the aliases are expanded."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


def assert_user_error(proc, path: Path, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert re.search(rf"{re.escape(str(path))}:\d+: ", proc.stderr), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr
    return proc.stderr


# -- hostile matrix files -------------------------------------------------------------------


def test_billion_laughs_is_refused_naming_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs())
    proc = gilmatrix("validate", str(path), timeout=GUARD)
    err = assert_user_error(proc, path, "more than 20,000 values", "aliases counted expanded")
    assert re.search(rf"{re.escape(str(path))}:[2-9]: [a-i]\[\d\]: ", err), err


def test_billion_laughs_in_an_override_file_is_refused(tmp_path: Path) -> None:
    matrix = small_matrix(tmp_path)
    override = tmp_path / "override.yaml"
    override.write_text(billion_laughs())
    proc = gilmatrix("validate", str(matrix), "--override", str(override), timeout=GUARD)
    assert_user_error(proc, override, "more than 20,000 values")


def test_thousands_of_nested_brackets_end_in_an_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("interpreters: " + "[" * 5000 + "]" * 5000 + "\n")
    proc = gilmatrix("validate", str(path), timeout=GUARD)
    err = assert_user_error(proc, path, "nested deeper than 50 levels")
    assert "RecursionError" not in err and "recursion" not in err.lower(), err
    mappings = tmp_path / "deep-mappings.yaml"
    mappings.write_text("a: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")
    assert_user_error(gilmatrix("validate", str(mappings), timeout=GUARD), mappings, "deeper than 50")


def test_depth_reached_through_aliases_is_counted(tmp_path: Path) -> None:
    # each line is 30 levels deep, the second holds the first: 60 levels, no line deeper than 31
    path = tmp_path / "deep-aliases.yaml"
    path.write_text("a: &a " + "[" * 30 + "]" * 30 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n")
    assert_user_error(
        gilmatrix("validate", str(path), timeout=GUARD), path, "deeper than 50 levels with alias *a"
    )


def test_an_alias_inside_the_value_it_names_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("format: 1\nworkers: &w [1, *w]\n")
    assert_user_error(
        gilmatrix("validate", str(path), timeout=GUARD), path, "alias *w is inside the value it names"
    )


def test_an_oversize_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = small_matrix(tmp_path)
    with path.open("a") as out:  # a valid matrix followed by 2 MiB of comments
        out.write(("#" * 1023 + "\n") * 2048)
    assert_user_error(gilmatrix("validate", str(path), timeout=GUARD), path, "larger than 1024 KiB")


def test_an_integer_of_thousands_of_digits_is_a_yaml_error(tmp_path: Path) -> None:
    path = tmp_path / "digits.yaml"
    path.write_text("format: 1\nworkers: [" + "9" * 5000 + "]\n")
    assert_user_error(gilmatrix("validate", str(path), timeout=GUARD), path, "not valid YAML")


def test_a_matrix_with_legitimate_aliases_still_validates(tmp_path: Path) -> None:
    path = small_matrix(
        tmp_path,
        extra_profile="\n".join(
            [
                "    params: &small {fetch: {wait_ms: 1}}",
                "  base: &base",
                "    pyperf: &fast {processes: 1, values: 2, warmups: 0, loops: 1}",
                "    timeout: 30",
                "  other:",
                "    <<: *base",
                "    params: *small",
                "  third: {pyperf: *fast, timeout: 10, workloads: &wl [crunch, fetch]}",
                "  fourth: {pyperf: *fast, workloads: *wl}",
            ]
        ),
    )
    proc = gilmatrix("validate", str(path), timeout=GUARD)
    assert proc.returncode == 0, proc.stderr
    assert "profiles default, base, other, third, fourth" in proc.stdout, proc.stdout
