"""SQL databases: the study's tables read through SQLAlchemy, in chunks, labelled by key.

A source is a database when it is a SQLAlchemy URL (``sqlite:///study.db``,
``postgresql+psycopg://user:pass@host/db``, any dialect SQLAlchemy knows), a
:class:`sqlalchemy.engine.URL`, or an :class:`~sqlalchemy.engine.Engine` /
:class:`~sqlalchemy.engine.Connection` (used as given, never closed or disposed here).

Each table of the study is read from the database table of the same name (matched without
regard to case), or from what ``tables=`` maps it to: another table name or a ``SELECT``.
Rows arrive in chunks (``yield_per``, server-side cursors where the driver has them); each
chunk is turned into pyarrow arrays at once, so the Python rows of only one chunk exist at a
time; the table is held once, as Arrow columns, and each column's Arrow chunks are released
as soon as that column is a pandas Series (never two full copies of the table).

Row labels are the source's own terms: the value of the table's **primary key** as the
database declares it (a scalar, or a tuple for a composite key), so a problem reads "sessions,
row ('S01', 2)" with ``origin`` "table sessions"; such a table is read in key order (a table
has no row order of its own). A SQLite table without a primary key is labelled (and ordered)
by its ``rowid``; another table, view or ``SELECT`` without one numbers its rows from 1 in the
order the database returns them.

Everything that goes wrong is one problem in the log, never a driver traceback: a URL that
cannot be parsed, a driver that is not installed, a server that cannot be reached (the URL is
always shown with its password masked, and the password is removed from the driver's message),
a missing table, a ``SELECT`` that fails.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mesostats.data.parse import RawTable
from mesostats.data.problems import ProblemLog
from mesostats.data.schema import StudySchema

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine

__all__ = ["CHUNK_ROWS", "is_database_source", "masked_url", "read_database"]

#: Rows fetched per chunk.
CHUNK_ROWS = 65_536
_URL_START = re.compile(r"^[A-Za-z][\w+.-]*://")
_SELECT = re.compile(r"^\s*(select|with)\s", re.IGNORECASE)
_ROWID = "_mesostats_rowid"


def sqlalchemy_module() -> Any:
    """SQLAlchemy, imported when a database is first used: its 0.1 s import is not paid by
    studies read from files (an Engine or URL object passed in means it is loaded already)."""
    import sqlalchemy  # heavy: loaded only for database sources and targets
    import sqlalchemy.exc  # SQLAlchemy: only when a database is used

    return sqlalchemy


def is_database_source(source: Any) -> bool:
    """A SQLAlchemy URL (string or object), Engine or Connection."""
    if isinstance(source, str):
        return bool(_URL_START.match(source))
    sa = sys.modules.get("sqlalchemy")  # an Engine, Connection or URL object needs it loaded
    engine = getattr(sa, "engine", None)
    return engine is not None and isinstance(source, (engine.Engine, engine.Connection, engine.URL))


def _is_connectable(source: Any) -> bool:
    sa = sys.modules.get("sqlalchemy")
    engine = getattr(sa, "engine", None)
    return engine is not None and isinstance(source, (engine.Engine, engine.Connection))


def masked_url(source: Any) -> str:
    """The database's URL with its password replaced by ``***``."""
    sa = sqlalchemy_module()
    if _is_connectable(source):
        source = source.engine.url
    try:
        url = sa.make_url(source)
    except (sa.exc.ArgumentError, ValueError, TypeError):
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", str(source))
    return url.render_as_string(hide_password=True)


def _safe(message: str, source: Any) -> str:
    """A driver's message on one line, without the password of ``source``."""
    sa = sqlalchemy_module()
    password = None
    try:
        url = source.engine.url if _is_connectable(source) else sa.make_url(source)
        password = url.password
    except (sa.exc.ArgumentError, ValueError, TypeError, AttributeError):
        pass
    text = " ".join(str(message).split())
    if password:
        text = text.replace(str(password), "***")
    return text[:300]


