"""The demo's live numbers: one campaign's funnel, read from the database (the system of record)."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.contacts.models import Prospect
from mcep.dispatch.models import Event, Message, MessageState

IN_FLIGHT = (MessageState.QUEUED, MessageState.SENDING, MessageState.RETRY_SCHEDULED)
REACHED = (MessageState.SENT, MessageState.DELIVERED, MessageState.READ)


@dataclass
class Funnel:
    states: Counter[str] = field(default_factory=Counter)
    by_variant: dict[str, Counter[str]] = field(default_factory=dict)
    replied: int = 0
    opted_out: int = 0

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def waiting(self) -> int:
        return sum(self.states[s.value] for s in IN_FLIGHT)

    @property
    def sent(self) -> int:
        return sum(self.states[s.value] for s in REACHED)


async def funnel(session: AsyncSession, campaign_id: uuid.UUID) -> Funnel:
    """Four aggregate queries, whatever the campaign's size."""
    result = Funnel()
    states = await session.execute(
        select(Message.state, func.count())
        .where(Message.campaign_id == campaign_id)
        .group_by(Message.state)
    )
    result.states = Counter({str(state): n for state, n in states.all()})
    kinds = await session.execute(
        select(Event.variant, Event.kind, func.count(distinct(Event.message_id)))
        .where(Event.campaign_id == campaign_id)
        .group_by(Event.variant, Event.kind)
    )
    for variant, kind, n in kinds.all():
        result.by_variant.setdefault(variant or "-", Counter())[kind] = n
    result.replied = sum(c["replied"] for c in result.by_variant.values())
    opted = await session.scalar(
        select(func.count(distinct(Message.prospect_id)))
        .join(Prospect, Prospect.id == Message.prospect_id)
        .where(Message.campaign_id == campaign_id, Prospect.opted_out.is_(True))
    )
    result.opted_out = opted or 0
    return result


def _bar(label: str, value: int, total: int) -> Table:
    row = Table.grid(padding=(0, 1))
    row.add_column(width=11)
    row.add_column(width=40)
    row.add_column(justify="right", width=12)
    row.add_row(
        label, ProgressBar(total=max(total, 1), completed=value, width=40), f"{value:,}/{total:,}"
    )
    return row


def live_view(f: Funnel, *, title: str) -> Group:
    """The progress view: one bar per stage of the funnel."""
    total = f.total
    delivered = f.states["delivered"] + f.states["read"]
    failed = f.states["failed"] + f.states["dead"]
    return Group(
        f"[bold]{title}[/]",
        _bar("queued", f.waiting, total),
        _bar("sent", f.sent, total),
        _bar("delivered", delivered, total),
        _bar("read", f.states["read"], total),
        _bar("replied", f.replied, total),
        _bar("failed", failed, total),
        _bar("opted out", f.opted_out, total),
    )


def _rate(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def summary_table(f: Funnel) -> Table:
    """Per variant: how far the messages got."""
    table = Table(
        title="Campaign summary by variant",
        caption="Telegram gives bots no delivered/read receipts: its messages count as sent only.",
    )
    for column in (
        "variant",
        "queued",
        "sent",
        "delivered",
        "read",
        "replied",
        "reply rate",
        "failed",
    ):
        table.add_column(column, justify="right" if column != "variant" else "left")
    for variant, kinds in sorted(f.by_variant.items()):
        if variant == "-":
            continue  # events of no variant (opt-outs, notices) are counted above
        sent = kinds["sent"]
        counts = [kinds[k] for k in ("queued", "sent", "delivered", "read", "replied")]
        failed = kinds["failed"] + kinds["dead"]
        cells = [f"{n:,}" for n in counts] + [_rate(kinds["replied"], sent), f"{failed:,}"]
        table.add_row(variant, *cells)
    return table
