"""Sample selection for a whole range: the Viterbi plan is the exact optimum, holds one
sample through a steady target and switches at changes."""
from __future__ import annotations

import itertools

import numpy as np

from models.mouth_select import (
    APPEARANCE_WEIGHT,
    SWITCH_COST,
    SWITCH_COST_AT_CHANGE,
    SamplePlan,
    plan_samples,
    switch_costs,
)


def total_cost(path, cost, switch, appearance, previous=None) -> float:
    out = 0.0
    for t, j in enumerate(path):
        out += cost[t, j]
        i = previous if t == 0 else path[t - 1]
        if i is not None and i != j:
            out += switch[t] + APPEARANCE_WEIGHT * appearance[i, j]
    return out


def test_plan_is_the_exact_optimum():
    rng = np.random.default_rng(3)
    for _ in range(20):
        t_count, k = 6, 3
        cost = rng.uniform(0, 6, (t_count, k))
        switch = rng.uniform(0.5, 4, t_count)
        appearance = rng.uniform(0, 2, (k, k))
        appearance = (appearance + appearance.T) / 2
        np.fill_diagonal(appearance, 0)
        previous = int(rng.integers(0, k))
        path = plan_samples(cost, switch, appearance, previous)
        best = min(total_cost(p, cost, switch, appearance, previous) for p in itertools.product(range(k), repeat=t_count))
        assert np.isclose(total_cost(path, cost, switch, appearance, previous), best)


def test_one_sample_is_held_where_the_target_holds_and_changes_where_it_changes():
    # Two samples: 0 fits an open mouth, 1 a closed one; the target is open 10 frames,
    # closed 10; a slightly better fit on single frames must not make it flicker.
    openings = np.r_[np.full(10, 0.3), np.full(10, 0.0)]
    widths = np.full(20, 0.9)
    cost = np.stack([np.where(openings > 0.1, 0.0, 9.0), np.where(openings > 0.1, 9.0, 0.0)], axis=1)
    cost[[2, 5], 0] += 1.5  # a little worse on two frames: still cheaper than two switches
    switch = switch_costs(openings, widths)
    assert switch[10] == SWITCH_COST_AT_CHANGE and switch[5] == SWITCH_COST
    path = plan_samples(cost, switch, np.zeros((2, 2)))
    assert list(path) == [0] * 10 + [1] * 10


def test_a_phone_boundary_makes_a_switch_cheap():
    phones = np.array(["AA"] * 4 + ["M"] * 4)
    switch = switch_costs(np.full(8, 0.2), np.full(8, 0.9), phones)
    assert switch[4] == SWITCH_COST_AT_CHANGE and (np.delete(switch[1:], 3) == SWITCH_COST).all()


def test_plan_index_follows_time():
    plan = SamplePlan(1000.0, 25.0, np.zeros(10, int), None, 4)
    assert plan.index_at(1000.0) == 0 and plan.index_at(1079.0) == 2
    assert plan.index_at(960.0) is None and plan.index_at(1400.0) is None
