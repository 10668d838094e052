"""Campaign kinds: how distillation rings, lone harvesters, restricted-region users and key sharers look.

Each builder makes one instance (its own random stream and parameters drawn from the kind's ranges),
labelled group = instance id (e.g. residential_proxy_ring-2), scenario = kind. Members vary in volume,
mix in ordinary requests, and do not all share everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipelines.traffic.field_traffic.benign import Shared
from pipelines.traffic.field_traffic.cast import (
    MINUTE_MS,
    Actor,
    Cast,
    pick,
    uniform_segment,
    windows,
)
from pipelines.traffic.field_traffic.config import CampaignKind
from pipelines.traffic.field_traffic.world import (
    CLOUD_REGIONS,
    HOME_COUNTRY_WEIGHTS,
    RESTRICTED_PLACES,
    VPN_EXIT_PLACES,
    km_between,
)
from pipelines.traffic.generator import RATE_LIMIT_PER_MINUTE
from pipelines.traffic.population import BENIGN_USER_AGENTS, Segment

HARVESTER_USER_AGENTS = ("python-httpx/0.27.2", "python-requests/2.32.3", "aiohttp/3.10.10")


@dataclass(frozen=True)
class _Instance:
    """One campaign instance as its harvesters are labelled: the cast that draws them, the kind's ranges,
    the instance id (the group) and the scenario (the kind's name)."""

    cast: Cast
    kind: CampaignKind
    id: str
    scenario: str


def _harvester(
    instance: _Instance,
    itinerary: list[Segment],
    script: tuple[tuple[str, ...], tuple[float, ...]],
    *,
    activity=None,
    share_script: float = 0.8,
    **account_fields,
) -> Actor:
    """One harvesting account: its slice of the instance's script, its own volume, some cover traffic."""
    cast, kind = instance.cast, instance.kind
    rng = cast.rng
    if share_script >= 1:
        prompts = script
    else:
        fingerprints = pick(rng, script[0], share_script)
        prompts = (fingerprints, tuple(range(1, len(fingerprints) + 1)))
    style = cast.harvest_style(cast.uniform(kind.reasoning_share), cast.uniform(kind.output_ratio))
    account_fields.setdefault("user_agent", rng.choice(HARVESTER_USER_AGENTS))
    account = cast.account(
        instance.id, itinerary, scenario=instance.scenario, style=style, prompts=prompts, **account_fields
    )
    per_hour = cast.uniform(kind.requests_per_hour) * cast.volume()
    return cast.with_cover(Actor(account, cast.poisson(per_hour, activity)), kind.cover_share)


def _ring_cards(cast: Cast, accounts: int) -> list[str | None]:
    """A few cards shared by most members; the rest pay with their own card or are unknown."""
    rng = cast.rng
    shared_cards = [cast.card() for _ in range(rng.randint(1, 4))]
    return [
        rng.choice(shared_cards) if rng.random() < 0.6 else ("own" if rng.random() < 0.8 else None)
        for _ in range(accounts)
    ]


def _ring_members(
    ring: _Instance,
    payments: list[str | None],
    script: tuple[tuple[str, ...], tuple[float, ...]],
    networks: Callable[[], tuple],
    org_share: float,
    *,
    segment: Callable[[int, tuple], Segment] = uniform_segment,
    user_agent: Callable[[], str] | None = None,
    **account_fields,
) -> list[Actor]:
    """One harvester per payment, all on one script. Per member, in this order (the corpus depends on it):
    its networks, its org, then its user agent."""
    cast = ring.cast
    return [
        _harvester(
            ring,
            [segment(cast.start_ms, networks())],
            script,
            org_id=cast.org(org_share),
            payment=payment,
            **({"user_agent": user_agent()} if user_agent else {}),
            **account_fields,
        )
        for payment in payments
    ]


def hydra_proxy_ring(cast: Cast, kind: CampaignKind, instance: str, shared: Shared) -> list[Actor]:
    """Many accounts behind a proxy service's few hosting/VPN exits, which ordinary customers use too."""
    ring = _Instance(cast, kind, instance, "hydra_proxy_ring")
    rng, world = cast.rng, cast.world
    size = cast.randint(kind.proxy_pool)
    hosting = world.cloud_ips(max(1, size - size // 3), rng.choice(CLOUD_REGIONS))
    exits = hosting + world.vpn_exits(size // 3)
    shared.proxy_services.append(exits)
    script = cast.templates(cast.randint(kind.templates))
    accounts = cast.randint(kind.accounts)
    agent = rng.choice(HARVESTER_USER_AGENTS)
    return _ring_members(
        ring,
        _ring_cards(cast, accounts),
        script,
        lambda: pick(rng, exits, 0.7),  # the load balancer pins each account to some of the exits
        0.4,
        user_agent=lambda: agent if rng.random() < 0.8 else rng.choice(BENIGN_USER_AGENTS),
    )


def residential_proxy_ring(cast: Cast, kind: CampaignKind, instance: str, shared: Shared) -> list[Actor]:
    """Every request from another home line of a rented residential-proxy pool, often another country."""
    ring = _Instance(cast, kind, instance, "residential_proxy_ring")
    rng, world = cast.rng, cast.world
    pool = world.residential_proxy_pool(cast.randint(kind.proxy_pool), countries=rng.randint(10, 20))
    script = cast.templates(cast.randint(kind.templates))
    payments = _ring_cards(cast, cast.randint(kind.accounts))
    return _ring_members(
        ring, payments, script, lambda: pool, 0.2, user_agent=lambda: rng.choice(BENIGN_USER_AGENTS)
    )


def split_ring(cast: Cast, kind: CampaignKind, instance: str, shared: Shared) -> list[Actor]:
    """Cells of 3-6 accounts, each with its own infrastructure and templates; loosely linked by a card
    some cells use, one template every cell mixes in, and a shared on/off schedule."""
    ring = _Instance(cast, kind, instance, "split_ring")
    rng, world = cast.rng, cast.world
    accounts = cast.randint(kind.accounts)
    ring_card, ring_template = cast.card(), cast.build.fingerprint()
    spans, t = [], cast.start_ms + rng.randint(0, 30) * MINUTE_MS
    while t < cast.end_ms:
        length = rng.randint(20, 70) * MINUTE_MS
        spans.append((t, t + length))
        t += length + rng.randint(15, 60) * MINUTE_MS
    activity = windows(spans, outside=0.05)
    actors: list[Actor] = []
    while len(actors) < accounts:
        infrastructure = rng.random()
        if infrastructure < 0.5:
            networks = world.cloud_ips(rng.randint(1, 2))
        elif infrastructure < 0.8:
            networks = world.residential_proxy_pool(rng.randint(20, 60), countries=rng.randint(2, 6))
        else:
            networks = world.vpn_exits(rng.randint(1, 3))
        own, cum = cast.templates(cast.randint(kind.templates))
        script = ((*own, ring_template), (*cum, cum[-1] + 0.5))  # the ring's template at a low share
        cell_uses_ring_card = rng.random() < 0.4
        for _ in range(min(cast.randint(kind.group_size), accounts - len(actors))):
            payment = ring_card if cell_uses_ring_card and rng.random() < 0.7 else "own"
            actors.append(
                _harvester(
                    ring,
                    [uniform_segment(cast.start_ms, networks)],
                    script,
                    activity=activity,
                    share_script=1.0,
                    org_id=cast.org(0.3),
                    payment=payment,
                )
            )
    return actors


def low_and_slow(cast: Cast, kind: CampaignKind, instance: str, shared: Shared) -> list[Actor]:
    """A handful of requests per account-hour, all six hours, each account on its own line."""
    ring = _Instance(cast, kind, instance, "low_and_slow")
    rng, world = cast.rng, cast.world
    script = cast.templates(cast.randint(kind.templates))
    payments = _ring_cards(cast, cast.randint(kind.accounts))
    return _ring_members(
        ring,
        payments,
        script,
        lambda: (world.home_line(world.home_city()),) if rng.random() < 0.6 else world.cloud_ips(1),
        0.5,
        segment=Segment,
    )


def many_template_extractor(cast: Cast, kind: CampaignKind, instance: str, shared: Shared) -> list[Actor]:
    """Harvesters cycling through a large template bank with a modest reasoning share."""
    ring = _Instance(cast, kind, instance, "many_template_extractor")
    rng, world = cast.rng, cast.world
    bank = cast.templates(cast.randint(kind.templates), skew=0)
    region = rng.choice(CLOUD_REGIONS)
    payments = _ring_cards(cast, cast.randint(kind.accounts))
    return _ring_members(
        ring,
        payments,
        bank,
        lambda: world.cloud_ips(rng.randint(1, 2), region) if rng.random() < 0.7 else world.vpn_exits(2),
        0.5,
        share_script=0.6,
    )


def lone_extractor(cast: Cast, kind: CampaignKind, instance: str, shared: Shared) -> list[Actor]:
    """One account harvesting around the clock from its own hosting address(es); looks like a startup."""
    ring = _Instance(cast, kind, instance, "lone_extractor")
    networks = cast.world.cloud_ips(cast.randint(kind.proxy_pool))
    script = cast.templates(cast.randint(kind.templates), skew=0.5)
    return [
        _harvester(
            ring,
            [uniform_segment(cast.start_ms, networks)],
            script,
            share_script=1.0,
            org_id=cast.build.hex_id("org_", 40),
        )
    ]


def sync_ring(cast: Cast, kind: CampaignKind, instance: str, shared: Shared) -> list[Actor]:
    """A scheduler fires every member in the same minutes; each member has its own IP, ASN and kind."""
    ring = _Instance(cast, kind, instance, "sync_ring")
    rng, world = cast.rng, cast.world
    busy_share = rng.uniform(0.3, 0.5)
    schedule = [t for t in range(cast.start_ms, cast.end_ms, MINUTE_MS) if rng.random() < busy_share]
    script = cast.templates(cast.randint(kind.templates))
    actors = []
    for payment in _ring_cards(cast, cast.randint(kind.accounts)):
        place = world.home_city(rng.choice(list(HOME_COUNTRY_WEIGHTS)))
        # Residential, business, mobile or a small VPS host: never two members on one network.
        kind_of_line = rng.choice(("residential", "business", "mobile", "hosting"))
        accuracy = rng.randint(5, 300) if rng.random() < 0.6 else None
        network = world.placed(world.ipv4(place), place, cast.build.asn(), kind_of_line, accuracy)
        actor = _harvester(
            ring,
            [Segment(cast.start_ms, (network,))],
            script,
            org_id=cast.org(0.5),
            payment=payment,
        )
        per_minute = max(1, round(cast.uniform(kind.requests_per_hour) / 60 / busy_share))
        actor.times = sorted(t + rng.randrange(20_000) for t in schedule for _ in range(per_minute))
        actors.append(actor)
    return actors


def rate_limit_riders(cast: Cast, kind: CampaignKind, instance: str, shared: Shared) -> list[Actor]:
    """Accounts taking turns, each riding just under the per-account limit for an hour or so."""
    ring = _Instance(cast, kind, instance, "rate_limit_riders")
    rng, world = cast.rng, cast.world
    pool = world.residential_proxy_pool(rng.randint(5, 20), countries=rng.randint(1, 4))
    script = cast.templates(cast.randint(kind.templates))
    actors = []
    for payment in _ring_cards(cast, cast.randint(kind.accounts)):
        actor = _harvester(
            ring,
            [uniform_segment(cast.start_ms, pool)],
            script,
            org_id=cast.org(0.5),
            payment=payment,
        )
        stint_ms = min(cast.duration_ms, rng.randint(30, 90) * MINUTE_MS)
        # Whole minutes: the limit is enforced per clock minute.
        begin = cast.start_ms + rng.randrange(max(1, cast.duration_ms - stint_ms))
        begin += -begin % MINUTE_MS
        per_minute = min(RATE_LIMIT_PER_MINUTE - 1, round(cast.uniform(kind.requests_per_hour) / 60))
        actor.times = sorted(
            t + rng.randrange(MINUTE_MS)
            for t in range(begin, begin + stint_ms, MINUTE_MS)
            for _ in range(per_minute)
        )
        actors.append(actor)
    return actors


def restricted_region(cast: Cast, kind: CampaignKind, instance: str, shared: Shared) -> list[Actor]:
    """Users in an export-restricted country: served directly at first, then through exits elsewhere."""
    ring = _Instance(cast, kind, instance, "restricted_region")
    rng, world = cast.rng, cast.world
    place = rng.choice(RESTRICTED_PLACES)
    exits = world.vpn_exits(cast.randint(kind.proxy_pool), VPN_EXIT_PLACES) + world.cloud_ips(1)
    exits += tuple(rng.sample(shared.vpn_providers[0], min(2, len(shared.vpn_providers[0]))))
    switch_ms = cast.start_ms + int(cast.duration_ms * rng.uniform(0.2, 0.5))
    org = cast.org(0.6)
    actors = []
    for _ in range(cast.randint(kind.accounts)):
        direct = (world.home_line(place, hub_km=400), world.business_line(place))
        itinerary = [
            uniform_segment(cast.start_ms, direct),
            uniform_segment(switch_ms, pick(rng, exits, 0.5)),
        ]
        actor = _harvester(
            ring,
            itinerary,
            cast.templates(cast.randint(kind.templates)),
            org_id=org,
            user_agent=rng.choice(BENIGN_USER_AGENTS),
        )
        actor.times = sorted({*actor.times, cast.start_ms + rng.randrange(switch_ms - cast.start_ms)})
        actors.append(actor)
    return actors


def key_sharing(cast: Cast, kind: CampaignKind, instance: str, shared: Shared) -> list[Actor]:
    """One account's key used by people in far-apart places, taking turns every few minutes."""
    ring = _Instance(cast, kind, instance, "key_sharing")
    rng, world = cast.rng, cast.world
    places: list[str] = []
    while len(places) < cast.randint(kind.proxy_pool):
        candidate = world.home_city()
        if all(km_between(candidate, other) > 3000 for other in places):
            places.append(candidate)
    lines = [(world.home_line(p) if rng.random() < 0.6 else world.business_line(p),) for p in places]
    itinerary = cast.alternating(lines, (3, 25))
    script = cast.templates(cast.randint(kind.templates))
    return [
        _harvester(ring, itinerary, script, org_id=cast.org(0.6), user_agent=rng.choice(BENIGN_USER_AGENTS))
    ]


CAMPAIGN_BUILDERS = {
    "hydra_proxy_ring": hydra_proxy_ring,
    "residential_proxy_ring": residential_proxy_ring,
    "split_ring": split_ring,
    "low_and_slow": low_and_slow,
    "many_template_extractor": many_template_extractor,
    "lone_extractor": lone_extractor,
    "sync_ring": sync_ring,
    "rate_limit_riders": rate_limit_riders,
    "restricted_region": restricted_region,
    "key_sharing": key_sharing,
}
