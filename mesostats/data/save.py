"""Write a Study's tables to a folder (CSV or Parquet) or a database, readable by load_study.

:func:`save_study` is the inverse of :func:`~mesostats.data.load.load_study`:
``load_study(save_study(study, target))`` gives back an equal Study: the same tables, values
and types; the row labels are those of the new source (file lines, or database keys), and a
database gives its tables' rows in primary-key order (a table has no row order of its own).

- A **folder**: one file per table, ``<table>.csv`` (UTF-8, ``,`` delimiter, ``.`` decimals)
  or ``<table>.parquet``. The folder is created; a folder that already holds a table file is
  refused (nothing is overwritten).
- A **database** (SQLAlchemy URL, Engine or Connection): one table per study table, created
  with the schema's primary key as a ``PRIMARY KEY`` constraint (so a later load labels
  problems by key) and filled in chunks. A database that already has one of the tables is
  refused. Errors name the URL with its password masked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from mesostats.data.readers.sql import is_database_source, masked_url
from mesostats.data.study import Study
from mesostats.exceptions import MesostatsError

__all__ = ["save_study"]

_FORMATS = ("csv", "parquet")
_CHUNK_ROWS = 20_000


def save_study(study: Study, target: Any, *, format: str = "csv") -> Any:
    """Write a study to a folder or a database; return what :func:`load_study` reads back.

    Parameters
    ----------
    study : Study
    target : str, Path, SQLAlchemy URL, Engine or Connection
        A folder (created if needed; must not hold table files yet), or a database URL
        (``"sqlite:///study.db"``, ``"postgresql+psycopg://user@host/db"``), Engine or
        Connection whose database does not have the study's tables yet. A URL or Engine is
        written in one transaction of its own; a Connection in its current transaction (the
        caller commits it).
    format : {"csv", "parquet"}
        File format for a folder (ignored for databases).

    Returns
    -------
    Path, str, Engine or Connection
        The folder's path, or ``target`` itself for a database.

    Raises
    ------
    MesostatsError
        The folder already holds a table file, the database already has one of the tables,
        or the database cannot be reached (URL shown with its password masked).

    Examples
    --------
    >>> import mesostats as ms
    >>> study = ms.example_study()
    >>> ms.load_study(ms.save_study(study, "sqlite:///example.db"))  # doctest: +SKIP
    """
    frames = _tables(study)
    if is_database_source(target):
        _write_database(frames, study, target)
        return target
    if format not in _FORMATS:
        raise MesostatsError(f"format must be 'csv' or 'parquet', got {format!r}.")
    return _write_folder(frames, Path(os.fspath(target)), format)


def _tables(study: Study) -> dict[str, pd.DataFrame]:
    out = {
        "subjects": study.subjects,
        "cocktails": study.cocktails,
        "sessions": study.sessions,
        "adverse_events": study.adverse_events,
    }
    return {name: frame.reset_index(drop=True) for name, frame in out.items()}


def _write_folder(frames: dict[str, pd.DataFrame], folder: Path, fmt: str) -> Path:
    if folder.exists() and not folder.is_dir():
        raise MesostatsError(f"{folder} is a file; give a folder to save the study in.")
    clashes = [
        f"{name}.{ext}"
        for name in frames
        for ext in ("csv", "parquet", "xlsx")
        if (folder / f"{name}.{ext}").exists()
    ]
    if clashes:
        raise MesostatsError(
            f"{folder} already holds {', '.join(clashes)}; save to a new or empty folder "
            "(nothing was overwritten)."
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        if fmt == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False, lineterminator="\n")
        else:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def _sql_type(series: pd.Series) -> Any:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return sa.Boolean()
    if pd.api.types.is_integer_dtype(dtype):
        return sa.BigInteger()
    if pd.api.types.is_float_dtype(dtype):
        return sa.Float(precision=53)
    return sa.Text()


def _write_database(frames: dict[str, pd.DataFrame], study: Study, target: Any) -> None:
    shown = masked_url(target)
    engine: Engine | None = None
    try:
        if isinstance(target, Connection):
            _create_and_fill(target, frames, study, shown)
            return
        connectable = target if isinstance(target, Engine) else None
        if connectable is None:
            engine = connectable = sa.create_engine(sa.make_url(target))
        with connectable.begin() as connection:
            _create_and_fill(connection, frames, study, shown)
    except SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split()).splitlines()[0]
        password = None
        try:
            password = sa.make_url(target).password if isinstance(target, str) else None
        except (ValueError, SQLAlchemyError):
            pass
        if password:
            reason = reason.replace(str(password), "***")
        raise MesostatsError(f"cannot write the study to {shown}: {reason[:300]}") from None
    except ImportError as exc:
        raise MesostatsError(f"the database driver for {shown} is not installed: {exc}") from None
    finally:
        if engine is not None:
            engine.dispose()


def _create_and_fill(
    connection: Connection, frames: dict[str, pd.DataFrame], study: Study, shown: str
) -> None:
    existing = {n.lower() for n in sa.inspect(connection).get_table_names()}
    clashes = [name for name in frames if name.lower() in existing]
    if clashes:
        raise MesostatsError(
            f"the database {shown} already has the table(s) {', '.join(clashes)}; save to a "
            "database without them (nothing was overwritten)."
        )
    metadata = sa.MetaData()
    for name, frame in frames.items():
        key = [k for k in study.schema.tables[name].primary_key if k in frame.columns]
        columns = [
            sa.Column(str(col), _sql_type(frame[col]), primary_key=str(col) in key)
            for col in frame.columns
        ]
        sa.Table(name, metadata, *columns)
    metadata.create_all(connection)
    for name, frame in frames.items():
        _insert_rows(connection, metadata.tables[name], frame)


def _db_values(column: Any) -> list[Any]:
    """A column as driver values; dates as ISO text (read back by the ``date`` type)."""
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        column = column.dt.strftime("%Y-%m-%d")
    values: list[Any] = column.to_numpy(dtype=object, na_value=None).tolist()
    return values


def _insert_rows(connection: Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    """The rows in chunks, through the driver's own ``executemany`` (SQLAlchemy's per-row
    parameter processing costs more than the database's work)."""
    compiled = table.insert().compile(dialect=connection.dialect)
    names = list(compiled.params)  # the bind names, in column order (escaped where needed)
    for start in range(0, len(frame), _CHUNK_ROWS):
        chunk = frame.iloc[start : start + _CHUNK_ROWS]
        columns = [_db_values(chunk[col]) for col in chunk.columns]
        rows: list[Any] = list(zip(*columns, strict=True))
        if not compiled.positional:
            rows = [dict(zip(names, row, strict=True)) for row in rows]
        if rows:
            connection.exec_driver_sql(str(compiled), rows)
