"""The design of a simulated study: subjects, sites, block randomisation, the visit schedule
and its checks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError
from mesostats.simulate.parameters import _SITES

# Design: subjects, randomisation, visit schedule, dropout
# --------------------------------------------------------------------------------------------


def _nominal_schedule(n_injections: int, n_followup: int) -> tuple[np.ndarray, np.ndarray]:
    """Nominal visit days and day jitter: weekly × 4, two-weekly × 2, then monthly injections;
    follow-ups 4 weeks after the last injection, then every 3 months."""
    inj_gaps = np.array([7, 7, 7, 14, 14] + [28] * max(0, n_injections - 6))[: n_injections - 1]
    fu_gaps = np.array([28] + [91] * max(0, n_followup - 1))[:n_followup]
    gaps = np.concatenate([inj_gaps, fu_gaps]).astype(np.int64)
    days = np.concatenate([[1], 1 + np.cumsum(gaps)]).astype(np.int64)
    jitter_by_gap = {7: 1, 14: 2, 28: 3, 91: 7}
    jitter = np.concatenate([[0], [jitter_by_gap[int(g)] for g in gaps]]).astype(np.int64)
    return days, jitter


def _site_names(n_sites: int) -> tuple[list[str], list[str]]:
    names = [s[0] for s in _SITES[:n_sites]]
    codes = [s[1] for s in _SITES[:n_sites]]
    for k in range(len(_SITES), n_sites):
        names.append(f"Site {k + 1:02d}")
        codes.append(f"S{k + 1:02d}")
    return names, codes


def _block_randomise(site: np.ndarray, n_arms: int, rng: np.random.Generator) -> np.ndarray:
    """Permuted blocks of size 2·n_arms within each site (subjects in enrolment order)."""
    n = site.size
    order_in_site = _rank_within(site)
    block = order_in_site // (2 * n_arms)
    shuffle = rng.random(n)
    order = np.lexsort((shuffle, block, site))
    position = np.empty(n, dtype=np.int64)
    position[order] = _rank_within(np.stack([site[order], block[order]], axis=1))
    return position % n_arms


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """0-based running count of each row within its group, for rows already grouped in
    order (1-d keys in any order; 2-d keys must be sorted)."""
    if keys.ndim == 1:
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
        group_start = np.maximum.accumulate(np.where(starts, np.arange(keys.size), 0))
        rank = np.empty(keys.size, dtype=np.int64)
        rank[order] = np.arange(keys.size) - group_start
        return rank
    starts = np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(keys)), 0))
    return np.arange(len(keys)) - group_start


def _draw_subjects(
    n: int, n_sites: int, n_arms: int, params: Mapping[str, Any], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    names, codes = _site_names(n_sites)
    weights = rng.dirichlet(np.full(n_sites, params["site_weight_concentration"]))
    site = np.sort(rng.choice(n_sites, size=n, p=weights))
    number = _rank_within(site) + 1
    width = max(3, len(str(int(number.max())))) if n else 3
    subject_id = (
        pd.Series(np.asarray(codes, dtype=object)[site])
        + "-"
        + pd.Series(number).astype(str).str.zfill(width)
    ).to_numpy(dtype=object)
    arm = _block_randomise(site, n_arms, rng)

    female = rng.random(n) < 0.45
    u = rng.random(n)
    diagnosis = np.where(
        female, np.where(u < 0.8, "FPHL", "TE"), np.where(u < 0.95, "AGA", "TE")
    ).astype(object)
    age = np.where(female, rng.normal(42, 11, n), rng.normal(37, 10, n))
    age = np.clip(np.rint(age), 18, 75).astype(np.int64)
    nh = np.array(["NH-II", "NH-IIa", "NH-III", "NH-IIIa", "NH-IIIv", "NH-IV", "NH-IVa", "NH-V"])
    nh_p = np.array([0.10, 0.05, 0.22, 0.08, 0.15, 0.20, 0.08, 0.12])
    ludwig = np.array(["Ludwig-I", "Ludwig-II", "Ludwig-III"])
    ludwig_p = np.array([0.50, 0.42, 0.08])
    stage = np.where(
        female,
        ludwig[np.searchsorted(np.cumsum(ludwig_p), rng.random(n) * ludwig_p.sum())],
        nh[np.searchsorted(np.cumsum(nh_p), rng.random(n) * nh_p.sum())],
    ).astype(object)
    stage[diagnosis == "TE"] = None
    return {
        "site": site,
        "site_name": np.asarray(names, dtype=object)[site],
        "subject_id": subject_id,
        "arm": arm,
        "sex": np.where(female, "F", "M").astype(object),
        "age": age,
        "diagnosis": diagnosis,
        "stage": stage,
    }


# --------------------------------------------------------------------------------------------
# The draw
# --------------------------------------------------------------------------------------------


def _logistic(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _followup_count(n_sessions: int, n_followup: int | None) -> int:
    if n_followup is None:
        return 2 if n_sessions >= 6 else (1 if n_sessions >= 4 else 0)
    return n_followup


def _check_design(
    n_subjects: int, n_sessions: int, n_followup: int, n_sites: int, seed: Any
) -> None:
    for name, value, low in (
        ("n_subjects", n_subjects, 1),
        ("n_sessions", n_sessions, 1),
        ("n_followup", n_followup, 0),
        ("n_sites", n_sites, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ModelSpecError(f"{name} must be an integer ≥ {low}, got {value!r}.")
    if n_followup >= n_sessions:
        raise ModelSpecError(
            f"n_followup = {n_followup} leaves no injection session among n_sessions = "
            f"{n_sessions} visits; use n_followup < n_sessions."
        )
    if not isinstance(seed, np.random.SeedSequence) and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
    ):
        raise ModelSpecError(f"seed must be an integer ≥ 0 or a numpy SeedSequence, got {seed!r}.")
