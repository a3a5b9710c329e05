"""What a customer's points ledger adds up to at a moment: the balance, and what is left of
each batch of points by the moment it expires. Plain values in, plain values out.

Points are spent oldest-expiry first: a redemption or a negative adjustment takes from the
batches that expire soonest (among those not expired when it happened); points taken back
from a refunded order come from that order's own batch first. What a batch has left when it
expires is what the expire movement removes. Spending more than there is (an order refunded
after its points were redeemed) leaves a debt, paid from the next points that come in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from storage.points import EXPIRE, REVERSE, Movement


@dataclass
class Batch:
    """Points that came in together (one movement) and what is left of them."""

    movement_id: int
    expires_at: datetime | None
    order_id: int | None
    left: int

    def alive(self, at: datetime) -> bool:
        return self.expires_at is None or self.expires_at > at


@dataclass
class Ledger:
    """The ledger replayed: its batches (what is left of each) and the unpaid debt."""

    batches: list[Batch] = field(default_factory=list)
    debt: int = 0

    def balance(self, now: datetime) -> int:
        """The points a customer may spend at ``now`` (negative while a debt is unpaid)."""
        return sum(batch.left for batch in self.batches if batch.alive(now)) - self.debt

    def expiring(self, now: datetime) -> dict[datetime, int]:
        """Points left by the moment they expire, for moments after ``now``, soonest first."""
        found: dict[datetime, int] = {}
        for batch in self.batches:
            if batch.expires_at is not None and batch.alive(now) and batch.left > 0:
                found[batch.expires_at] = found.get(batch.expires_at, 0) + batch.left
        return dict(sorted(found.items()))

    def expired(self, now: datetime) -> dict[datetime, int]:
        """Points left in batches that expired by ``now``, by the moment they expired."""
        found: dict[datetime, int] = {}
        for batch in self.batches:
            if batch.expires_at is not None and not batch.alive(now):
                found[batch.expires_at] = found.get(batch.expires_at, 0) + batch.left
        return dict(sorted(found.items()))

    def _add(self, movement: Movement) -> None:
        batch = Batch(movement.id, movement.expires_at, movement.order_id, movement.points)
        paid = min(self.debt, batch.left)
        batch.left -= paid
        self.debt -= paid
        self.batches.append(batch)

    def _take(self, movement: Movement) -> None:
        wanted = -movement.points
        own = [
            b
            for b in self.batches
            if movement.kind == REVERSE
            and b.order_id is not None
            and b.order_id == movement.order_id
        ]
        others = sorted(
            (
                b
                for b in self.batches
                if b.alive(movement.created_at) and all(b is not o for o in own)
            ),
            key=lambda b: (b.expires_at is None, b.expires_at or movement.created_at),
        )
        for batch in [*own, *others]:
            taken = min(wanted, max(batch.left, 0))
            batch.left -= taken
            wanted -= taken
            if wanted == 0:
                return
        self.debt += wanted


def replay(movements: Iterable[Movement]) -> Ledger:
    """The ledger after ``movements`` (any order: they are replayed oldest first)."""
    ledger = Ledger()
    for movement in sorted(movements, key=lambda m: (m.created_at, m.id)):
        if movement.kind == EXPIRE:
            for batch in ledger.batches:
                if batch.expires_at == movement.expires_at:
                    batch.left = 0
        elif movement.points > 0:
            ledger._add(movement)
        elif movement.points < 0:
            ledger._take(movement)
    return ledger
