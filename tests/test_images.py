"""Unit tests of image planning, hashing and the wheelhouse: no Docker engine (the lock and
source downloads: test_sources.py)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from gilmatrix.images import build as images
from gilmatrix.images import cli as images_cli
from gilmatrix.images import docker as images_docker
from gilmatrix.images import sources as images_sources
from gilmatrix.images import wheels as images_wheels
from gilmatrix.images.build import ImageError, ImageSpec, inputs_hash, plan_image
from gilmatrix.matrix.model import Interpreter

REPO = Path(__file__).resolve().parent.parent
LOCK = images_sources.load_lock(REPO / "images" / "sources.toml")


def interp(id_: str, **kw) -> Interpreter:
    version = (3, int(id_.rstrip("t").split(".")[1]))
    return Interpreter(id=id_, version=version, free_threaded=id_.endswith("t"), **kw)


# -- planning ----------------------------------------------------------------------------------


def test_source_build_flags_are_the_same_for_every_version_but_the_gil():
    specs = {
        i: plan_image(interp(i, source=s), LOCK, "fast")
        for i, s in [("3.13", "3.13.15"), ("3.14t", "3.14.7"), ("3.15t", "3.15.0rc2")]
    }
    assert "--disable-gil" not in specs["3.13"].configure_flags
    assert "--disable-gil" in specs["3.14t"].configure_flags
    strip = [tuple(f for f in s.configure_flags if f != "--disable-gil") for s in specs.values()]
    assert len(set(strip)) == 1
    assert specs["3.15t"].python_version == "3.15.0rc2"
    assert specs["3.14t"].site_packages == "/usr/local/lib/python3.14t/site-packages"
    assert specs["3.14t"].abi == "cp314t" and specs["3.13"].abi == "cp313"
    assert specs["3.13"].python == "/usr/local/bin/python3"


def test_release_profile_adds_pgo_and_lto():
    fast = plan_image(interp("3.14", source="3.14.7"), LOCK, "fast")
    release = plan_image(interp("3.14", source="3.14.7"), LOCK, "release")
    assert set(release.configure_flags) - set(fast.configure_flags) == {
        "--enable-optimizations",
        "--with-lto",
    }
    with pytest.raises(ImageError, match="unknown build profile"):
        plan_image(interp("3.14", source="3.14.7"), LOCK, "turbo")


def fake_prefix(root: Path, version: str = "3.12.1") -> Path:
    minor = ".".join(version.split(".")[:2])
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python3").write_text("#!/bin/sh\n")
    (root / "include" / f"python{minor}").mkdir(parents=True)
    (root / "include" / f"python{minor}" / "patchlevel.h").write_text(
        f'#define PY_MAJOR_VERSION 3\n#define PY_VERSION "{version}"\n'
    )
    site = root / "lib" / f"python{minor}" / "site-packages"
    site.mkdir(parents=True)
    (site / "pip.py").write_text("")
    return root


def test_prefix_plan_keeps_the_path_and_reads_the_version(tmp_path):
    root = fake_prefix(tmp_path / "versions" / "3.12.1")
    spec = plan_image(interp("3.12", prefix=str(root)), LOCK, "fast")
    assert spec.kind == "prefix" and spec.prefix == str(root)
    assert spec.python_version == "3.12.1" and spec.build_profile == "prefix"
    assert spec.python == f"{root}/bin/python3"
    assert spec.configure_flags == ()


def test_prefix_without_python_is_an_error(tmp_path):
    with pytest.raises(ImageError, match="no bin/python3"):
        plan_image(interp("3.12", prefix=str(tmp_path)), LOCK, "fast")


def test_interpreter_without_source_or_prefix_is_an_error():
    with pytest.raises(ImageError, match="neither `source:`"):
        plan_image(interp("3.13"), LOCK, "fast")


def test_prefix_fingerprint_ignores_host_pth_hooks_and_sees_changes(tmp_path):
    root = fake_prefix(tmp_path / "p")
    site = root / "lib" / "python3.12" / "site-packages"
    first = images.prefix_fingerprint(root)
    (site / "_sandbox_hook.pth").write_text("import os")
    assert images.prefix_fingerprint(root) == first
    (site / "pip.py").write_text("changed")
    assert images.prefix_fingerprint(root) != first


# -- hashing and tags ------------------------------------------------------------------------


def _hash(spec: ImageSpec, **over) -> str:
    kw = dict(
        base_id="sha256:base",
        image_files={"Dockerfile": "d1"},
        harness={"gilmatrix/harness/facts.py": "h1"},
        wheels={"pyperf.whl": "w1"},
    )
    kw.update(over)
    return inputs_hash(spec, **kw)


def test_inputs_hash_is_deterministic_and_covers_every_input():
    spec = replace(plan_image(interp("3.14t", source="3.14.7"), LOCK, "fast"), source_sha256="a" * 64)
    first = _hash(spec)
    assert first == _hash(spec)
    variants = [
        _hash(spec, base_id="sha256:other"),
        _hash(spec, image_files={"Dockerfile": "d2"}),
        _hash(spec, harness={"gilmatrix/harness/facts.py": "h2"}),
        _hash(spec, wheels={"pyperf.whl": "w2"}),
        _hash(replace(spec, source_sha256="b" * 64)),
        _hash(plan_image(interp("3.14t", source="3.14.7"), LOCK, "release")),
        _hash(plan_image(interp("3.14", source="3.14.7"), LOCK, "fast")),
        _hash(spec, prefix_fp="x"),
    ]
    assert first not in variants and len(set(variants)) == len(variants)


def test_source_path_and_origin_do_not_change_the_hash():
    # The same verified tarball from a mirror or from a download makes the same image.
    spec = replace(plan_image(interp("3.14t", source="3.14.7"), LOCK, "fast"), source_sha256="a" * 64)
    other = replace(spec, source_path=Path("/elsewhere"), source_origin="download x")
    assert _hash(spec) == _hash(other)


def test_tag_names_interpreter_profile_and_hash():
    spec = plan_image(interp("3.14t", source="3.14.7"), LOCK, "fast")
    tag = images.image_tag(spec, "0123456789abcdef" * 4)
    assert tag == "gilmatrix/cpython:3.14t-fast-0123456789abcdef"
    assert re.fullmatch(r"[a-z0-9/]+:[\w][\w.-]{0,127}", tag)


def test_superseded_tags_are_same_interpreter_and_profile_only():
    current = "gilmatrix/cpython:3.14t-fast-0123456789abcdef"
    tags = [
        current,
        "gilmatrix/cpython:3.14t-fast-fedcba9876543210",
        "gilmatrix/cpython:3.14t-fast",
        "gilmatrix/cpython:3.14t-release-fedcba9876543210",
        "gilmatrix/cpython:3.14-fast-fedcba9876543210",
    ]
    assert images_cli.superseded_tags(tags, current) == ["gilmatrix/cpython:3.14t-fast-fedcba9876543210"]


def test_harness_files_are_the_package_init_and_harness_only():
    files = images.harness_files()
    assert "gilmatrix/__init__.py" in files and "gilmatrix/harness/__init__.py" in files
    assert all(n == "gilmatrix/__init__.py" or n.startswith("gilmatrix/harness/") for n in files)
    assert not any("__pycache__" in n for n in files)


def test_every_build_arg_is_declared_in_the_dockerfile():
    dockerfile = (REPO / "images" / "Dockerfile").read_text()
    declared = set(re.findall(r"^ARG (\w+)", dockerfile, flags=re.M))
    spec = plan_image(interp("3.14t", source="3.14.7"), LOCK, "fast")
    assert set(spec.build_args(base="debian:bookworm-slim")) | {"INPUTS_HASH"} <= declared


def test_dockerfile_keeps_the_harness_last():
    lines = [
        ln
        for ln in (REPO / "images" / "Dockerfile").read_text().splitlines()
        if re.match(r"^(RUN|COPY) ", ln)
    ]
    harness_at = next(i for i, ln in enumerate(lines) if "harness/" in ln)
    assert all(
        "apt-get" not in ln and "check-python" not in ln and "pip" not in ln for ln in lines[harness_at:]
    )


# -- wheelhouse --------------------------------------------------------------------------------


def test_wheelhouse_needs_exact_versions_and_an_sdist_for_psutil(tmp_path):
    reqs = {"pyperf": "2.10.0", "psutil": "7.2.2"}
    (tmp_path / "pyperf-2.10.0-py3-none-any.whl").write_text("")
    (tmp_path / "pyperf-2.11.0-py3-none-any.whl").write_text("")
    (tmp_path / "psutil-7.2.2-cp36-abi3-manylinux2014_x86_64.whl").write_text("")
    found, missing = images_wheels.find_files(tmp_path, reqs)
    assert [p.name for p in found] == ["pyperf-2.10.0-py3-none-any.whl"]
    assert missing == ["psutil==7.2.2 (sdist)"]
    (tmp_path / "psutil-7.2.2.tar.gz").write_text("")
    found, missing = images_wheels.find_files(tmp_path, reqs)
    assert sorted(p.name for p in found) == ["psutil-7.2.2.tar.gz", "pyperf-2.10.0-py3-none-any.whl"]
    assert missing == []


def test_given_wheelhouse_prefers_the_abi_folder_and_reports_what_lacks(tmp_path):
    reqs = {"pyperf": "2.10.0"}
    (tmp_path / "cp314t").mkdir()
    (tmp_path / "cp314t" / "pyperf-2.10.0-py3-none-any.whl").write_text("")
    got = images_wheels.collect_wheels(reqs, "cp314t", "3.14.7", wheelhouse=tmp_path, cache=tmp_path / "c")
    assert got == [tmp_path / "cp314t" / "pyperf-2.10.0-py3-none-any.whl"]
    # An incomplete wheelhouse falls back to the per-ABI cache (here: complete, so no download).
    (tmp_path / "c" / "cp313").mkdir(parents=True)
    (tmp_path / "c" / "cp313" / "pyperf-2.10.0-py3-none-any.whl").write_text("")
    notes: list[str] = []
    got = images_wheels.collect_wheels(
        reqs, "cp313", "3.13.15", wheelhouse=tmp_path / "cp313", cache=tmp_path / "c", log=notes.append
    )
    assert got == [tmp_path / "c" / "cp313" / "pyperf-2.10.0-py3-none-any.whl"]
    assert "lacks pyperf==2.10.0" in notes[0]


# -- progress parsing and the command line -------------------------------------------------------


def test_build_step_lines_are_recognised():
    bk = images_docker._BUILDKIT_STEP.match("#12 [build 3/5] RUN make")
    assert bk and bk.group("stage").strip() == "build" and bk.group("n") == "3"
    legacy = images_docker._LEGACY_STEP.match("Step 7/21 : RUN make")
    assert legacy and legacy.group("of") == "21"
    assert images_docker._BUILDKIT_STEP.match("#12 0.513 compiling") is None


def test_cli_registers_the_images_subcommand():
    from gilmatrix.cli import build_parser

    args = build_parser().parse_args(
        [
            "images",
            "--only",
            "3.14t",
            "--only",
            "3.12",
            "--sources",
            "/m",
            "--build-profile",
            "release",
            "--bootstrap-base",
            "--out",
            "o",
        ]
    )
    assert args.only == ["3.14t", "3.12"] and args.sources == Path("/m")
    assert args.build_profile == "release" and args.bootstrap_base and args.out == Path("o")
    assert args.handler is images_cli.images_command


def test_cli_rejects_an_unknown_interpreter(tmp_path):
    from gilmatrix.cli import build_parser
    from gilmatrix.errors import UserError

    args = build_parser().parse_args(
        ["images", "--matrix", str(REPO / "matrix.yaml"), "--only", "3.99", "--out", str(tmp_path)]
    )
    with pytest.raises(UserError, match=r"--only 3\.99"):
        args.handler(args)


# -- the build-time check script, run for real on this interpreter ------------------------------


def _check(version: str, free_threaded: str):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, str(REPO / "images" / "check-python.py"), version, free_threaded],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_script_fails_on_the_wrong_version():
    result = _check("9.9.9", "0")
    assert result.returncode == 1
    assert "version is" in result.stdout and "expected 9.9.9" in result.stdout


def test_check_script_fails_when_a_gil_build_is_expected_free_threaded():
    import platform
    import sysconfig

    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip("this interpreter is free-threaded")
    result = _check(platform.python_version(), "1")
    assert result.returncode == 1
    assert "Py_GIL_DISABLED is" in result.stdout and "expected 1" in result.stdout


def _fake_docker(tmp_path: Path, body: str) -> images_docker.Client:
    """A stand-in `docker` executable (a real process) that prints what a build would."""
    script = tmp_path / "docker"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return images_docker.Client(str(script), buildkit=True)


def test_build_reports_steps_and_heartbeats_and_keeps_the_log(tmp_path, monkeypatch):
    monkeypatch.setattr(images_docker, "_HEARTBEAT_S", 0.3)
    client = _fake_docker(
        tmp_path,
        "echo '#5 [build 3/5] RUN make'\necho '#5 1.0 compiling'\n"
        "echo '#6 [runtime 2/9] RUN apt-get'\necho '#6 DONE 0.1s'\n"
        "echo '#5 [build 3/5] RUN make'\nsleep 2\n"
        "echo '#5 9.0 linked'\n",
    )
    lines: list[str] = []
    seconds = images_docker.build(
        client, ["-t", "x"], tmp_path, tmp_path / "b.log", label="3.14t", log=lines.append
    )
    assert seconds >= 2
    steps = [ln for ln in lines if " step " in ln]
    assert steps[0].startswith("[3.14t]") and "build 3/5 RUN make" in steps[0]
    beats = [ln for ln in lines if "still at step" in ln]
    assert len(beats) >= 3 and all("build 3/5" in b for b in beats)
    assert "| #5 1.0 compiling" in beats[0]  # the step's own latest line, not another step's
    assert "#5 9.0 linked" in (tmp_path / "b.log").read_text()


def test_failed_build_raises_with_the_log_path_and_tail(tmp_path):
    client = _fake_docker(tmp_path, "echo '#7 [build 3/5] RUN make'\necho 'E: no compiler'\nexit 1\n")
    with pytest.raises(images_docker.DockerError) as failure:
        images_docker.build(client, [], tmp_path, tmp_path / "f.log", label="3.13", log=lambda s: None)
    assert failure.value.log_path == tmp_path / "f.log"
    assert str(tmp_path / "f.log") in str(failure.value) and "E: no compiler" in str(failure.value)
