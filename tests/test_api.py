"""The public names of API.md: present, of the documented kind, in every import order."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import mesostats as ms

FUNCTIONS = [
    "load_study",
    "load_redcap",
    "load_cdisc",
    "example_study",
    "simulate_study",
    "fit_lmm",
    "fit_glmm",
    "compare",
    "fit_regrowth",
    "fit_side_effects",
    "variability",
    "report",
    "power",
    "sample_size",
    "plot_power",
    "save_study",
    "fit_mmrm",
    "fit_clmm",
    "marginal_means",
    "contrasts",
    "check_model",
    "fit_trial",
    "sensitivity",
    "tipping_point",
]
CLASSES = [
    "Study",
    "MixedResults",
    "MMRMResults",
    "CLMMResults",
    "RegrowthResults",
    "SideEffectResults",
    "TrialResults",
    "ModelCheck",
    "Variability",
]
ERRORS = {
    "MesostatsError": (Exception,),
    "ValidationError": (ms.MesostatsError, ValueError),
    "ModelSpecError": (ms.MesostatsError, ValueError),
    "ConvergenceWarning": (UserWarning,),
    "SingularFitWarning": (UserWarning,),
    "ExclusionWarning": (UserWarning,),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_public_function_is_a_function(name: str) -> None:
    obj = getattr(ms, name)
    assert inspect.isfunction(obj), f"ms.{name} is {obj!r}"
    assert obj.__name__ == name


@pytest.mark.parametrize("name", CLASSES)
def test_public_class_is_a_class(name: str) -> None:
    assert inspect.isclass(getattr(ms, name))


@pytest.mark.parametrize(("name", "bases"), ERRORS.items())
def test_errors_and_warnings_have_documented_bases(name: str, bases: tuple[type, ...]) -> None:
    cls = getattr(ms, name)
    for base in bases:
        assert issubclass(cls, base)


def test_every_name_in_all_resolves() -> None:
    for name in ms.__all__:
        assert getattr(ms, name) is not None


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        _ = ms.no_such_name  # type: ignore[attr-defined]


def test_no_module_shares_its_name_with_a_public_function() -> None:
    """A submodule named like a public function would replace it on import (no trick hides it)."""
    import pkgutil

    modules = {m.name for m in pkgutil.iter_modules(ms.__path__)}
    public = {n for n in ms.__all__ if callable(getattr(ms, n))}
    assert modules, "no submodules found"
    assert not modules & public, f"modules named like public functions: {modules & public}"


def test_functions_named_like_their_module_survive_importing_the_modules() -> None:
    """Importing every subpackage first leaves ms.variability, ms.power, ms.report functions."""
    code = (
        "import mesostats.domain.variation, mesostats.planning, mesostats.reporting\n"
        "import mesostats as ms, inspect\n"
        "print(all(inspect.isfunction(getattr(ms, n)) for n in"
        " ('variability', 'power', 'report')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize(
    ("name", "keyword_only"),
    [
        ("fit_lmm", {"reml"}),
        ("fit_glmm", {"family", "nagq"}),
        ("load_study", {"schema"}),
        ("load_redcap", {"mapping", "events", "cocktails", "missing_codes", "schema"}),
        ("load_cdisc", {"cocktails", "params", "schema"}),
        ("fit_regrowth", {"ingredients", "random_slope"}),
        ("fit_side_effects", {"ingredients", "nagq"}),
        ("simulate_study", {"seed", "effects"}),
        ("power", {"n_sessions", "effects", "n_sims", "alpha", "seed", "n_jobs", "test"}),
        ("report", {"outcome"}),
    ],
)
def test_options_after_the_data_are_keyword_only(name: str, keyword_only: set[str]) -> None:
    params = inspect.signature(getattr(ms, name)).parameters
    for option in keyword_only:
        assert params[option].kind is inspect.Parameter.KEYWORD_ONLY, option
