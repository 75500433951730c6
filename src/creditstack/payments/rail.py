"""A simulated custodian-bank rail that can settle, reject, time out and settle late.

It is what the demo and the tests run against; a real rail adapter implements the same `BankRail` port.
The same end-to-end id submitted twice is one instruction (the first outcome decides), so a retry after a
timeout never pays twice. It keeps its own book of what actually moved, from which it writes the bank
statement the platform reconciles against.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from creditstack.payments.domain import RailInstruction, RailOutcome

#: What the simulated bank does with an instruction: settle now, reject, time out and then settle or
#: reject later ("timeout_settle", "timeout_reject"), or accept now and settle later ("late").
BEHAVIOURS = ("settle", "reject", "timeout_settle", "timeout_reject", "late")


@dataclass
class _Booked:
    instruction: RailInstruction
    behaviour: str
    settled: bool = False
    rejected: bool = False
    value_date: date | None = None


@dataclass
class SimulatedRail:
    """The bank side. `behaviour` picks what happens to each instruction (default: settle at once)."""

    behaviour: Callable[[RailInstruction], str] = field(default=lambda _instruction: "settle")
    business_date: Callable[[], date] = field(default=date.today)
    _book: dict[str, _Booked] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    submissions: int = 0

    def submit(self, instruction: RailInstruction) -> RailOutcome:
        with self._lock:
            self.submissions += 1
            booked = self._book.get(instruction.end_to_end_id)
            if booked is None:
                behaviour = self.behaviour(instruction)
                if behaviour not in BEHAVIOURS:
                    raise ValueError(f"unknown rail behaviour {behaviour!r}")
                booked = _Booked(instruction, behaviour)
                self._book[instruction.end_to_end_id] = booked
                if behaviour == "settle":
                    booked.settled, booked.value_date = True, self.business_date()
                elif behaviour == "reject":
                    booked.rejected = True
                return self._answer(booked, first=True)
            return self._answer(booked, first=False)

    def _answer(self, booked: _Booked, *, first: bool) -> RailOutcome:
        if booked.settled:
            return RailOutcome.SETTLED
        if booked.rejected:
            return RailOutcome.REJECTED
        if booked.behaviour == "late":
            return RailOutcome.ACCEPTED
        return RailOutcome.TIMEOUT if first or booked.behaviour.startswith("timeout") else RailOutcome.ACCEPTED

    def finish_pending(self) -> dict[str, RailOutcome]:
        """The bank gets round to everything it held back: returns each end-to-end id's final outcome."""
        finished = {}
        with self._lock:
            for e2e, booked in self._book.items():
                if booked.settled or booked.rejected:
                    continue
                if booked.behaviour in ("late", "timeout_settle"):
                    booked.settled, booked.value_date = True, self.business_date()
                    finished[e2e] = RailOutcome.SETTLED
                else:
                    booked.rejected = True
                    finished[e2e] = RailOutcome.REJECTED
        return finished

    def settled_instructions(self) -> list[tuple[RailInstruction, date]]:
        """What really moved through the bank account, for the bank's statement."""
        with self._lock:
            return [
                (b.instruction, b.value_date) for b in self._book.values() if b.settled and b.value_date is not None
            ]
