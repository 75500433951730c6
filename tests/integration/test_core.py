"""Shared kernel on a real database: business dates, the outbox, API keys; and the pure parts of time and PII."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import pytest

from creditstack.app.platform import Platform
from creditstack.core import business_date, events
from creditstack.core.clock import InvalidTimestamp, date_at_offset, local_date, parse_timestamp
from creditstack.core.errors import Unauthenticated
from creditstack.core.events import DomainEvent
from creditstack.core.security import PiiSealBroken, PiiVault, Role
from creditstack.core.tables import PLATFORM_CORE


def test_business_date_moves_only_forward(platform: Platform) -> None:
    today = platform.ledger.business_date()
    assert today == date(2026, 3, 2)  # 09:00 in Shanghai on the fixture's clock
    platform.db.run(
        lambda c: business_date.advance(c, PLATFORM_CORE, "platform", today + timedelta(days=1), platform.clock.now())
    )
    assert platform.ledger.business_date() == today + timedelta(days=1)
    with pytest.raises(business_date.BusinessDateBackwards):
        platform.db.run(lambda c: business_date.advance(c, PLATFORM_CORE, "platform", today, platform.clock.now()))


def test_external_timestamps_take_their_own_offset() -> None:
    late_evening_new_york = parse_timestamp("2014-12-31T23:30:00-05:00")
    assert date_at_offset(late_evening_new_york) == date(2014, 12, 31)
    assert local_date(late_evening_new_york, "Asia/Shanghai") == date(2015, 1, 1)
    with pytest.raises(InvalidTimestamp):
        parse_timestamp("2014-12-31T23:30:00")  # no offset: refused, not guessed


def test_outbox_positions_are_gapless_and_in_commit_order(platform: Platform) -> None:
    day = platform.ledger.business_date()

    def write(i: int) -> None:
        for j in range(10):
            platform.db.run(
                lambda c, j=j: events.flush_events(
                    c, PLATFORM_CORE, [DomainEvent("test.happened", f"w{i}", day, {"n": j})] * 2, platform.clock.now()
                )
            )

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = platform.db.run(lambda c: events.read_after(c, PLATFORM_CORE, 0, limit=1000), readonly=True)
    assert [r.position for r in rows] == list(range(1, 81))
    for worker in range(4):  # each writer's own events appear in the order it wrote them
        mine = [r.payload["n"] for r in rows if r.aggregate_id == f"w{worker}"]
        assert mine == sorted(mine)
    platform.db.run(lambda c: events.advance_consumer(c, PLATFORM_CORE, "features", 40, platform.clock.now()))
    position = platform.db.run(lambda c: events.consumer_position(c, PLATFORM_CORE, "features"))
    rest = platform.db.run(lambda c: events.read_after(c, PLATFORM_CORE, position, topics=["test.happened"]))
    assert [r.position for r in rest] == list(range(41, 81))


def test_api_keys_are_stored_hashed_and_revocable(platform: Platform) -> None:
    principal, token = platform.keys.create(Role.PARTNER_BANK, "bank-a", "statements")
    assert platform.keys.authenticate(token) == principal
    with platform.db.transaction(readonly=True) as conn:
        stored = conn.execute(PLATFORM_CORE.api_keys.select()).all()
    assert all(token.split("_", 2)[2] not in str(row) for row in stored)
    assert platform.keys.revoke(principal.key_id)
    with pytest.raises(Unauthenticated):
        platform.keys.authenticate(token)
    with pytest.raises(Unauthenticated):
        platform.keys.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B"))


def test_pii_vault_seals_opens_and_hashes_for_lookup() -> None:
    vault = PiiVault.generate()
    sealed = vault.seal("110101199003074258", context="customer:42:national_id")
    assert "110101199003074258" not in sealed
    assert vault.open(sealed, context="customer:42:national_id") == "110101199003074258"
    with pytest.raises(PiiSealBroken):
        vault.open(sealed, context="customer:43:national_id")  # bound to its record
    assert vault.lookup_hash("1101 0119 9003 074258", kind="cn_id") == vault.lookup_hash(
        "110101199003074258", kind="cn_id"
    )
    other = PiiVault.generate()
    assert other.lookup_hash("110101199003074258", kind="cn_id") != vault.lookup_hash(
        "110101199003074258", kind="cn_id"
    )


def test_clock_refuses_naive_instants() -> None:
    from creditstack.core.clock import FixedClock

    with pytest.raises(InvalidTimestamp):
        FixedClock(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=timezone.utc))  # noqa: UP017
    assert clock.advance(timedelta(hours=1)).hour == 1
