"""matrix.yaml validation: the shipped matrix loads; every bad file stops with exit 2 and names
the file, the line and the key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from gilmatrix.cli import main
from gilmatrix.matrix.model import load_matrix, schema

ROOT = Path(__file__).resolve().parent.parent
BAD = sorted((Path(__file__).parent / "bad_matrices").glob("*.yaml"))


def expectations(path: Path) -> tuple[str, str]:
    head = path.read_text().splitlines()[:2]
    return head[0].split(": ", 1)[1], head[1].split(": ", 1)[1]


def test_shipped_matrix_is_valid() -> None:
    matrix = load_matrix(ROOT / "matrix.yaml")
    ids = [i.id for i in matrix.interpreters]
    assert ids == ["3.10", "3.11", "3.12", "3.13", "3.13t", "3.14", "3.14t", "3.15", "3.15t"]
    assert [w.id for w in matrix.workloads][:3] == ["crunch", "fetch", "sum_squares"]
    assert {w.implementation for w in matrix.workloads} == {
        "crunch",
        "fetch",
        "sum_squares",
        "hash_native",
        "contention",
        "mixed",
        "startup",
        "ftscaling",
        "ftscaling_shared",
    }
    assert matrix.executors == ("sequential", "threads", "processes", "interpreters", "asyncio")
    assert matrix.workers == (1, 2, 4)
    assert set(matrix.profiles) == {"smoke", "quick", "default", "rigorous", "ftscaling"}
    smoke = matrix.profile("smoke")
    assert smoke.workloads == ("crunch", "fetch", "sum_squares")
    assert smoke.executors == ("sequential", "threads", "processes")
    assert matrix.interpreter("3.13t").free_threaded
    assert not matrix.interpreter("3.13").free_threaded


def test_shipped_matrix_references_the_schema_and_passes_it() -> None:
    text = (ROOT / "matrix.yaml").read_text()
    assert "$schema=runner/matrix/schema.json" in text.splitlines()[0]
    jsonschema.Draft202012Validator.check_schema(schema())
    jsonschema.validate(yaml.safe_load(text), schema())
    on_disk = json.loads((ROOT / "runner" / "matrix" / "schema.json").read_text())
    assert on_disk == schema()


def test_corpus_is_large_enough() -> None:
    assert len(BAD) >= 30


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_matrix_exits_2_naming_file_line_and_key(path: Path, capsys) -> None:
    key, message = expectations(path)
    code = main(["validate", "--matrix", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(rf"{re.escape(str(path))}:\d+:", err), f"no file:line in {err!r}"
    assert key in err, err
    assert message in err, err


def test_line_number_points_at_the_key(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "m.yaml"
    text = (ROOT / "matrix.yaml").read_text().replace('  - id: "3.14t"', '  - id: "3.14x"')
    bad.write_text(text)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if '"3.14x"' in row)
    assert main(["validate", "--matrix", str(bad)]) == 2
    assert f"{bad}:{line}: interpreters[6].id:" in capsys.readouterr().err


def test_missing_file_is_a_user_error(tmp_path: Path, capsys) -> None:
    assert main(["validate", "--matrix", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_yaml_is_read_safely(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("format: !!python/object/apply:os.system ['echo pwned']\n")
    assert main(["validate", "--matrix", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


# -- override files and the source lock ----------------------------------------------------------

OFFLINE = ROOT / "examples" / "offline-mirror.yaml"


def test_offline_override_swaps_sources_for_the_mirror_and_pyenv_prefixes() -> None:
    plain = load_matrix(ROOT / "matrix.yaml")
    matrix = load_matrix(ROOT / "matrix.yaml", [OFFLINE])
    assert [i.id for i in matrix.interpreters] == [i.id for i in plain.interpreters]
    by_id = {i.id: i for i in matrix.interpreters}
    assert by_id["3.10"].prefix == "~/.pyenv/versions/3.10.13" and by_id["3.10"].source is None
    assert by_id["3.12"].prefix == "~/.pyenv/versions/3.12.1" and by_id["3.12"].source is None
    assert {i.source for i in matrix.interpreters if i.source} == {"3.11.2", "3.13.15", "3.14.7", "3.15.0rc2"}
    assert matrix.overrides == (OFFLINE,)
    assert matrix.sha256 != plain.sha256  # a run records (and resume checks) the override too
    assert matrix.profiles == plain.profiles and matrix.workloads == plain.workloads


@pytest.mark.parametrize(
    "body, key, message",
    [
        (
            'interpreters:\n  - id: "3.99"\n    source: "3.99.0"\n',
            "interpreters[0].id",
            "no interpreter '3.99' in the matrix",
        ),
        (
            'interpreters:\n  - id: "3.13"\n    source: "3.12.1"\n',
            "interpreters[0].source",
            "is not a 3.13 release",
        ),
        ('interpreters:\n  - id: "3.13"\n    prefx: /opt\n', "interpreters[0].prefx", "unknown key"),
        (
            'interpreters:\n  - id: "3.13"\n    source: "3.13.99"\n',
            "interpreters[0].source",
            "not in the source lock",
        ),
        ("workloads: {}\n", "workloads", "an override file has: format, interpreters"),
        ("format: 1\n", "interpreters", "non-empty list"),
    ],
)
def test_bad_override_names_its_own_file_line_and_key(tmp_path: Path, capsys, body, key, message) -> None:
    override = tmp_path / "o.yaml"
    override.write_text("# an override\n" + body)
    assert main(["validate", str(ROOT / "matrix.yaml"), "--override", str(override)]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(override))}:\d+: {re.escape(key)}: ", err), err
    assert message in err and "Traceback" not in err


def test_a_source_release_the_lock_lacks_is_refused_at_validation(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "m.yaml"
    text = (ROOT / "matrix.yaml").read_text()
    bad.write_text(text.replace('source: "3.14.8"', 'source: "3.14.99"', 1))
    line = next(n for n, row in enumerate(bad.read_text().splitlines(), 1) if "3.14.99" in row)
    assert main(["validate", "--matrix", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:{line}: interpreters[5].source: release '3.14.99' is not in the source lock" in err
    assert "3.14.7, 3.14.8 of 3.14" in err


def test_matrix_file_as_a_positional_argument(capsys, monkeypatch) -> None:
    monkeypatch.delenv("GILMATRIX_OVERRIDE", raising=False)
    assert main(["validate", str(ROOT / "matrix.yaml")]) == 0
    assert f"{ROOT / 'matrix.yaml'}: ok" in capsys.readouterr().out
    assert main(["validate", str(ROOT / "matrix.yaml"), "--matrix", "other.yaml"]) == 2
    assert "two matrix files" in capsys.readouterr().err


def test_override_from_the_environment(capsys, monkeypatch) -> None:
    monkeypatch.setenv("GILMATRIX_OVERRIDE", str(OFFLINE))
    assert main(["validate", str(ROOT / "matrix.yaml")]) == 0
    assert f"override {OFFLINE}" in capsys.readouterr().out


def test_a_prefix_missing_on_this_machine_is_a_warning_naming_the_backend(tmp_path: Path, capsys) -> None:
    override = tmp_path / "o.yaml"
    override.write_text('interpreters:\n  - id: "3.13"\n    prefix: /nonexistent/cpython\n')
    assert main(["validate", str(ROOT / "matrix.yaml"), "--override", str(override)]) == 0
    err = capsys.readouterr().err
    assert "warning: 3.13: prefix /nonexistent/cpython has no bin/python3" in err
    assert "docker backend" in err
