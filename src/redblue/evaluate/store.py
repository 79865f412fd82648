"""The run store: every run's spec, metrics and per-sample outputs in one SQLite file.

A :class:`RunSpec` says what a run is (command, config, model and its weights hash,
data hashes, seed) and what it ran on (package versions, git revision). Its
:attr:`~RunSpec.key` hashes only what defines the run, so the same run started
again finds its unfinished predecessor and resumes it::

    store = RunStore("redblue-out")                  # redblue-out/runs.db
    run = store.start(RunSpec(kind="eval", name="refusal", config={...}, seed=0))
    todo = [p for p in prompts if p.id not in run.stored_keys]
    run.add_samples([{"key": p.id, "completion": ...} for p in todo])
    run.log_rate("refusal_rate", Rate(41, 50))
    run.finish()
    store.compare(run_a.id, run_b.id)                # metric deltas, b - a, with intervals

Every write is one transaction (a run killed midway leaves whole batches or
nothing), the database is in WAL mode with a busy timeout so that several
processes or threads may write at once, and each operation opens its own
connection, so a :class:`RunStore` can be shared between threads. Files a run
produces go to ``<store folder>/artifacts/<run id>/``.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import platform
import secrets
import shlex
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from redblue.errors import ConfigError, DataError
from redblue.evaluate.stats import Rate, newcombe_interval, wilson_interval

if TYPE_CHECKING:
    pass

__all__ = [
    "SCHEMA_VERSION",
    "Metric",
    "MetricDelta",
    "Run",
    "RunSpec",
    "RunStore",
    "git_revision",
    "package_versions",
]

#: Bumped whenever the tables change; a store from a newer redblue is refused.
SCHEMA_VERSION = 1
#: The file a store folder holds.
DEFAULT_NAME = "runs.db"
#: How long a writer waits for another one to finish before giving up.
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    created TEXT NOT NULL,
    finished TEXT,
    spec TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_key ON runs (key, status);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    n INTEGER,
    successes INTEGER,
    ci_low REAL,
    ci_high REAL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
"""


# -- what a run is --------------------------------------------------------------------------


def package_versions() -> dict[str, str | None]:
    """Versions of python, redblue, torch and transformers (None where not installed).

    Read from the installed metadata, so torch is not imported."""
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("redblue", "torch", "transformers"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return versions


def git_revision(cwd: str | Path | None = None) -> str | None:
    """The commit checked out in ``cwd`` (``+dirty`` with uncommitted changes); None outside
    a repository or without git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    revision = head.stdout.strip()
    return f"{revision}+dirty" if status.returncode == 0 and status.stdout.strip() else revision


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)


@dataclass(frozen=True)
class RunSpec:
    """What a run is and what it ran on.

    ``command``, ``versions``, ``git_revision`` and ``created`` default to the current
    process, interpreter, working directory and time.
    """

    kind: str
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    model_hash: str = ""
    data_hashes: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    command: str = field(default_factory=lambda: shlex.join(sys.argv))
    versions: dict[str, str | None] = field(default_factory=package_versions)
    git_revision: str | None = field(default_factory=git_revision)
    created: str = field(default_factory=_now)

    @property
    def key(self) -> str:
        """A hash of what defines the run: kind, name, config, model and weights hash, data
        hashes and seed. The command line, versions, git revision and time do not enter it,
        so the same run started again (from a fixed checkout, say) resumes."""
        defining = [
            self.kind,
            self.name,
            self.config,
            self.model,
            self.model_hash,
            self.data_hashes,
            self.seed,
        ]
        return hashlib.sha256(_json(defining).encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"key": self.key}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


# -- what a run measured --------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A logged number; ``n``/``successes`` make it a rate, ``ci`` is its 95% interval."""

    name: str
    value: float
    n: int | None = None
    successes: int | None = None
    ci: tuple[float, float] | None = None

    @property
    def rate(self) -> Rate | None:
        if self.n is None or self.successes is None:
            return None
        return Rate(self.successes, self.n)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ci": list(self.ci) if self.ci is not None else None}

    def __str__(self) -> str:
        text = f"{int(self.value):,}" if self.value.is_integer() else f"{self.value:.4g}"
        if self.ci is not None:
            text = f"{self.value:.3f} [{self.ci[0]:.3f}, {self.ci[1]:.3f}]"
        if self.n is not None and self.successes is not None:
            text += f" ({self.successes}/{self.n})"
        return text


@dataclass(frozen=True)
class MetricDelta:
    """A metric in two runs: ``delta = b - a`` and, when both are rates, Newcombe's 95% interval."""

    name: str
    a: Metric | None
    b: Metric | None
    delta: float | None
    ci: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "a": self.a.to_dict() if self.a is not None else None,
            "b": self.b.to_dict() if self.b is not None else None,
            "delta": self.delta,
            "ci": list(self.ci) if self.ci is not None else None,
        }


