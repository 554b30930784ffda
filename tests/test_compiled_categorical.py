"""Tests of the categorical recipes of mesostats.mixed.compiled against formulaic.

The recipe must give formulaic's model matrix bit for bit (names, order, values: compared
with ``tobytes``), learn again when the levels change, and leave pieces it cannot
reproduce (text columns, ``C(...)``, three-way categorical interactions) to formulaic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix
from mmrm_data import fev_data

from mesostats.mixed import compiled


@pytest.fixture
def fev() -> pd.DataFrame:
    data = fev_data().dropna().reset_index(drop=True)
    for name in data.columns:
        if isinstance(data[name].dtype, pd.CategoricalDtype):
            data[name] = data[name].cat.remove_unused_categories()
    return data


def _formulaic(rhs: str, data: pd.DataFrame) -> tuple[tuple[str, ...], np.ndarray]:
    mm = model_matrix(rhs, data, na_action="raise", context={"np": np})
    return tuple(str(c) for c in mm.columns), np.ascontiguousarray(mm.to_numpy(dtype=float))


def _same_bits(rhs: str, data: pd.DataFrame) -> None:
    names, X, _ = compiled.model_columns(rhs, data)
    want_names, want = _formulaic(rhs, data)
    assert names == want_names
    assert X.shape == want.shape and X.tobytes() == want.tobytes()


LEARNT = [
    "RACE + SEX + ARMCD * AVISIT",
    "1 + ARMCD * AVISIT + ARMCD:FEV1_BL + AVISIT:RACE",
    "0 + AVISIT + AVISIT:FEV1_BL",
    "0 + ARMCD:SEX + FEV1_BL",
    "FEV1_BL * WEIGHT + SEX:FEV1_BL:WEIGHT",
    "ARMCD * SEX",
]


@pytest.mark.parametrize("rhs", LEARNT)
def test_categorical_recipe_matches_formulaic_bit_for_bit(rhs: str, fev: pd.DataFrame) -> None:
    compiled._recipes.pop(rhs, None)
    _same_bits(rhs, fev)  # first use: formulaic's own output, recipe learnt from it
    assert compiled._recipes.get(rhs) is not None
    other = fev.sample(frac=1.0, random_state=2).reset_index(drop=True)
    other["FEV1_BL"] = other["FEV1_BL"] * -1.5  # negative values: signed zeros as formulaic
    _same_bits(rhs, other)  # from the recipe


def test_categorical_recipe_learns_again_when_levels_change(fev: pd.DataFrame) -> None:
    rhs = "RACE + SEX + ARMCD * AVISIT"
    compiled._recipes.pop(rhs, None)
    _same_bits(rhs, fev)
    reordered = fev.assign(
        AVISIT=fev["AVISIT"].cat.reorder_categories(["VIS3", "VIS1", "VIS2", "VIS4"])
    )
    _same_bits(rhs, reordered)  # other reference level: formulaic again
    fewer = fev[fev["AVISIT"] != "VIS4"].copy()
    fewer["AVISIT"] = fewer["AVISIT"].cat.remove_unused_categories()
    _same_bits(rhs, fewer)
    _same_bits(rhs, fewer)  # learnt again for three visits
    recipe = compiled._recipes[rhs]
    assert recipe is not None and dict(recipe.levels)["AVISIT"] == ("VIS1", "VIS2", "VIS3")
    flags = fewer.assign(SEX=fewer["SEX"] == "Female")
    _same_bits(rhs, flags)  # a boolean column: formulaic, and the learnt recipe is kept
    assert compiled._recipes[rhs] is recipe
    text = fewer.assign(SEX=fewer["SEX"].astype(str))
    _same_bits(rhs, text)  # text: levels sorted (Female first), learnt again
    _same_bits(rhs, text)
    relearnt = compiled._recipes[rhs]
    assert relearnt is not None and "SEX[T.Male]" in relearnt.names


@pytest.mark.parametrize("rhs", ["C(ARMCD) + AVISIT", "ARMCD:AVISIT:RACE"])
def test_pieces_the_recipe_cannot_reproduce_go_through_formulaic(
    rhs: str, fev: pd.DataFrame
) -> None:
    compiled._recipes.pop(rhs, None)
    _same_bits(rhs, fev)
    assert compiled._recipes[rhs] is None
    _same_bits(rhs, fev)


@pytest.mark.parametrize("rhs", LEARNT)
def test_text_columns_recipe_matches_formulaic_bit_for_bit(rhs: str, fev: pd.DataFrame) -> None:
    """Text columns (as read from a CSV): formulaic's levels are the sorted values."""
    text = fev.assign(
        **{c: fev[c].astype(str) for c in ("ARMCD", "AVISIT", "RACE")},
        SEX=fev["SEX"].astype(object),
    )
    compiled._recipes.pop(rhs, None)
    _same_bits(rhs, text)
    assert compiled._recipes.get(rhs) is not None
    _same_bits(rhs, text.sample(frac=1.0, random_state=5).reset_index(drop=True))
    fewer = text[text["RACE"] != "White"].reset_index(drop=True)
    _same_bits(rhs, fewer)  # a level fewer: formulaic again, then the recipe for it
    _same_bits(rhs, fewer)
