"""The duet study (devtools/selfbench/duet.py): its estimators on known data, and a short real
study of this interpreter against itself (no figure of it is asserted: the machine may be busy)."""

from __future__ import annotations

import math
import os
import random
import sys

import pytest

from devtools.selfbench import duet


def calls(values: list[float], references: list[float]) -> list[tuple[float, float]]:
    return list(zip(values, references, strict=True))


def test_theta_recovers_a_value_proportional_to_the_reference():
    rng = random.Random(3)
    pairs = []
    for _ in range(20):
        pair = []
        for base in (1.0, 2.0):
            refs = [1e-3 * math.exp(rng.gauss(0, 0.2)) for _ in range(5)]
            pair.append(calls([base * r * 1000 for r in refs], refs))
        pairs.append(pair)
    assert duet.theta(pairs) == pytest.approx(1.0)
    # adjusted by it, each side's processes agree exactly: the machine's speed is gone
    adjusted = duet.process_logs(pairs, 1, duet.theta(pairs))
    assert max(adjusted) - min(adjusted) == pytest.approx(0.0, abs=1e-9)
    raw = duet.process_logs(pairs, 1, 0.0)
    assert max(raw) - min(raw) > 0.1


def test_theta_is_clipped_and_zero_without_spread():
    flat = [[calls([1.0, 2.0], [1e-3, 1e-3]), calls([1.0, 2.0], [1e-3, 1e-3])]] * 3
    assert duet.theta(flat) == 0.0
    steep = [[calls([r**5, r**5], [r, r]), calls([r**5, r**5], [r, r])] for r in (0.5, 1.0, 2.0)]
    assert duet.theta(steep) == 2.0


def test_paired_and_welch_intervals():
    figures = [math.log(0.9) + d for d in (-0.02, 0.0, 0.02, 0.01, -0.01)]
    out = duet.paired(figures)
    assert out["ratio"] == pytest.approx(0.9)
    assert out["sd"] == pytest.approx(0.0158114, rel=1e-5)
    # t(0.975, 4) = 2.776
    assert out["half_width"] == pytest.approx(math.expm1(2.7764 * 0.0158114 / math.sqrt(5)), rel=1e-3)
    a, b = [0.0, 0.1, 0.2], [1.0, 1.1, 1.2]
    w = duet.welch(a, b)
    assert w["ratio"] == pytest.approx(math.exp(-1.0))
    # equal variances 0.01, n 3: se sqrt(2 * 0.01 / 3), df 4
    assert w["half_width"] == pytest.approx(math.expm1(2.7764 * math.sqrt(0.02 / 3)), rel=1e-3)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the simultaneous arms need two CPUs")
def test_a_short_study_runs_every_arm_on_real_processes():
    me = sys.executable
    found = duet.study(
        {"twins": (me, me)}, 0.0, seed=1, size=2000, tasks=2, warmups=1, calls=3, window=0.02, log=None
    )
    pairs = found["twins"]["pairs"]
    # one round, whatever the machine's load: each arm one pair of two processes
    assert [len(pairs[arm]) for arm in duet.ARMS] == [1] * len(duet.ARMS)
    for arm in duet.ARMS:
        (pair,) = pairs[arm]
        if arm == "duet":  # a window of calls: at least one each, as many as fit
            assert all(len(side) >= 1 for side in pair)
        else:
            assert [len(side) for side in pair] == [3, 3]
        assert all(value > 0 and reference > 0 for side in pair for value, reference in side)
        assert found["twins"]["seconds"][arm] > 0
    figures = duet.estimates(pairs | {arm: pairs[arm] * 2 for arm in duet.ARMS}, found["twins"]["seconds"])
    assert set(figures) == {"apart", "apart+ref", "apart+ref welch", "lockstep", "spin", "duet"}
    assert all(math.isfinite(f["ratio"]) for f in figures.values())


def test_the_children_run_on_the_cpu_they_are_given_or_anywhere():
    allowed = sorted(os.sched_getaffinity(0))
    pinned = duet.Child(sys.executable, allowed[-1], 100, 1)
    free = duet.Child(sys.executable, -1, 100, 1)
    try:
        assert pinned.cpus == [allowed[-1]]
        assert free.cpus == allowed
    finally:
        pinned.close()
        free.close()
