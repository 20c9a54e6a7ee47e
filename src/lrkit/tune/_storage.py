"""Where a study lives: in memory, a SQLite file, or a PostgreSQL database shared by many machines.

URLs are SQLAlchemy URLs as Optuna takes them. A plain ``postgresql://user@host:port/db`` is run
with psycopg 3 (installed with ``lrkit[tune]``), so no other driver is needed. Passwords never
appear in a message: every URL shown to the user goes through `mask`.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import warnings
from pathlib import Path
from typing import Any

__all__ = ["StorageError", "default_storage", "mask", "normalize_url", "open_storage"]

#: Seconds between a running trial's heartbeats, and how long without one before it is stale.
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 30


class StorageError(ValueError):
    """A storage URL that is malformed or cannot be reached (the password is never echoed)."""


def _url(url: str) -> Any:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise StorageError(
            f"`storage` must be a database URL such as sqlite:///study.db or "
            f"postgresql://user@host:5432/db, got {_mask_text(url)!r}"
        ) from None


def _mask_text(url: str) -> str:
    """Hide what looks like a password in a URL that SQLAlchemy could not parse."""
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{head}://{user}{':***' if ':' in userinfo else ''}@{host}"


def _raw_password_parts(url: str) -> list[str]:
    """The password of `url` read up to its last "@", and its pieces between raw "@"s (a driver
    that splits at the first "@" shows the rest as part of the host name)."""
    authority = url.partition("://")[2].split("/", 1)[0]
    userinfo = authority.rpartition("@")[0]
    if ":" not in userinfo:
        return []
    password = userinfo.split(":", 1)[1]
    return sorted({password, *password.split("@")} - {""}, key=len, reverse=True)


def mask(url: str) -> str:
    """`url` with its password replaced by ``***``.

    >>> mask("postgresql://ann:s3cret@db.example:5432/studies")
    'postgresql://ann:***@db.example:5432/studies'
    >>> mask("sqlite:///runs/study.db")
    'sqlite:///runs/study.db'
    >>> mask("postgresql://ann:Hunt@er2@db.example/studies"), mask("postgresql://ann@db/s?password=x&sslmode=require")
    ('postgresql://ann:***@db.example/studies', 'postgresql://ann@db/s?password=***&sslmode=require')
    """
    rest = url.partition("://")[2]
    if rest.split("/", 1)[0].count("@") > 1:  # a raw "@" in the password: the last "@" ends it
        text = _mask_text(url)
    else:
        try:
            text = _url(url).render_as_string(hide_password=True)
        except StorageError:
            text = _mask_text(url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", text)  # libpq's password parameter


def database_failure(error: BaseException, url: str | None) -> str | None:
    """One line for an error of the study's database under a running study (the server went away,
    a lost connection: Optuna's `StorageInternalError`, SQLAlchemy's or psycopg's errors), with
    the URL's password hidden; None for any other error."""
    import optuna

    kinds = tuple(type(e) for e in (error, error.__cause__, error.__context__) if e is not None)
    if not any(
        issubclass(k, optuna.exceptions.StorageInternalError)
        or k.__module__.split(".")[0] in ("sqlalchemy", "psycopg")
        for k in kinds
    ):
        return None
    deepest = error.__cause__ or error.__context__ or error
    text = (str(deepest).strip().splitlines() or [type(deepest).__name__])[0]
    if url is not None:
        with contextlib.suppress(StorageError):
            password = _url(normalize_url(url)).password
            if password:
                text = text.replace(str(password), "***")
    where = "" if url is None else f" ({mask(url)})"
    return f"the study's database failed{where}: {text}"


def normalize_url(url: str) -> str:
    """The URL Optuna is given: ``postgresql://`` and ``postgres://`` run on psycopg 3.

    >>> normalize_url("postgresql://ann@127.0.0.1:5432/db")
    'postgresql+psycopg://ann@127.0.0.1:5432/db'
    >>> normalize_url("sqlite:///study.db")
    'sqlite:///study.db'
    """
    if not isinstance(url, str) or not url.strip():
        raise StorageError(f"`storage` must be a database URL, got storage={url!r}")
    url = url.strip()
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            url = "postgresql+psycopg://" + url[len(scheme) :]
    parsed = _url(url)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql", "mysql"):
        raise StorageError(
            f"`storage` must be a sqlite:// or postgresql:// URL, got {mask(url)!r} (backend {backend!r})"
        )
    return url


