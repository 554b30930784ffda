"""Write ``rbmi_trial.csv``: the simulated two-arm trial of ``test_sensitivity_rbmi.py`` as
the person × visit grid rbmi reads (``rbmi_sensitivity.R``).

Run from ``tests/``: ``python reference/rbmi_trial.py``. Columns: ``id, arm (P control, A
active), visit (2…5), baseline, chg`` (change from baseline, empty where missing).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sensitivity_trials import mar_trial  # noqa: E402

import mesostats as ms  # noqa: E402
from mesostats.imputation.setup import imputation_setup  # noqa: E402

#: The trial: 150 people, baseline + 4 visits, arms P and A, MAR dropout ~10 % per visit.
TRIAL = {"n_subjects": 150, "n_visits": 5, "seed": 11, "dropout": 0.1, "cocktails": ("P", "A")}


def trial_grid() -> tuple[pd.DataFrame, object]:
    """(long grid, TrialResults) of the trial, from our simulator and fit_trial."""
    study, _ = mar_trial(
        TRIAL["n_subjects"],
        TRIAL["n_visits"],
        seed=TRIAL["seed"],
        dropout=TRIAL["dropout"],
        cocktails=TRIAL["cocktails"],
    )
    trial = ms.fit_trial(study)
    setup = imputation_setup(trial)
    n, V = setup.y.shape
    grid = pd.DataFrame(
        {
            "id": np.repeat(np.arange(1, n + 1), V),
            "arm": np.repeat(np.asarray(setup.cocktails)[setup.arm], V),
            "visit": np.tile(np.asarray(setup.visits), n),
            "baseline": np.repeat(setup.baseline, V),
            "chg": setup.y.reshape(-1),
        }
    )
    return grid, trial


if __name__ == "__main__":
    grid, _ = trial_grid()
    grid.to_csv(HERE / "rbmi_trial.csv", index=False, float_format="%.10g")
