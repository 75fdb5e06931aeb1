"""The demo's world: an admin, three PMs, a device pool on all four channels, 1,000 prospects,
and a two-variant campaign. Idempotent: a second run reuses what the first one created (and
re-points the devices at this run's sandbox)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.auth import service as auth_service
from mcep.auth.models import Role, User
from mcep.auth.principal import Principal
from mcep.campaigns import launch, service
from mcep.campaigns.models import Campaign
from mcep.campaigns.schemas import CampaignCreate, ProfileCreate, TemplateCreate
from mcep.channels.base import Platform
from mcep.contacts import service as contacts_service
from mcep.contacts.models import Channel, Prospect
from mcep.contacts.schemas import ConsentIn, Handles, ProspectCreate
from mcep.fleet.models import Device
from mcep.fleet.service import seal_token
from mcep.runtime import Runtime

ADMIN_EMAIL = "demo-admin@example.com"
PM_EMAILS = ("ana.lima@example.com", "ben.okafor@example.com", "chloe.martin@example.com")
PM_NAMES = ("Ana Lima", "Ben Okafor", "Chloé Martin")
# A demo database on the embedded default, served on 127.0.0.1: the password is printed.
DEMO_PASSWORD = "mcep-demo-password"
DEVICES_PER_PLATFORM = 4
ZONES = ("Europe/London", "America/New_York", "Asia/Tokyo", "Europe/Paris", "Asia/Singapore",
         "America/Sao_Paulo", "Europe/Berlin", "Australia/Sydney")  # fmt: skip
FIRST = ("Maria", "James", "Sofia", "Liam", "Yuki", "Lucas", "Emma", "Noah", "Ines", "Omar")
LAST = ("Silva", "Smith", "Rossi", "Müller", "Tanaka", "Dubois", "Costa", "Khan", "Garcia")
CONSENT_SETS = (
    ("whatsapp",), ("whatsapp", "signal"), ("imessage",), ("telegram",),
    ("signal", "telegram"), ("whatsapp", "imessage", "telegram"), ("imessage", "signal"),
)  # fmt: skip


@dataclass(frozen=True)
class DemoWorld:
    admin_email: str
    pm: Principal
    campaign_id: uuid.UUID
    prospects: int


async def _user(session: AsyncSession, email: str, role: Role, pm_name: str | None) -> User:
    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        user = await auth_service.create_user(
            session, email=email, password=DEMO_PASSWORD, role=role, pm_name=pm_name, actor="demo"
        )
    return user


def _device_rows(sandbox_url: str) -> list[tuple[Platform, str, str, str]]:
    rows = []
    for i in range(1, DEVICES_PER_PLATFORM + 1):
        rows.append(
            (Platform.WHATSAPP, f"10654035224{i:04d}", f"{sandbox_url}/whatsapp", f"EAAG-demo-{i}")
        )
        bot = f"70000{i}"
        rows.append((Platform.TELEGRAM, bot, f"{sandbox_url}/telegram", f"{bot}:AAdemoToken{i}"))
        rows.append((Platform.SIGNAL, f"+1415555{i:04d}", f"{sandbox_url}/signal", "signal-cli"))
        mac = f"demo-mac-{i}"
        rows.append((Platform.IMESSAGE, mac, f"{sandbox_url}/imessage/{mac}", f"bb-pass-{i}"))
    return rows


async def _devices(session: AsyncSession, runtime: Runtime, sandbox_url: str) -> None:
    for platform, address, base_url, token in _device_rows(sandbox_url):
        found = await session.scalar(
            select(Device).where(Device.platform == platform, Device.address == address)
        )
        if found is not None:
            found.base_url = base_url
            continue
        key, sealed = seal_token(runtime.keyring, token)
        session.add(Device(platform=platform, address=address, base_url=base_url, pool="demo",
                           token_key=key, token_enc=sealed))  # fmt: skip


def _prospect(i: int, rng: random.Random) -> ProspectCreate:
    consents = CONSENT_SETS[i % len(CONSENT_SETS)]
    return ProspectCreate(
        name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        phone=f"+1212{200 + i // 10000:03d}{i % 10000:04d}",
        timezone=ZONES[i % len(ZONES)],
        handles=Handles(telegram=str(5_000_000 + i)),
        consents=[ConsentIn(channel=Channel(c), source="demo onboarding form") for c in consents],
        attributes={"segment": rng.choice(("hnw", "uhnw", "mass-affluent")), "aum_musd": i % 40},
        tags=["demo"],
    )


async def _prospects(session: AsyncSession, runtime: Runtime, pm: Principal, count: int) -> int:
    have = await session.scalar(
        select(func.count()).select_from(Prospect).where(Prospect.pm_id == pm.pm_id)
    )
    if have and have >= count:
        return have
    rng, now = random.Random(42), datetime.now(UTC)
    assert pm.pm_id is not None
    batch = [
        contacts_service.prepare(
            _prospect(i, rng), pm_id=pm.pm_id, keyring=runtime.keyring, now=now
        )
        for i in range(have or 0, count)
    ]
    await contacts_service.insert_prepared(session, batch)
    # A few people opted out earlier: the launch must skip them, with the reason.
    ids = [p.prospect["id"] for p in batch[::50]]
    await session.execute(
        update(Prospect).where(Prospect.id.in_(ids)).values(opted_out=True, opted_out_at=now)
    )
    return count


async def _campaign(session: AsyncSession, pm: Principal, run: str) -> uuid.UUID:
    profile = await service.create_profile(session, pm, ProfileCreate(
        name=f"Demo {run}", window_start=time(0), window_end=time(23, 59, 59),
        cap_per_day=100, cap_per_week=700, retry_delays=[2, 4, 8],
    ))  # fmt: skip
    a = await service.create_template(session, pm, TemplateCreate(
        name=f"Demo A {run}",
        body="Hi {{ first_name }}, our new {{ attributes.segment }} income fund opens this week. "
             "Would you like the factsheet?",
    ))  # fmt: skip
    b = await service.create_template(session, pm, TemplateCreate(
        name=f"Demo B {run}",
        body="{{ first_name }}, a quick one: may I send you two lines on our new income fund?",
    ))  # fmt: skip
    campaign = await service.create_campaign(session, pm, CampaignCreate.model_validate({
        "name": f"Income fund launch ({run})", "profile_id": profile.id,
        "variants": [{"name": "A", "template_id": a.id}, {"name": "B", "template_id": b.id}],
        "audience": {"filter": {"tags": ["demo"]}},
    }))  # fmt: skip
    return campaign.id


async def seed(runtime: Runtime, *, sandbox_url: str, prospects: int = 1000) -> DemoWorld:
    """Create (or reuse) the demo's users, devices and prospects, and a fresh campaign."""
    run = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    async with runtime.sessions() as session, session.begin():
        await _user(session, ADMIN_EMAIL, Role.ADMIN, None)
        users = [
            await _user(session, e, Role.PM, n) for e, n in zip(PM_EMAILS, PM_NAMES, strict=True)
        ]
        await _devices(session, runtime, sandbox_url)
        pm = Principal(users[0].id, users[0].email, Role.PM, users[0].pm_id)
        count = await _prospects(session, runtime, pm, prospects)
        campaign_id = await _campaign(session, pm, run)
    return DemoWorld(ADMIN_EMAIL, pm, campaign_id, count)


async def launch_campaign(runtime: Runtime, world: DemoWorld) -> Campaign:
    async with runtime.sessions() as session, session.begin():
        return await launch.launch(
            session, world.pm, world.campaign_id, keyring=runtime.keyring, now=datetime.now(UTC)
        )
