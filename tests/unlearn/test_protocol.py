import pytest
import torch

from unlearn.config import parse_params
from unlearn.data import load_dataset
from unlearn.protocol import aggregate, prepare_cell, run_method


def test_aggregate_gives_mean_std_and_the_student_t_interval():
    summary = aggregate([1.0, 2.0, 3.0])
    assert summary["mean"] == 2.0 and summary["std"] == pytest.approx(1.0)
    assert summary["ci95"] == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-5)
    assert aggregate([5.0]) == {"mean": 5.0, "std": 0.0, "ci95": 0.0}


def test_a_cell_is_reproducible_and_the_forget_seed_moves_only_the_split():
    data = load_dataset("digits")
    images, labels = data.images[:500], data.labels[:500]
    params = parse_params({"train": {"epochs": 2, "batch_size": 128}, "model": {"width": 8},
                           "adversarial": {"steps": 5}, "unlearn": {"ft": {"epochs": 1}}, "audit": {"method": "ft"}})
    runs = [run_method(prepare_cell(images, labels, None, params, seed=0, forget_seed=f), "ft", params.unlearn.ft, 0)
            for f in (0, 0, 1)]
    assert {k: v for k, v in runs[0].items() if "runtime" not in k} == \
        {k: v for k, v in runs[1].items() if "runtime" not in k}
    first, other = prepare_cell(images, labels, None, params, 0, 0), prepare_cell(images, labels, None, params, 0, 1)
    assert not torch.equal(first.task.forget, other.task.forget)
    assert runs[0]["avg_gap_svc"] >= 0 and runs[0]["remain_access"] is True


def test_clipping_stays_on_while_a_method_unlearns_a_smooth_model():
    data = load_dataset("digits")
    images, labels = data.images[:400], data.labels[:400]
    params = parse_params({"train": {"epochs": 2, "batch_size": 128}, "model": {"width": 8, "batch_norm": False},
                           "lipschitz": {"method": "fastclip", "target": 1.0, "bn": "remove", "clip_every": 5},
                           "adversarial": {"steps": 5}, "unlearn": {"ft": {"epochs": 2, "lr": 0.5}},
                           "audit": {"method": "ft"}})
    cell = prepare_cell(images, labels, None, params, seed=0, forget_seed=0)
    free = run_method(cell, "ft", params.unlearn.ft, 0, bound=True)
    clipped = run_method(cell, "ft", params.unlearn.ft, 0, clip=params.lipschitz)
    smooth = cell.metrics["original"]["lipschitz_bound"]
    assert free["lipschitz_bound"] > 1.05 * smooth  # a large rate leaves the smooth class ...
    assert clipped["lipschitz_bound"] <= 1.05 * smooth  # ... unless FastClip stays on
