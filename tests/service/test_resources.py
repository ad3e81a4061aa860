"""Admission control: what a run needs (memory by part, a floor on its work) against what a
deployment has; refusals name the field a researcher would change and carry the estimate;
every shipped example is admitted at every scale on this kind of machine."""

from __future__ import annotations

from typing import Any

import pytest

from service.errors import LimitError
from service.examples import all_examples
from service.resources import (
    Capacity,
    admit,
    admit_spec,
    check_run,
    memory_need,
    time_need_flops,
)
from service.spec import RunConfig, SweepSpec

GIB = 2**30
CAPACITY = Capacity(
    worker_memory_bytes=24 * GIB,
    gpu_memory_bytes=141 * GIB,
    run_time_limit_s=4 * 3600.0,
    cpu_flops=100e9,
    gpu_flops=60e12,
)
"""This machine's memory, an H200's, the default time limit and rates."""


def cfg(model: str = "diagonal", d: int = 10, n: int = 20, **parts: Any) -> RunConfig:
    return RunConfig.model_validate({"model": model, "d": d, "n": n, "weight_decay": 0.1, **parts})


def test_memory_need_counts_data_optimizer_and_matrices() -> None:
    need = memory_need(cfg("quadratic", d=400, n=26_515))
    assert need["data"] == 8 * 26_515 * 401  # float64 data, no float32 copy
    assert need["optimizer"] == 8 * 400 * 400 * (6 + 2 * 20)  # W, its state, 20 L-BFGS pairs
    assert need["matrices"] == 8 * 8 * 400 * 400
    f32 = memory_need(cfg("quadratic", d=400, n=26_515, training={"dtype": "float32"}))
    assert f32["data"] == 12 * 26_515 * 401 and f32["optimizer"] == need["optimizer"] // 2
    assert memory_need(cfg(training={"optimizer": "convex"}))["optimizer"] == 0


@pytest.mark.parametrize(
    ("run", "field"),
    [
        (cfg("quadratic", d=100_000, n=20), "grid.d"),
        (cfg("diagonal", d=1_000_000, n=100_000), "grid.d"),
        (cfg("diagonal", d=1000, n=10_000_000), "grid.n"),
        (cfg("quadratic", d=100, n=1000, training={"width": 10**6}), "training.width"),
        (
            cfg("diagonal", d=100_000, n=10, measure={"test_samples": 20_000}),
            "measure.test_samples",
        ),
    ],
)
def test_runs_beyond_the_largest_worker_are_refused_by_field(run: RunConfig, field: str) -> None:
    with pytest.raises(LimitError, match="of memory") as info:
        check_run(run, CAPACITY)
    assert info.value.field == field and info.value.status_code == 422
    assert "the largest worker has 24 GiB (SCALESWEEP_WORKER_MEMORY_MB)" in str(info.value)


def test_a_cuda_run_is_checked_against_the_gpu() -> None:
    big = cfg("quadratic", d=2000, n=1_000_000, training={"device": "cuda"})  # 16 GB of data
    check_run(big, CAPACITY)  # fits an H200
    small_gpu = Capacity(24 * GIB, 10 * GIB, 3600.0, 100e9, 60e12)
    with pytest.raises(LimitError, match=r"the GPU has 10 GiB \(SCALESWEEP_GPU_MEMORY_MB\)"):
        check_run(big, small_gpu)


def test_runs_that_cannot_finish_in_the_time_limit_are_refused() -> None:
    convex = cfg("quadratic", d=5000, n=300_000, training={"optimizer": "convex"})
    assert time_need_flops(convex) / CAPACITY.cpu_flops > CAPACITY.run_time_limit_s / 4
    short = Capacity(24 * GIB, 141 * GIB, 3600.0, 100e9, 60e12)
    with pytest.raises(LimitError, match="per-run time limit is 1 h") as info:
        check_run(convex, short)
    assert info.value.field == "grid.d"
    tested = cfg("quadratic", d=1000, n=1000, measure={"test_samples": 10**9})
    with pytest.raises(LimitError, match="takes at least") as info:
        check_run(tested, short)
    assert info.value.field == "measure.test_samples"


def test_admit_checks_each_shape_and_names_alpha_when_n_comes_from_it() -> None:
    spec = SweepSpec.model_validate(
        {"model": "quadratic", "grid": {"d": [10, 20_000], "alpha": [1.0], "weight_decay": [0.1],
                                        "seed": [0, 1, 2]}}
    )  # fmt: skip
    with pytest.raises(LimitError) as info:
        admit_spec(spec, CAPACITY, max_runs=100)
    assert info.value.field == "grid.alpha" and "d = 20000, n = 400000000" in str(info.value)
    admit([cfg(seed=s) for s in range(50)], CAPACITY)  # small runs pass


@pytest.mark.parametrize(
    ("grid", "field"),
    [({"width": [4, 10**6]}, "grid.width"), ({"width_ratio": [0.5, 10**4]}, "grid.width_ratio")],
)
def test_a_width_too_wide_to_train_names_the_width_axis(grid: dict[str, Any], field: str) -> None:
    spec = SweepSpec.model_validate(
        {"model": "quadratic", "grid": {"d": [100], "n": [1000], "weight_decay": [0.1], **grid}}
    )
    with pytest.raises(LimitError, match="width 1000000 needs at least") as info:
        admit_spec(spec, CAPACITY, max_runs=100)
    assert info.value.field == field


def test_every_example_is_admitted_at_every_scale_on_this_machine() -> None:
    checked = 0
    for example in all_examples():
        for specs in example.scales.values():
            for spec in specs:
                admit_spec(spec, CAPACITY, max_runs=100_000)
                checked += 1
    assert checked >= 16


def test_restarts_beyond_the_deployments_maximum_are_refused() -> None:
    narrow = cfg("quadratic", d=40, n=3200, training={"width": 4, "restarts": 12})
    with pytest.raises(LimitError, match="SCALESWEEP_WIDTH_RESTARTS_MAX") as info:
        check_run(narrow, CAPACITY)
    assert info.value.field == "training.restarts"
    check_run(cfg("quadratic", d=40, n=3200, training={"width": 4, "restarts": 8}), CAPACITY)
