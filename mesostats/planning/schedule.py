"""Running the trials of a power study in chunks: in process, on joblib's loky processes, or
on a ``dask.distributed`` cluster. Finished chunks are kept when a worker dies; the chunk that
was running is retried, and one that keeps killing its worker is reported as failed trials.
"""

from __future__ import annotations

import math
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mesostats.exceptions import ModelSpecError
from mesostats.planning.trials import _NO_RESULT, _run_chunk, _run_trial, _TrialPlan

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class _Chunk:
    n_subjects: int
    simulations: tuple[int, ...]


@dataclass
class _Collected:
    """Trial rows as they arrive, and a progress callback."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    on_done: Callable[[int], None] = lambda k: None

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.rows.extend(rows)
        self.on_done(len(rows))

    def fail_chunk(self, chunk: _Chunk, reason: str) -> None:
        self.add(
            [
                (chunk.n_subjects, j, *_NO_RESULT, reason, math.nan, math.nan)
                for j in chunk.simulations
            ]
        )


def _chunks(grid: Sequence[int], n_sims: int, chunk_size: int) -> list[_Chunk]:
    return [
        _Chunk(n, tuple(range(start, min(start + chunk_size, n_sims))))
        for n in grid
        for start in range(0, n_sims, chunk_size)
    ]


def _run_in_process(plan: _TrialPlan, chunks: Sequence[_Chunk], out: _Collected) -> None:
    for chunk in chunks:
        for j in chunk.simulations:
            out.add([_run_trial(plan, chunk.n_subjects, j)])


def _run_joblib(
    plan: _TrialPlan, chunks: Sequence[_Chunk], out: _Collected, n_jobs: int, retries: int
) -> None:
    """Chunks on joblib's loky worker processes; survives workers that die.

    A dead worker breaks the whole pool, so every chunk that was not finished is resubmitted
    (finished ones are kept). After a second broken round, the remaining chunks run one at a
    time so that a chunk that kills its worker is identified: it gets ``retries`` more
    attempts, then its trials are reported as failed with the reason.
    """
    from joblib import Parallel, delayed  # joblib: only with workers

    pending = list(chunks)
    deaths = 0
    while pending and deaths < 2:
        done: set[_Chunk] = set()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # joblib's note on a lost worker
                results = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")(
                    delayed(_run_chunk_tagged)(plan, chunk) for chunk in pending
                )
                for chunk, rows in results:
                    out.add(rows)
                    done.add(chunk)
        except Exception as err:
            if not _is_worker_death(err):
                raise
            deaths += 1
        pending = [c for c in pending if c not in done]
    for chunk in pending:  # isolate: one chunk per pool, so a death is attributed to it
        last = ""
        for _attempt in range(retries + 1):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    [(_, rows)] = Parallel(n_jobs=2, backend="loky")(
                        [delayed(_run_chunk_tagged)(plan, chunk)]
                    )
            except Exception as err:
                if not _is_worker_death(err):
                    raise
                last = f"{type(err).__name__}: {str(err).splitlines()[0]}"
                continue
            out.add(rows)
            break
        else:
            out.fail_chunk(
                chunk,
                "worker process died each time it ran this chunk of trials (also alone, "
                f"{retries + 1} time{'s' if retries else ''}); last error: {last}",
            )


def _run_chunk_tagged(plan: _TrialPlan, chunk: _Chunk) -> tuple[_Chunk, list[tuple[Any, ...]]]:
    return chunk, _run_chunk(plan, chunk.n_subjects, chunk.simulations)


def _is_worker_death(err: BaseException) -> bool:
    from concurrent.futures.process import BrokenProcessPool  # to recognise a dead worker

    # to recognise a dead worker
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    return isinstance(err, (TerminatedWorkerError, BrokenProcessPool))


def _dask_client(client: Any, n_jobs: int) -> tuple[Any, Callable[[], None]]:
    """A ``dask.distributed`` client and a function that closes what we opened."""
    try:
        import distributed  # optional extra (dask.distributed)
    except ImportError as err:
        raise ImportError(
            "backend='dask' needs dask.distributed, which is not installed. Install the "
            "optional extra: pip install 'mesostats[distributed]' (or use backend='loky')."
        ) from err
    if isinstance(client, distributed.Client):
        return client, lambda: None
    if isinstance(client, str):
        opened = distributed.Client(client)
        return opened, opened.close
    if client is not None:
        raise ModelSpecError(
            f"client must be a dask.distributed.Client or a scheduler address such as "
            f"'tcp://127.0.0.1:8786', not {type(client).__name__}."
        )
    try:
        return distributed.default_client(), lambda: None
    except ValueError:  # no client yet: a temporary local cluster with n_jobs processes
        cluster = distributed.LocalCluster(
            # ":0": any free port for the dashboard (None would still take the default 8787)
            n_workers=n_jobs,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        )
        local = distributed.Client(cluster)

        def close() -> None:
            local.close()
            cluster.close()

        return local, close


def _run_dask(
    plan: _TrialPlan,
    chunks: Sequence[_Chunk],
    out: _Collected,
    client: Any,
    n_jobs: int,
    retries: int,
) -> None:
    """Chunks as dask futures; survives workers that die.

    The scheduler reschedules the tasks of a dead worker itself, and gives up on a task
    (``KilledWorker``) after ``distributed.scheduler.allowed-failures`` deaths. Tasks merely
    queued on a dying worker are blamed too, so chunks that got ``KilledWorker`` are run
    again at the end, one at a time (a death is then theirs alone), up to ``retries`` times;
    a chunk that still kills its worker, or raises after dask's own ``retries``, is
    reported as failed trials with the reason.
    """
    dask_client, close = _dask_client(client, n_jobs)
    import distributed  # optional extra (dask.distributed)

    tag = uuid.uuid4().hex[:12]

    def submit(chunk: _Chunk, attempt: int) -> Any:
        key = f"mesostats-power-{tag}-{chunk.n_subjects}-{chunk.simulations[0]}-{attempt}"
        return dask_client.submit(
            _run_chunk,
            plan,
            chunk.n_subjects,
            chunk.simulations,
            key=key,
            pure=False,
            retries=retries,
        )

    def outcome(future: Any, chunk: _Chunk) -> str | None:
        """Store the chunk's rows; return why it failed (None when it worked)."""
        try:
            out.add(future.result())
        except distributed.KilledWorker as err:
            return f"KilledWorker: {err}"
        except Exception as err:
            out.fail_chunk(
                chunk, f"chunk failed after {retries} retries: {type(err).__name__}: {err}"
            )
        finally:
            future.release()
        return None

    try:
        futures = {submit(chunk, 0): chunk for chunk in chunks}
        suspects: list[tuple[_Chunk, str]] = []
        for future in distributed.as_completed(list(futures)):
            chunk = futures.pop(future)
            killed = outcome(future, chunk)
            if killed is not None:
                suspects.append((chunk, killed))
        for chunk, killed in suspects:
            for attempt in range(1, retries + 1):
                killed = outcome(submit(chunk, attempt), chunk) or ""
                if not killed:
                    break
            if killed:
                out.fail_chunk(
                    chunk,
                    "worker process died each time it ran this chunk of trials (also alone "
                    f"on the cluster, {retries} more time{'s' if retries != 1 else ''}); "
                    f"last error: {killed}",
                )
    finally:
        close()
