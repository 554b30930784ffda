"""Writing a simulated study: the tables as CSV files and the truth as JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Writing
# --------------------------------------------------------------------------------------------


def write_tables(tables: Mapping[str, pd.DataFrame], folder: str | Path) -> list[Path]:
    """Write tables as UTF-8 CSV files ``<folder>/<name>.csv`` in the table contract's
    format (booleans ``true``/``false``, missing values empty, ``\\n`` line ends).

    Returns the paths written. The folder is created if needed; existing files of the same
    names are replaced.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, table in tables.items():
        out = table.copy()
        for col in out.columns:
            if pd.api.types.is_bool_dtype(out[col]):
                out[col] = out[col].map({True: "true", False: "false"}).astype("str")
        path = folder / f"{name}.csv"
        out.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")
        paths.append(path)
    return paths


def truth_to_json(truth: Mapping[str, Any]) -> str:
    """The truth dict as JSON text (DataFrames become ``{column: [values]}``, NaN → null)."""

    def convert(value: Any) -> Any:
        if isinstance(value, pd.DataFrame):
            return {col: [convert(v) for v in value[col].tolist()] for col in value.columns}
        if isinstance(value, Mapping):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, np.ndarray)):
            return [convert(v) for v in value]
        if isinstance(value, (np.integer,)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return None if not math.isfinite(float(value)) else float(value)
        if value is pd.NA:
            return None
        return value

    return json.dumps(convert(truth), indent=2, ensure_ascii=False) + "\n"
