from __future__ import annotations

import math

import pytest
import torch

from gating.ml.metrics import (
    accuracy,
    balanced_sample,
    expert_load,
    macro_f1,
    routing_report,
    summarize,
    utilization,
)


def test_it_computes_accuracy_and_macro_f1_on_hand_made_labels():
    y_true, y_pred = [0, 0, 1, 1], [0, 1, 1, 1]
    assert accuracy(y_true, y_pred) == 0.75
    # class 0: 2*1/(2+0+1) = 2/3; class 1: 2*2/(4+1+0) = 4/5
    assert macro_f1(y_true, y_pred) == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert accuracy(torch.tensor([1, 2]), torch.tensor([1, 2])) == 1.0


def test_it_scores_a_prediction_outside_the_domain_as_a_miss():
    # label 9 belongs to another domain: a false negative for class 0, a false positive for none
    assert macro_f1([0, 1], [9, 1], labels=[0, 1]) == pytest.approx((0 + 1) / 2)
    assert macro_f1([0, 1], [9, 1]) == pytest.approx((0 + 1 + 0) / 3)


def test_it_summarises_with_an_unweighted_mean_over_domains():
    per = {"a": {"accuracy": 1.0, "macro_f1": 0.5}, "b": {"accuracy": 0.0, "macro_f1": 0.5}}
    assert summarize(per) == {"accuracy": 0.5, "macro_f1": 0.5}


def test_it_reports_full_utilisation_for_even_load_and_1_over_n_on_collapse():
    even = expert_load(torch.tensor([[0], [1], [2], [3]]), 4)
    assert torch.allclose(even, torch.full((4,), 0.25, dtype=torch.float64))
    assert utilization(even) == pytest.approx(1.0)
    collapsed = expert_load(torch.tensor([[2], [2], [2]]), 4)
    assert utilization(collapsed) == pytest.approx(0.25)


def test_it_reports_routing_accuracy_entropy_load_and_dead_experts():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    topk = probs.argmax(-1, keepdim=True)
    report = routing_report(
        probs,
        topk,
        expert_domains=["a", "b", "c"],
        input_domains=["a", "b", "b", "a"],
        expert_names=["ea", "eb", "ec"],
    )
    assert report["accuracy"] == pytest.approx(0.5)  # rows 0 and 2 hit their own domain
    assert report["entropy"] == pytest.approx(math.log(2) / 4)
    assert report["normalized_entropy"] == pytest.approx(math.log(2) / 4 / math.log(3))
    assert report["load"] == {"ea": 0.5, "eb": 0.5, "ec": 0.0}
    assert report["dead_experts"] == ["ec"]
    assert report["utilization"] == pytest.approx(2 / 3)


def test_it_reports_what_a_mix_served_when_given_the_experts_that_ran():
    # two experts of domain a (ea1, ea2) mixed on rows routed to a, eb alone on the others
    probs = torch.tensor([[0.3, 0.3, 0.4], [0.1, 0.1, 0.8], [0.5, 0.2, 0.3]])
    runs = torch.tensor([[True, True, False], [False, False, True], [True, True, False]])
    report = routing_report(probs, runs=runs, lead=torch.tensor([0, 2, 0]),
                            expert_domains=["a", "a", "b"], input_domains=["a", "b", "b"],
                            expert_names=["ea1", "ea2", "eb"])
    assert report["accuracy"] == pytest.approx(2 / 3)  # the last row went to domain a
    assert report["load"] == {"ea1": 0.4, "ea2": 0.4, "eb": 0.2}  # 5 dispatches
    one_each = routing_report(probs, runs=torch.eye(3, dtype=torch.bool),
                              lead=torch.arange(3), expert_domains=["a", "a", "b"],
                              input_domains=["a", "a", "b"])
    as_top1 = routing_report(probs, torch.arange(3)[:, None], expert_domains=["a", "a", "b"],
                             input_domains=["a", "a", "b"])
    assert one_each == as_top1  # one expert per row: the top-k report
    with pytest.raises(ValueError, match="either topk_idx or both runs and lead"):
        routing_report(probs, runs=runs, expert_domains=["a", "a", "b"],
                       input_domains=["a", "b", "b"])


def test_it_draws_an_equal_number_of_inputs_per_domain():
    domains = ["a"] * 10 + ["b"] * 3
    picked = balanced_sample(domains, seed=1)
    assert sum(domains[i] == "a" for i in picked) == 3
    assert sum(domains[i] == "b" for i in picked) == 3