def read_database(
    source: Any,
    schema: StudySchema,
    log: ProblemLog,
    *,
    tables: Mapping[str, str] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[dict[str, RawTable], str]:
    """Read every table of the study from a database; problems go to ``log``.

    Returns the tables read and a description of the source (URL with the password masked).
    """
    sa = sqlalchemy_module()
    shown = masked_url(source)
    description = f"database {shown}"
    mapping = dict(tables or {})
    for key in mapping:
        if key not in schema.tables:
            log.add_one(
                "study",
                None,
                None,
                key,
                "unknown_table",
                f"tables= names {key!r}, which is not a table of a study "
                f"({', '.join(schema.table_names)}).",
            )
    engine: Engine | None = None
    try:
        if isinstance(source, sa.engine.Connection):
            return _read_all(source, schema, log, mapping, chunk_rows, shown), description
        if isinstance(source, sa.engine.Engine):
            connectable = source
        else:
            url = sa.make_url(source)
            if url.get_backend_name() == "sqlite" and not _sqlite_exists(url, log, shown):
                return {}, description
            engine = connectable = sa.create_engine(url)
        with connectable.connect() as connection:
            return _read_all(connection, schema, log, mapping, chunk_rows, shown), description
    except (sa.exc.ArgumentError, ValueError) as exc:
        _source_problem(log, shown, f"{shown} is not a database URL SQLAlchemy can read: {exc}")
    except sa.exc.NoSuchModuleError as exc:
        _source_problem(
            log,
            shown,
            f"no database driver for {shown}: {_safe(str(exc), source)}. Install the driver "
            "(e.g. pip install 'psycopg[binary]' for postgresql+psycopg://).",
        )
    except ImportError as exc:
        _source_problem(
            log, shown, f"the database driver for {shown} is not installed ({exc.name})."
        )
    except sa.exc.SQLAlchemyError as exc:
        reason = _safe(str(getattr(exc, "orig", None) or exc).splitlines()[0], source)
        _source_problem(
            log,
            shown,
            f"cannot read the database {shown}: {reason}. Check the host, port, database "
            "name, user and password, and that the server is running.",
        )
    finally:
        if engine is not None:
            engine.dispose()
    return {}, description


def _source_problem(log: ProblemLog, shown: str, message: str) -> None:
    log.add_one("study", None, None, shown, "source", message)


def _sqlite_exists(url: URL, log: ProblemLog, shown: str) -> bool:
    """SQLite creates a missing file on connect: refuse a database file that does not exist."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return True
    if Path(database).is_file():
        return True
    _source_problem(log, shown, f"the SQLite database file {database} does not exist ({shown}).")
    return False


def _read_all(
    connection: Connection,
    schema: StudySchema,
    log: ProblemLog,
    mapping: Mapping[str, str],
    chunk_rows: int,
    shown: str,
) -> dict[str, RawTable]:
    sa = sqlalchemy_module()
    inspector = sa.inspect(connection)
    views = set(inspector.get_view_names())
    present = list(inspector.get_table_names()) + sorted(views)
    by_lower = {name.lower(): name for name in present}
    out: dict[str, RawTable] = {}
    for name, table_schema in schema.tables.items():
        wanted = mapping.get(name, name)
        if _SELECT.match(wanted):
            statement: Any = sa.text(wanted)
            origin, key = "SELECT of " + name, []
        elif wanted.lower() in by_lower:
            actual = by_lower[wanted.lower()]
            origin = f"table {actual}"
            key = list(inspector.get_pk_constraint(actual).get("constrained_columns") or [])
            statement = sa.select(sa.text("*")).select_from(sa.table(actual))
            if not key and connection.dialect.name == "sqlite" and actual not in views:
                rowid: Any = sa.literal_column("rowid")  # SQLite's own key of every plain table
                statement = statement.add_columns(rowid.label(_ROWID)).order_by(rowid)
                key = [_ROWID]
            elif key:  # a table has no row order of its own: read it in key order
                statement = statement.order_by(*(sa.column(k) for k in key))
        else:
            if table_schema.required_table or name in mapping:
                log.add_one(
                    name,
                    None,
                    None,
                    wanted,
                    "missing_table",
                    f"the database {shown} has no table {wanted} (tables: "
                    f"{', '.join(sorted(present)[:20]) or 'none'}); name the table that holds "
                    f"the {name} with tables={{'{name}': 'its_name'}}.",
                )
            continue
        try:
            frame = _read_chunks(connection, statement, chunk_rows)
        except sa.exc.SQLAlchemyError as exc:
            reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
            log.add_one(name, None, None, wanted, "unreadable", f"cannot read {origin}: {reason}.")
            connection.rollback()
            continue
        rows = _row_labels(frame, key)
        if key == [_ROWID]:
            frame = frame.drop(columns=_ROWID)
            origin += " (no primary key: rows labelled by SQLite rowid)"
        elif not key:
            origin += " (no primary key: rows numbered from 1)"
        out[name] = RawTable(frame, rows, origin, None, [str(c) for c in frame.columns])
    return out


def _read_chunks(connection: Connection, statement: Any, chunk_rows: int) -> pd.DataFrame:
    """The query's rows, fetched ``chunk_rows`` at a time into Arrow columns."""
    result = connection.execution_options(stream_results=True, yield_per=chunk_rows).execute(
        statement
    )
    names = [str(k) for k in result.keys()]
    chunks: list[list[Any]] = [[] for _ in names]
    for rows in result.partitions():
        for i, values in enumerate(zip(*rows, strict=True) if rows else ()):
            chunks[i].append(_arrow_chunk(values))
    columns: dict[int, pd.Series] = {}
    for i in range(len(chunks)):  # free each column's Arrow chunks once it is a Series
        columns[i], chunks[i] = _column(chunks[i]), []
    frame = pd.DataFrame(columns, copy=False)
    if not len(columns):
        frame = pd.DataFrame(index=pd.RangeIndex(0))
    frame.columns = pd.Index(names, dtype=object)
    return frame


def _arrow_chunk(values: tuple[Any, ...]) -> pa.Array | tuple[Any, ...]:
    """One chunk of a column as Arrow (the values as they are when Arrow cannot hold them)."""
    try:
        arr = pa.array(values, from_pandas=True)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        return values
    if pa.types.is_decimal(arr.type):
        return arr.cast(pa.float64())
    return arr


def _column(parts: list[Any]) -> pd.Series:
    """A column from its chunks: one Arrow type when the chunks agree, else Python objects."""
    if not parts:
        return pd.Series([], dtype=object)
    types = {p.type for p in parts if isinstance(p, pa.Array) and not pa.types.is_null(p.type)}
    if types == {pa.int64(), pa.float64()}:
        types = {pa.float64()}
    if all(isinstance(p, pa.Array) for p in parts) and len(types) <= 1:
        target = types.pop() if types else pa.null()
        chunked = pa.chunked_array([p.cast(target) for p in parts], type=target)
        if pa.types.is_null(target):
            return pd.Series([None] * len(chunked), dtype=object)
        if pa.types.is_boolean(target):
            return pd.Series(chunked.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get))
        series = chunked.to_pandas()
        return series.astype("str") if pa.types.is_string(target) else series
    values: list[Any] = []
    for part in parts:
        values.extend(part.to_pylist() if isinstance(part, pa.Array) else part)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return pd.Series(out, dtype=object)


def _row_labels(frame: pd.DataFrame, key: list[str]) -> pd.Index:
    """The primary key's values (tuples for a composite key), else 1, 2, 3, …"""
    if key and all(k in frame.columns for k in key):
        if len(key) == 1:
            return pd.Index(frame[key[0]].to_numpy(dtype=object), dtype=object)
        arrays = [frame[k].to_numpy(dtype=object) for k in key]
        return pd.MultiIndex.from_arrays(arrays).to_flat_index()
    return pd.Index(np.arange(1, len(frame) + 1, dtype=np.int64))