def default_storage(directory: str | Path) -> str:
    """The SQLite file a named study is kept in when no storage is given: ``DIR/lrkit-studies.db``."""
    return f"sqlite:///{Path(directory) / 'lrkit-studies.db'}"


def _prepare_sqlite(parsed: Any, shown: str, create: bool) -> None:
    """Create the file's folder (with `create`; else the file must exist) and switch the database
    to write-ahead logging.

    WAL lets readers and one writer work at once, which with a generous busy timeout keeps several
    local worker processes from failing with "database is locked".
    """
    database = parsed.database
    if not database or database == ":memory:":
        raise StorageError(
            f"`storage` {shown!r}: an in-memory SQLite database cannot be shared by workers; "
            "give a file (sqlite:///study.db) or leave `storage` unset for an in-memory study"
        )
    path = Path(database)
    if not create and not path.is_file():
        raise StorageError(f"`storage` {shown!r}: there is no SQLite file {str(path)!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=60) as con:
            con.execute("PRAGMA journal_mode=WAL")
    except (OSError, sqlite3.Error) as e:
        raise StorageError(f"`storage` {shown!r}: cannot open the SQLite file: {e}") from None


def _check_postgres(parsed: Any, shown: str, raw: str) -> None:
    """Connect once with a short timeout, so an unreachable server fails fast and clearly."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - installed with lrkit[tune]
        raise ImportError("a PostgreSQL storage needs psycopg: pip install 'lrkit[tune]'") from None
    kwargs: dict[str, Any] = {
        "host": parsed.host or "localhost",
        "port": parsed.port or 5432,
        "dbname": parsed.database or "postgres",
        "connect_timeout": 5,
    }
    if parsed.username:
        kwargs["user"] = parsed.username
    if parsed.password:
        kwargs["password"] = parsed.password
    # libpq's parameters given in the query (sslmode, a Unix socket's host, password, ...)
    kwargs.update({k: v for k, v in parsed.query.items() if isinstance(v, str)})
    try:
        psycopg.connect(**kwargs).close()
    except psycopg.Error as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        for secret in (parsed.password, kwargs.get("password"), *_raw_password_parts(raw)):
            if secret:
                reason = reason.replace(str(secret), "***")
        raise StorageError(f"`storage` {shown!r}: cannot connect to the database: {reason}") from None


def open_storage(
    url: str | None,
    *,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    grace_period: int = GRACE_PERIOD,
    max_retry: int = 3,
    create: bool = True,
) -> Any:
    """An Optuna storage for `url`: in memory when None, else an RDB storage with heartbeats.

    A SQLite file is created when it does not exist, unless `create` is False (reading a study).

    A running trial writes a heartbeat every `heartbeat_interval` seconds; a trial without one for
    `grace_period` seconds (its worker crashed or was killed) is marked failed by the next worker
    that starts a trial, and queued again with the same parameters, at most `max_retry` times.
    """
    import optuna

    if url is None:
        return optuna.storages.InMemoryStorage()
    for key, value in (("heartbeat_interval", heartbeat_interval), ("grace_period", grace_period)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{key}` must be an int >= 1 (seconds), got {key}={value!r}")
    if grace_period <= heartbeat_interval:
        raise ValueError(
            f"`grace_period` must be longer than `heartbeat_interval`, got grace_period={grace_period}, "
            f"heartbeat_interval={heartbeat_interval}"
        )
    full = normalize_url(url)
    shown = mask(url)
    parsed = _url(full)
    engine_kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        _prepare_sqlite(parsed, shown, create)
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif parsed.get_backend_name() == "postgresql":
        _check_postgres(parsed, shown, full)
        engine_kwargs["pool_pre_ping"] = True
    with warnings.catch_warnings():  # heartbeats are marked experimental; they are what we rely on
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry: dict[str, Any]
        if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
            retry = {
                "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry)
            }
        else:  # Optuna < 5
            retry = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry)}
        try:
            return optuna.storages.RDBStorage(
                full,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                **retry,
            )
        except Exception as e:  # SQLAlchemy's errors carry the URL; say what failed without it
            raise StorageError(
                f"`storage` {shown!r}: cannot open the study storage: {type(e).__name__}"
            ) from None
