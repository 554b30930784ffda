"""Linear mixed models by profiled (RE)ML, the method of lme4.

Model: y = Xβ + Zb + ε, b = Λ(θ)u, u ~ N(0, σ²I), ε ~ N(0, σ²I). Following Bates, Mächler,
Bolker & Walker (2015, *J. Stat. Softw.* 67(1), sections 3.1–3.4) the penalised least-squares
system is solved through the Cholesky factor L of ΛᵀZᵀZΛ + I, with RZX = L⁻¹ΛᵀZᵀX and
RXᵀRX = XᵀX − RZXᵀRZX; β and σ are profiled out, so the optimiser sees θ only:

    ML:   d(θ) = log|L|² + n (1 + log(2π r²/n))
    REML: d(θ) = log|L|² + log|RX|² + (n−p) (1 + log(2π r²/(n−p)))

with r² the penalised residual sum of squares.

**Structure exploited (why this is hand-written, not a sparse-matrix library call).**
Random-effect terms that share a grouping factor are merged into one *factor* (q columns,
Λ_f with structural zeros where ``||`` split a term). The factor with the most levels is kept
block-diagonal: its G q×q blocks of ΛᵀZᵀZΛ + I are factorised all at once with elementwise
array operations over the G axis (written out for the q×q Cholesky and triangular solves;
numpy's stacked ``linalg`` on tiny matrices is about ten times slower). Everything the
deviance needs from the data is reduced once to per-level cross-products (ZᵢᵀZᵢ, ZᵢᵀXᵢ,
Zᵢᵀyᵢ), so an evaluation costs O(G·q²·p + p³), independent of n, with no Python loop over
groups. Any further factors (crossed or nested designs) form a dense "rest" block of size
Q_r = Σ levels × q: its Schur complement is factorised densely. The off-diagonal block
(levels of the large factor × rest effects) is held either densely (O(Q_r·q·G) memory;
fastest when the factors cross, e.g. subjects × a few dozen items) or, when that would be too
large, as its non-zero co-occurrence pairs (nested designs such as subjects within sites,
where each level meets only a few rest levels; cost O(Σ_g k_g² + Q_r³) per evaluation). This
is the approach of MixedModels.jl (blocked Cholesky with the largest factor first). Which of
the two is used is decided by the operation count per evaluation (``_choose_rest_mode``):
lme4's InstEval (2,972 students × 1,128 lecturers × 14 departments) takes the pairs path.
Beyond Q_r = 5,000 (or Σ_g k_g² > 2·10⁷) the Schur complement is held as a sparse matrix and
factorised by a sparse Cholesky (``mixed.linalg.SparseSPDFactor``), with a central-difference
gradient in θ; no design is refused for its size.

**Optimiser.** The gradient of the profiled deviance is analytic: with V₀ = I + ZΛΛᵀZᵀ,
∂d/∂Λ_f = 2 Σ_levels [Z_ℓᵀV₀⁻¹Z_ℓ − (REML) Z_ℓᵀV₀⁻¹X (XᵀV₀⁻¹X)⁻¹ XᵀV₀⁻¹Z_ℓ
− Z_ℓᵀε̂ ε̂ᵀZ_ℓ / σ̂²] Λ_f (matrix determinant lemma and the envelope theorem for r²; every
piece is available from the blocked factorisation). The start is a method-of-moments θ from
per-group least squares (one grouping factor), or for several factors in a small design
from least squares with the random effects as fixed ones; lme4's identity start otherwise.
The Hessian in θ is analytic too (second derivatives of log|V₀|, log|XᵀV₀⁻¹X| and log r²):
in O(levels) form (``block_hessian``: one q×q block per level of the largest factor, the
further factors' random effects and X dense) when the further factors have at most 64
random effects (and there are at most 5,000 in all); else, for small designs (at most 120
random-effect columns), reduced to Q×Q products (``hessian``). Projected Newton steps with
a trust region run from the start and usually converge in 3–10 evaluations. Otherwise, or
when those steps do not converge, L-BFGS-B with
bounds (diagonal of each Λ block ≥ 0) runs until the relative decrease is ~1e-12. A Newton
polish on the blocked deviance and gradient finishes (Hessian analytic, or from central
differences of the analytic gradient for larger designs), and the final checks (projected
gradient, positive-definite Hessian on the free coordinates, Newton decrement < 1e-6) set
``converged``. A result with a zero diagonal of Λ is certified: the
deviance is probed at interior points next to it and, if one is lower (the boundary was a
saddle, where the gradient vanishes), the optimiser restarts from there
(``optimise_theta``). The same Hessian gives the Satterthwaite df without further
evaluations (``mixed.satterthwaite``). To avoid cancellation in r² the response is
first replaced by its ordinary-least-squares residual (β is shifted back at the end), and
the reported log-likelihood uses r² recomputed from the residual vector.

**Measured** (2-core machine shared with other jobs; wall time): the model
``density ~ week * (minoxidil + dutasteride + biotin) + baseline + (1 + week | subject)``
fits in ~0.04 s at 200 × 8, ~0.15 s at 2,000 × 10 (statsmodels MixedLM: ~190 s, and short
of the optimum), ~0.3–0.6 s at 20,000 × 10 (formula to results, with Satterthwaite df), and
1,000,000 × 10 with a peak resident memory of 2.9 GB including the data. lme4's InstEval
(73,421 rows, ``y ~ service + (1|s) + (1|d) + (1|dept)``, REML) fits in ~8 s where lme4 takes
20–36 s on the same machine, at the same log-likelihood (``bench/bench_crossed.py``).

**Layout** (one idea per module): ``factors`` (terms merged per grouping factor),
``rest`` (the further factors' Schur complement: dense, pairs or sparse), ``deviance``
(factorisation at θ, start, modes), ``gradient`` (analytic gradient, conditional
covariances; :class:`ProfiledDeviance`), ``block_hessian`` and ``hessian`` (the analytic
Hessian, O(levels) and dense), ``optimise`` (:func:`optimise_theta`), ``fit``
(:func:`fit_lmm`). The names below are re-exported here.
"""

from mesostats.mixed.design import single_threaded_blas
from mesostats.mixed.linalg import batched_backward, batched_cholesky, batched_forward
from mesostats.mixed.lmm.fit import fit_lmm
from mesostats.mixed.lmm.gradient import ProfiledDeviance
from mesostats.mixed.lmm.optimise import optimise_theta

__all__ = [
    "ProfiledDeviance",
    "batched_backward",
    "batched_cholesky",
    "batched_forward",
    "fit_lmm",
    "optimise_theta",
    "single_threaded_blas",
]
