"""Durable state: the job ledger, the quota ledger and guild policy, in one SQLite file or one
PostgreSQL database (``postgresql://`` URL) that several bot processes share.

Never imports discord; no SQL lives outside this package. Open it once with
``async with Storage.open(path_or_url, QuotaSettings.from_env(env)) as storage`` and use
``storage.jobs``, ``storage.quota``, ``storage.policy``, ``storage.leases`` and ``storage.cluster``.
``python -m storage copy --to postgresql://...`` moves an SQLite install to PostgreSQL.
"""

from storage.models import (
    TERMINAL_STATES,
    Balance,
    Ban,
    BlocklistEntry,
    DatabaseOpenError,
    GuildPolicy,
    GuildStats,
    InvalidSettingError,
    Job,
    JobEvent,
    JobKind,
    JobNotFoundError,
    JobState,
    LedgerEntry,
    LedgerKind,
    NewJob,
    QuotaExceededError,
    SchemaTooNewError,
    StorageError,
    TooManyJobsError,
)
from storage.settings import DEFAULT_DATABASE_PATH, QuotaSettings, database_path_from_env
from storage.store import Storage

__all__ = [
    "DEFAULT_DATABASE_PATH",
    "TERMINAL_STATES",
    "Balance",
    "Ban",
    "BlocklistEntry",
    "DatabaseOpenError",
    "GuildPolicy",
    "GuildStats",
    "InvalidSettingError",
    "Job",
    "JobEvent",
    "JobKind",
    "JobNotFoundError",
    "JobState",
    "LedgerEntry",
    "LedgerKind",
    "NewJob",
    "QuotaExceededError",
    "QuotaSettings",
    "SchemaTooNewError",
    "Storage",
    "StorageError",
    "TooManyJobsError",
    "database_path_from_env",
]
