"""Tests of mesostats.mixed.factors: the grouping-factor type both engines share."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.testing import assert_array_equal

from mesostats.mixed.design import build_design
from mesostats.mixed.factors import grouping_factors
from mesostats.mixed.glmm import RandomTermArrays, _merge_terms
from mesostats.mixed.lmm.factors import _factors


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 60
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
            "g": np.repeat(np.arange(12), 5),
            "h": np.tile(np.arange(5), 12),
        }
    )


def test_split_terms_of_one_group_become_one_factor_with_block_diagonal_lambda() -> None:
    """``(x || g)`` is two terms, one factor; ``(1 + z | h)`` a factor with a full 2×2 block."""
    design = build_design("y ~ x + (x || g) + (1 + z | h)", _data())
    factors = grouping_factors(design.terms)
    assert [f.group for f in factors] == ["g", "h"]
    g, h = factors
    assert g.q == 2 and len(g.term_ids) == 2 and g.n_levels == 12
    assert g.positions == [(0, 0), (1, 1)]  # no entry between the split pieces
    assert h.positions == [(0, 0), (1, 0), (1, 1)]  # lme4's column-major lower triangle
    theta = np.arange(1.0, design.n_theta + 1.0)
    lam_g = g.lam(theta)
    assert lam_g[0, 1] == 0.0 and lam_g[1, 0] == 0.0
    assert_array_equal(np.sort(np.concatenate([g.theta_ids, h.theta_ids])), np.arange(5))
    # the design's own Λ blocks hold the same numbers
    blocks = design.lambda_blocks(theta)
    by_term = {k: blocks[k] for k in range(len(design.terms))}
    for f in factors:
        for k, cols in zip(f.term_ids, f.term_cols, strict=True):
            assert_array_equal(f.lam(theta)[cols, cols], by_term[k])


def test_both_engines_use_the_same_factors() -> None:
    design = build_design("y ~ x + (x || g) + (1 | h)", _data())
    lmm = _factors(design)
    arrays = [RandomTermArrays(t.codes, t.Z, t.n_levels, t.group) for t in design.terms]
    glmm, perm = _merge_terms(arrays)
    assert {f.group: f.positions for f in lmm} == {f.group: f.positions for f in glmm}
    assert_array_equal(perm, np.concatenate([f.theta_ids for f in glmm]))


def test_terms_without_a_group_name_are_never_merged() -> None:
    codes = np.repeat(np.arange(4), 3)
    terms = [
        RandomTermArrays(codes, np.ones((12, 1)), 4),
        RandomTermArrays(codes, np.ones((12, 1)), 4),
    ]
    factors = grouping_factors(terms)
    assert len(factors) == 2 and [f.theta_ids.tolist() for f in factors] == [[0], [1]]
