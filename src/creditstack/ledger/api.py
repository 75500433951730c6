"""HTTP API of the ledger under /v1/ledger. Thin: parse, call `LedgerService`, shape the answer.

Mutating calls carry an `Idempotency-Key` header (batches: a key per entry). A replay answers with the
first outcome and the header `Idempotent-Replayed: true`. Business rejections are stored outcomes too and
come back as problem+json with their code.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from creditstack.app.auth import LedgerWriter, Operator, PlatformDep
from creditstack.app.platform import Platform
from creditstack.app.problems import problem
from creditstack.app.wire import MoneyIn
from creditstack.core.idempotency import IDEMPOTENCY_KEY_LENGTH_MAX
from creditstack.ledger.domain import (
    DESCRIPTION_LENGTH_MAX,
    Command,
    PostEntry,
    PostHold,
    PostingSpec,
    ReserveHold,
    ReverseEntry,
    Side,
    VoidHold,
    transfer,
)
from creditstack.ledger.service import BATCH_ENTRIES_MAX, PAGE_SIZE_MAX, CommandResult

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_LENGTH_MAX,
        description="Client key; the first outcome is stored and returned on every replay.",
    ),
]


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=100)
    currency: str = Field(min_length=3, max_length=3)
    type: Literal["asset", "liability", "equity", "income", "expense"]
    no_overdraft: bool = False
    credit_limit: MoneyIn | None = None
    uses_deltas: bool = Field(False, description="Hot house account: insert-only balance deltas, no overdraft check.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class PostingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account_id: int
    side: Literal["debit", "credit"]
    amount: MoneyIn


class EntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    postings: list[PostingIn] = Field(max_length=64)
    description: str = Field("", max_length=DESCRIPTION_LENGTH_MAX)
    metadata: dict[str, Any] = Field(default_factory=dict)


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    debit_account_id: int
    credit_account_id: int
    amount: MoneyIn
    description: str = Field("", max_length=DESCRIPTION_LENGTH_MAX)
    metadata: dict[str, Any] = Field(default_factory=dict)


class BatchEntryIn(EntryIn):
    idempotency_key: str = Field(min_length=1, max_length=IDEMPOTENCY_KEY_LENGTH_MAX)


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    linked: bool = Field(False, description="All entries commit together or none does.")
    entries: list[BatchEntryIn] = Field(min_length=1, max_length=BATCH_ENTRIES_MAX)


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    debit_account_id: int
    credit_account_id: int
    amount: MoneyIn
    expires_at: datetime | None = Field(None, description="ISO 8601 with offset; omit for no expiry.")
    description: str = Field("", max_length=DESCRIPTION_LENGTH_MAX)


class HoldPostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: MoneyIn | None = Field(None, description="Default: the whole held amount.")
    description: str = Field("", max_length=DESCRIPTION_LENGTH_MAX)


class ReverseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field("", max_length=DESCRIPTION_LENGTH_MAX)


def _entry(member: str, key: str, body: EntryIn) -> PostEntry:
    return PostEntry(
        member,
        key,
        tuple(PostingSpec(p.account_id, Side(p.side), p.amount.amount_minor, p.amount.currency) for p in body.postings),
        body.description,
        body.metadata,
    )


def _answer(result: CommandResult) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    if result.ok:
        return JSONResponse(result.body, status_code=result.status_code, headers=headers)
    error = result.body["error"]
    response = problem(
        result.status_code,
        error["code"],
        "Rejected",
        error["message"],
        field=error.get("field"),
        details=error.get("details"),
    )
    response.headers.update(headers)
    return response


async def _run(platform: Platform, command: Command) -> CommandResult:
    """Hand the command to the group-commit writer and wait without holding a thread."""
    return await asyncio.wrap_future(platform.ledger.execute_future(command))


def _result_json(result: CommandResult) -> dict[str, Any]:
    return {
        "idempotency_key": result.key,
        "status_code": result.status_code,
        "replayed": result.replayed,
        **result.body,
    }


@router.post("/accounts", status_code=201, summary="Open an account")
def open_account(body: AccountIn, platform: PlatformDep, principal: Operator) -> dict[str, Any]:
    limit = body.credit_limit.amount_minor if body.credit_limit else 0
    account = platform.ledger.open_account(
        member=principal.member,
        code=body.code,
        currency=body.currency,
        type=body.type,
        no_overdraft=body.no_overdraft,
        credit_limit_minor=limit,
        uses_deltas=body.uses_deltas,
        metadata=body.metadata,
    )
    return account.to_json()


@router.get("/accounts", summary="List accounts (paged by id)")
def list_accounts(
    platform: PlatformDep,
    _principal: LedgerWriter,
    after_id: int = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 100,
    member: str | None = None,
) -> dict[str, Any]:
    accounts = platform.ledger.list_accounts(member=member, after_id=after_id, limit=limit)
    return {
        "items": [a.to_json() for a in accounts],
        "next_after_id": accounts[-1].id if len(accounts) == limit else None,
    }


@router.get("/accounts/{account_id}", summary="An account with its balances")
def get_account(account_id: int, platform: PlatformDep, _principal: LedgerWriter) -> dict[str, Any]:
    return platform.ledger.get_account(account_id).to_json()


@router.get("/accounts/{account_id}/balance", summary="Posted balance at the end of a business date or at a sequence")
def balance_as_of(
    account_id: int,
    platform: PlatformDep,
    _principal: LedgerWriter,
    as_of_date: date | None = None,
    as_of_seq: int | None = None,
) -> dict[str, Any]:
    return platform.ledger.balance_as_of(account_id, business_date=as_of_date, seq=as_of_seq)


@router.get("/accounts/{account_id}/history", summary="Postings of an account in journal order (paged)")
def history(
    account_id: int,
    platform: PlatformDep,
    _principal: LedgerWriter,
    after_seq: int = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 100,
) -> dict[str, Any]:
    return platform.ledger.history(account_id, after_seq=after_seq, limit=limit)


@router.post(
    "/entries",
    status_code=201,
    summary="Post a journal entry",
    responses={409: {"description": "Business rejection (problem+json)"}},
)
async def post_entry(
    body: EntryIn, key: IdempotencyKey, platform: PlatformDep, principal: LedgerWriter
) -> JSONResponse:
    return _answer(await _run(platform, _entry(principal.member, key, body)))


@router.post("/transfers", status_code=201, summary="Post a two-posting transfer")
async def post_transfer(
    body: TransferIn, key: IdempotencyKey, platform: PlatformDep, principal: LedgerWriter
) -> JSONResponse:
    command = transfer(
        principal.member,
        key,
        body.debit_account_id,
        body.credit_account_id,
        body.amount.amount_minor,
        body.amount.currency,
        body.description,
        body.metadata,
    )
    return _answer(await _run(platform, command))


@router.post("/batches", summary="Post many entries in one round trip (optionally linked: all or nothing)")
def post_batch(body: BatchIn, platform: PlatformDep, principal: LedgerWriter) -> dict[str, Any]:
    commands: list[Command] = [_entry(principal.member, e.idempotency_key, e) for e in body.entries]
    results = platform.ledger.submit(commands, linked=body.linked)
    committed = sum(1 for r in results if r.ok)
    return {
        "linked": body.linked,
        "committed": committed,
        "rejected": len(results) - committed,
        "results": [_result_json(r) for r in results],
    }


@router.get("/entries/{seq}", summary="A journal entry by sequence number")
def get_entry(seq: int, platform: PlatformDep, _principal: LedgerWriter) -> dict[str, Any]:
    return platform.ledger.get_entry(seq)


@router.post("/entries/{seq}/reverse", status_code=201, summary="Reverse an entry by a new entry")
async def reverse_entry(
    seq: int, body: ReverseIn, key: IdempotencyKey, platform: PlatformDep, principal: LedgerWriter
) -> JSONResponse:
    return _answer(await _run(platform, ReverseEntry(principal.member, key, seq, body.description)))


@router.post("/holds", status_code=201, summary="Reserve funds (two-phase: post or void later)")
async def reserve_hold(
    body: HoldIn, key: IdempotencyKey, platform: PlatformDep, principal: LedgerWriter
) -> JSONResponse:
    command = ReserveHold(
        principal.member,
        key,
        body.debit_account_id,
        body.credit_account_id,
        body.amount.amount_minor,
        body.amount.currency,
        body.expires_at,
        body.description,
    )
    return _answer(await _run(platform, command))


@router.get("/holds/{hold_id}", summary="A hold and its status")
def get_hold(hold_id: str, platform: PlatformDep, _principal: LedgerWriter) -> dict[str, Any]:
    return platform.ledger.get_hold(hold_id)


@router.post("/holds/{hold_id}/post", status_code=201, summary="Post a hold (up to the held amount)")
async def post_hold(
    hold_id: str, body: HoldPostIn, key: IdempotencyKey, platform: PlatformDep, principal: LedgerWriter
) -> JSONResponse:
    amount = body.amount.amount_minor if body.amount else None
    return _answer(await _run(platform, PostHold(principal.member, key, hold_id, amount, body.description)))


@router.post("/holds/{hold_id}/void", status_code=201, summary="Void a hold, releasing its funds")
async def void_hold(hold_id: str, key: IdempotencyKey, platform: PlatformDep, principal: LedgerWriter) -> JSONResponse:
    return _answer(await _run(platform, VoidHold(principal.member, key, hold_id)))


@router.post("/audit", summary="Re-derive every balance from the postings and report differences")
def audit(platform: PlatformDep, _principal: Operator) -> dict[str, Any]:
    return platform.ledger.audit().to_json()


@router.post("/compact", summary="Fold hot accounts' balance deltas into their rows")
def compact(platform: PlatformDep, _principal: Operator) -> dict[str, Any]:
    return {"folded_deltas": platform.ledger.compact()}
