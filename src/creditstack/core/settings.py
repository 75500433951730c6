"""Settings from the environment (`CREDITSTACK_*`), with embedded defaults that work on a fresh machine."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process settings. Every service reads the same object; a service uses the fields it needs."""

    model_config = SettingsConfigDict(env_prefix="CREDITSTACK_", extra="ignore")

    #: Working directory for the embedded default (SQLite files, keys). Relative to the current directory.
    var_dir: Path = Path("var")
    #: The platform database. Empty means SQLite at `{var_dir}/platform.db`.
    database_url: str = ""
    #: IANA time zone of the platform's business day.
    timezone: str = "Asia/Shanghai"
    #: Rule sets in force (policy context), comma separated.
    policy_rule_sets: str = "cn-2021-bank-internet-loans,cn-2025-microlending,rate-cap-24"
    #: Largest number of entries one ledger batch may carry.
    ledger_batch_entries_max: int = 10_000
    #: Largest page any list endpoint returns.
    page_size_max: int = 500
    #: Largest request body the HTTP API reads, in bytes.
    request_body_bytes_max: int = 16 * 1024 * 1024

    def platform_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.var_dir / 'platform.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