def _delta(name: str, a: Metric | None, b: Metric | None) -> MetricDelta:
    if a is None or b is None:
        return MetricDelta(name, a, b, None, None)
    ci = None
    rate_a, rate_b = a.rate, b.rate
    if rate_a is not None and rate_b is not None and rate_a.n > 0 and rate_b.n > 0:
        ci = newcombe_interval(rate_a.successes, rate_a.n, rate_b.successes, rate_b.n)
    return MetricDelta(name, a, b, b.value - a.value, ci)


# -- the store ------------------------------------------------------------------------------


class RunStore:
    """Runs in ``path``: a ``.db`` file, or a folder holding ``runs.db`` (and ``artifacts/``).

    With ``create=False`` a missing store is an error instead of a new empty one.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        path = Path(path)
        self.path = path / DEFAULT_NAME if path.is_dir() or not path.suffix else path
        self.folder = self.path.parent
        if not self.path.is_file():
            if not create:
                raise ConfigError(
                    "no run store here",
                    where=str(self.path),
                    fix="pass --store with the runs.db of an earlier run (or its folder)",
                )
            self.folder.mkdir(parents=True, exist_ok=True)
        self._migrate()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            con.execute("PRAGMA foreign_keys = ON")
            # With WAL, a killed process loses nothing committed; only a power cut may lose
            # the last commits (never the file), and commits skip an fsync each.
            con.execute("PRAGMA synchronous = NORMAL")
            yield con
        except sqlite3.DatabaseError as e:
            if "not a database" in str(e) or "malformed" in str(e):
                raise DataError(
                    f"not a readable run store ({e})",
                    where=str(self.path),
                    fix="point --store at a runs.db written by redblue, or move this file away",
                ) from None
            raise
        finally:
            con.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: every statement in the block is stored, or none is."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _migrate(self) -> None:
        with self._connect() as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"the run store has schema version {version}; this redblue reads up to "
                    f"{SCHEMA_VERSION}",
                    where=str(self.path),
                    fix="upgrade redblue, or use another --store",
                )
            con.execute("PRAGMA journal_mode = WAL")  # persistent; not allowed in a transaction
        with self._write() as con:
            # Checked again inside the transaction: another process may have won the race.
            if con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        con.execute(statement)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- runs -------------------------------------------------------------------------------

    def start(self, spec: RunSpec) -> Run:
        """A new run for ``spec``, or the unfinished (running or failed) run with the same
        key, which then resumes: its :attr:`Run.stored_keys` are the samples already stored."""
        with self._write() as con:
            row = con.execute(
                "SELECT * FROM runs WHERE key = ? AND status != 'done' "
                "ORDER BY created DESC LIMIT 1",
                (spec.key,),
            ).fetchone()
            if row is not None:
                con.execute("UPDATE runs SET status = 'running' WHERE id = ?", (row[0],))
                keys = con.execute("SELECT key FROM samples WHERE run_id = ?", (row[0],))
                run = self._run(row, status="running")
                run.stored_keys = {k for (k,) in keys}
                run.resumed = True
                return run
            created = _now()
            values = (spec.key, spec.kind, spec.name, spec.model, created, _json(spec.to_dict()))
            for _ in range(10):
                run_id = _new_id()
                try:
                    con.execute(
                        "INSERT INTO runs (id, key, kind, name, model, status, created, spec) "
                        "VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                        (run_id, *values),
                    )
                    break
                except sqlite3.IntegrityError:
                    continue  # the same id drawn twice within a second
            else:
                raise RuntimeError("could not draw a fresh run id")
        return Run(self, run_id, spec, "running", created)

    def get(self, run_id: str) -> Run:
        """The run ``run_id``, or the only one whose id starts with it."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT * FROM runs WHERE substr(id, 1, ?) = ? ORDER BY id",
                (len(run_id), run_id),
            ).fetchall()
            exact = [r for r in rows if r[0] == run_id]
            if exact or len(rows) == 1:
                return self._run((exact or rows)[0])
            if rows:
                shown = ", ".join(r[0] for r in rows[:8]) + (" ..." if len(rows) > 8 else "")
                raise ConfigError(
                    f"run id {run_id!r} is ambiguous: {len(rows)} runs start with it ({shown})",
                    where=str(self.path),
                    fix="give more characters of the id",
                )
            ids = [i for (i,) in con.execute("SELECT id FROM runs")]
        close = difflib.get_close_matches(run_id, ids, n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(
            f"no run {run_id!r}",
            where=str(self.path),
            fix=f"{hint}see `redblue runs list` for the ids",
        )

    def compare(self, a: str | Run, b: str | Run) -> list[MetricDelta]:
        """Every metric of runs ``a`` and ``b`` (ids, prefixes or runs): ``b - a``, with
        Newcombe's 95% interval where both are rates. Metrics only one run has come last,
        with no delta."""
        run_a = a if isinstance(a, Run) else self.get(a)
        run_b = b if isinstance(b, Run) else self.get(b)
        metrics_a = {m.name: m for m in run_a.metrics()}
        metrics_b = {m.name: m for m in run_b.metrics()}
        both = [name for name in metrics_a if name in metrics_b]
        one = [name for name in metrics_a if name not in metrics_b]
        one += [name for name in metrics_b if name not in metrics_a]
        return [_delta(name, metrics_a.get(name), metrics_b.get(name)) for name in both + one]

    def _run(self, row: Sequence[Any], status: str | None = None) -> Run:
        run_id, _key, _kind, _name, _model, stored_status, created, finished, spec = row
        return Run(
            self,
            run_id,
            RunSpec.from_dict(json.loads(spec)),
            status or stored_status,
            created,
            finished,
        )

    def list(
        self, kind: str | None = None, *, status: str | None = None, limit: int | None = 50
    ) -> list[Run]:
        """Runs, newest first, optionally only those of one ``kind`` or ``status``."""
        where: list[str] = []
        args: list[str] = []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._connect() as con:
            return [self._run(row) for row in con.execute(sql, args).fetchall()]


def _new_id() -> str:
    """``YYMMDD-HHMMSS-xxxx``: the UTC start time, then 16 random bits. Sorts by time."""
    return time.strftime("%y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


@dataclass
class Run:
    """A handle on one stored run: read it, or add samples and metrics and finish it.

    Use it as a context manager to finish it as ``done``, or ``failed`` on an exception
    (a failed run resumes when started again)."""

    store: RunStore = field(repr=False)
    id: str
    spec: RunSpec
    status: str
    created: str
    finished: str | None = None
    #: Sample keys stored when :meth:`RunStore.start` returned this run.
    stored_keys: set[str] = field(default_factory=set, repr=False)
    #: Whether :meth:`RunStore.start` resumed an unfinished run.
    resumed: bool = False

    @property
    def artifacts(self) -> Path:
        """``<store folder>/artifacts/<run id>/``, created on first use."""
        folder = self.store.folder / "artifacts" / self.id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def add_samples(self, samples: Sequence[Mapping[str, Any]], *, key: str = "key") -> int:
        """Store per-sample outputs (JSON-serialisable mappings), each identified by its
        ``key`` field, in one transaction. Keys already stored are skipped, so adding the
        same samples again changes nothing. Returns how many were new."""
        rows = []
        for i, sample in enumerate(samples):
            if key not in sample:
                raise DataError(
                    f"sample {i} has no {key!r} field",
                    where=f"run {self.id}",
                    fix=f"give every sample a unique {key!r} (a prompt id, say)",
                )
            rows.append((self.id, str(sample[key]), _json(dict(sample))))
        with self.store._write() as con:
            before = con.total_changes
            con.executemany(
                "INSERT INTO samples (run_id, key, data) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, key) DO NOTHING",
                rows,
            )
            added = con.total_changes - before
        self.stored_keys.update(r[1] for r in rows)
        return added

    def log_metric(
        self,
        name: str,
        value: float,
        *,
        n: int | None = None,
        successes: int | None = None,
        ci: tuple[float, float] | None = None,
    ) -> Metric:
        """Store (or replace) a metric. With ``successes`` of ``n`` and no ``ci``, the
        interval is Wilson's."""
        if (n is None) != (successes is None):
            raise ConfigError(
                f"metric {name!r} needs both n and successes, or neither", where=f"run {self.id}"
            )
        if ci is None and n is not None and successes is not None and n > 0:
            ci = wilson_interval(successes, n)
        low, high = (float(ci[0]), float(ci[1])) if ci is not None else (None, None)
        metric = Metric(name, float(value), n, successes, ci and (float(ci[0]), float(ci[1])))
        with self.store._write() as con:
            con.execute(
                "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, name) "
                "DO UPDATE SET value = excluded.value, n = excluded.n, "
                "successes = excluded.successes, ci_low = excluded.ci_low, "
                "ci_high = excluded.ci_high",
                (self.id, name, metric.value, n, successes, low, high),
            )
        return metric

    def log_rate(self, name: str, rate: Rate) -> Metric:
        """Store a rate with its Wilson interval."""
        return self.log_metric(name, rate.value, n=rate.n, successes=rate.successes)

    def finish(self, status: str = "done") -> None:
        """Mark the run ``done`` (or ``failed``)."""
        if status not in ("done", "failed"):
            raise ConfigError(f"unknown run status {status!r}", fix="use 'done' or 'failed'")
        finished = _now()
        with self.store._write() as con:
            con.execute(
                "UPDATE runs SET status = ?, finished = ? WHERE id = ?", (status, finished, self.id)
            )
        self.status, self.finished = status, finished

    def metrics(self) -> list[Metric]:
        """Metrics in the order they were first logged."""
        with self.store._connect() as con:
            rows = con.execute(
                "SELECT name, value, n, successes, ci_low, ci_high FROM metrics "
                "WHERE run_id = ? ORDER BY rowid",
                (self.id,),
            ).fetchall()
        return [
            Metric(name, value, n, k, (low, high) if low is not None else None)
            for name, value, n, k, low, high in rows
        ]

    def samples(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Stored samples in the order they were added."""
        sql = "SELECT data FROM samples WHERE run_id = ? ORDER BY rowid"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.store._connect() as con:
            return [json.loads(data) for (data,) in con.execute(sql, (self.id,))]

    def sample_count(self) -> int:
        with self.store._connect() as con:
            row = con.execute("SELECT COUNT(*) FROM samples WHERE run_id = ?", (self.id,))
            return int(row.fetchone()[0])

    def to_dict(self) -> dict[str, Any]:
        """The run, its metrics and sample count, as JSON-ready values."""
        folder = self.store.folder / "artifacts" / self.id
        return {
            "id": self.id,
            "status": self.status,
            "created": self.created,
            "finished": self.finished,
            "spec": self.spec.to_dict(),
            "metrics": [m.to_dict() for m in self.metrics()],
            "n_samples": self.sample_count(),
            "artifacts": str(folder) if folder.is_dir() else None,
        }

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.finish("failed")
        elif self.status == "running":
            self.finish("done")
