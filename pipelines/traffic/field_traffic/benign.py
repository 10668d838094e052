"""The benign classes: how ordinary customers' traffic really looks at the edge.

Each builder takes a Cast (its own random stream), the class parameters, how many accounts to make and
the infrastructure the world shares (public prompt templates, VPN providers, proxy services), and returns
Actors labelled with the class name as their group. One module (~550 lines): one builder per benign
class, side by side so their differences are easy to compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.traffic.field_traffic.cast import (
    LARGE_MODEL_FIRST,
    MINUTE_MS,
    Actor,
    Cast,
    ceil_div,
    diurnal,
    group_sizes,
    office_hours,
    uniform_segment,
    weighted_segment,
)
from pipelines.traffic.field_traffic.config import ENTERPRISE_RATE_LIMIT_PER_MINUTE, BenignClass
from pipelines.traffic.field_traffic.world import (
    CLOUD_REGIONS,
    FIELD_PLACES,
    HOME_COUNTRY_WEIGHTS,
    MOBILE_USER_AGENTS,
    PRIVACY_RELAY_ASNS,
)
from pipelines.traffic.population import BENIGN_USER_AGENTS, Network, RequestStyle, Segment


@dataclass
class Shared:
    """Infrastructure many unrelated accounts use at once."""

    # A popular tool's default prompt: (template fingerprint, the tool's user agent).
    public_templates: tuple[tuple[str, str], ...]
    vpn_providers: list[tuple[Network, ...]]
    proxy_services: list[tuple[Network, ...]] = field(default_factory=list)  # filled by hydra rings


PUBLIC_TOOLS = ("aider/0.62.1", "continue/0.9.226", "open-webui/0.4.7", "LangChain/0.3.9")
# Live on one side of a border, work on the other.
COMMUTES = (
    ("Strasbourg", "Kehl"),
    ("Kehl", "Strasbourg"),
    ("Annemasse", "Geneva"),
    ("Mulhouse", "Basel"),
    ("Loerrach", "Basel"),
    ("Metz", "Luxembourg"),
    ("Malmo", "Copenhagen"),
    ("Windsor", "Detroit"),
    ("Tijuana", "San Diego"),
    ("Bratislava", "Vienna"),
    ("Lille", "Brussels"),
)
# Real short- and medium-haul routes with gate-to-gate minutes.
FLIGHTS = (
    ("London", "Paris", 80),
    ("Frankfurt", "London", 100),
    ("New York", "Chicago", 165),
    ("San Francisco", "Seattle", 125),
    ("Tokyo", "Seoul", 150),
    ("Madrid", "Berlin", 185),
    ("Delhi", "Mumbai", 135),
    ("Sydney", "Melbourne", 95),
    ("Amsterdam", "Stockholm", 120),
    ("Sao Paulo", "Rio de Janeiro", 65),
    ("Toronto", "New York", 105),
    ("Singapore", "Bengaluru", 270),
    ("Berlin", "Istanbul", 205),
    ("Los Angeles", "Denver", 150),
    ("Dubai", "Mumbai", 190),
    ("Munich", "Milan", 75),
    ("Helsinki", "Warsaw", 110),
    ("Dallas", "Atlanta", 130),
)


def _personal(
    cast: Cast,
    group: str,
    itinerary: list[Segment],
    *,
    org_share: float = 0.5,
    user_agent: str | None = None,
    shared: Shared | None = None,
    **kwargs,
) -> Actor:
    """An ordinary account; one in ten also uses a popular tool's public template."""
    rng = cast.rng
    prompts = kwargs.pop("prompts", None)
    if prompts is None and shared is not None and rng.random() < 0.1:
        fingerprints, cum = cast.build.personal_prompts()
        public, tool = rng.choice(shared.public_templates)
        prompts = ((public, *fingerprints), (cum[-1], *(cum[-1] + c for c in cum)))
        user_agent = user_agent or tool
    account = cast.account(
        group,
        itinerary,
        org_id=cast.org(org_share),
        payment="own" if rng.random() < 0.95 else None,
        prompts=prompts,
        user_agent=user_agent,
        **kwargs,
    )
    return Actor(account, [])


def _diurnal_times(cast: Cast, params: BenignClass, place: str) -> list[int]:
    """The class's request rate for one person, following the day in the place's time zone."""
    return cast.poisson(cast.uniform(params.requests_per_hour), diurnal(cast.tz(place)))


def _home_user(
    cast: Cast, params: BenignClass, home: str, group: str, itinerary: list[Segment], **personal
) -> Actor:
    """An ordinary account (`_personal`) whose requests follow the day at home."""
    actor = _personal(cast, group, itinerary, **personal)
    actor.times = _diurnal_times(cast, params, home)
    return actor


def multi_ip_individual(cast: Cast, params: BenignClass, count: int, shared: Shared) -> list[Actor]:
    """Home line, office and phone, each placed by GeoIP in a different city of the same country."""
    rng, world, actors = cast.rng, cast.world, []
    spread = params.geo_spread_km
    for _ in range(count):
        home = world.home_city()
        country = FIELD_PLACES[home][0]
        lines = [world.home_line(home, hub_km=spread)]
        ips = cast.randint(params.ips_per_user)
        if ips >= 2:  # the office: its business ISP's block is registered elsewhere in the country
            office = world.city_at_distance(home, spread * rng.uniform(0.6, 1.4))
            lines.append(
                world.placed(world.ipv4(office), office, cast.build.asn(), "business", rng.randint(20, 200))
            )
        if ips >= 3:  # the phone, at the carrier's gateway city
            gateway = world.city_at_distance(home, spread * rng.uniform(0.6, 1.4))
            ip = world.ipv6(gateway) if rng.random() < 0.4 else world.ipv4(gateway)
            lines.append(
                world.placed(ip, gateway, world.mobile_asn(country), "mobile", rng.randint(200, 1000))
            )
        weights = [3, 2, 1][: len(lines)]
        itinerary = [weighted_segment(cast.start_ms, tuple(lines), weights)]
        if ips >= 4:  # the home line's address changes (DHCP lease, IPv6 privacy address)
            renewed = world.home_line(home, hub_km=spread)
            changed_ms = cast.start_ms + rng.randrange(cast.duration_ms)
            itinerary.append(weighted_segment(changed_ms, (renewed, *lines[1:]), weights))
        actors.append(_home_user(cast, params, home, "multi_ip_individual", itinerary, shared=shared))
    return actors


def mobile_cgnat(cast: Cast, params: BenignClass, count: int, shared: Shared) -> list[Actor]:
    """Phones behind a carrier's few CGNAT gateways, switching between home Wi-Fi and cellular."""
    rng, world, actors = cast.rng, cast.world, []
    carriers = ceil_div(count, params.nat_population)
    countries = rng.choices(
        list(HOME_COUNTRY_WEIGHTS), weights=list(HOME_COUNTRY_WEIGHTS.values()), k=carriers
    )
    gateways = [
        world.mobile_gateways(c, cast.randint(params.ips_per_user), params.geo_spread_km) for c in countries
    ]
    for index in range(count):
        carrier = index % carriers
        home = world.home_city(countries[carrier])
        wifi = (world.home_line(home),)
        itinerary = cast.alternating([wifi, gateways[carrier]], (2, 25))
        actors.append(
            _home_user(
                cast,
                params,
                home,
                "mobile_cgnat",
                itinerary,
                org_share=0.4,
                user_agent=rng.choice(MOBILE_USER_AGENTS),
                shared=shared,
            )
        )
    return actors


def corporate_egress(cast: Cast, params: BenignClass, count: int, shared: Shared) -> list[Actor]:
    """Companies whose employees leave through NAT egresses in several cities, or the company VPN."""
    rng, world, actors = cast.rng, cast.world, []
    for members in group_sizes(count, params.nat_population):
        hq = world.home_city()
        sites = [hq]
        for _ in range(cast.randint(params.ips_per_user) - 1):
            abroad = rng.random() < 0.3
            sites.append(world.home_city() if abroad else world.city_at_distance(hq, params.geo_spread_km))
        egresses = [tuple(world.business_line(site) for _ in range(rng.randint(1, 2))) for site in sites]
        vpn = world.cloud_ips(2, rng.choice(CLOUD_REGIONS))
        org, card = cast.build.hex_id("org_", 40), cast.card()
        internal_tools = tuple(cast.build.fingerprint() for _ in range(rng.randint(1, 3)))
        agent = rng.choice(BENIGN_USER_AGENTS)
        for _ in range(members):
            site = rng.randrange(len(sites))
            # SD-WAN flips a user between the company's egresses; a fifth of the time, the VPN.
            networks = [*egresses[site], *(n for i, e in enumerate(egresses) if i != site for n in e), *vpn]
            weights = (
                [6.0] * len(egresses[site]) + [1.0] * (len(networks) - len(egresses[site]) - 2) + [1.5, 1.5]
            )
            personal, cum = cast.build.personal_prompts()
            prompts = (
                (*internal_tools, *personal),
                (
                    *(2.0 * (k + 1) for k in range(len(internal_tools))),
                    *(2.0 * len(internal_tools) + c for c in cum),
                ),
            )
            account = cast.account(
                "corporate_egress",
                [weighted_segment(cast.start_ms, tuple(networks), weights)],
                org_id=org,
                payment=card,
                prompts=prompts,
                user_agent=agent,
            )
            actors.append(
                Actor(
                    account,
                    cast.poisson(cast.uniform(params.requests_per_hour), office_hours(cast.tz(sites[site]))),
                )
            )
    return actors


def campus_nat(cast: Cast, params: BenignClass, count: int, shared: Shared) -> list[Actor]:
    """A university NAT: one /24 shared by students and labs of different or no organisations."""
    rng, world, actors = cast.rng, cast.world, []
    for members in group_sizes(count, params.nat_population):
        city = world.home_city()
        block, asn = cast.build.block(FIELD_PLACES[city][0]), cast.build.asn()
        kind = "business" if rng.random() < 0.7 else None  # a university network is often untyped
        accuracy = rng.randint(5, 50)
        pool = tuple(
            world.placed(f"{block}.{host}", city, asn, kind, accuracy)
            for host in rng.sample(range(2, 255), cast.randint(params.ips_per_user))
        )
        labs = [cast.build.hex_id("org_", 40) for _ in range(3)]
        for _ in range(members):
            draw = rng.random()
            org = rng.choice(labs) if draw < 0.25 else cast.build.hex_id("org_", 40) if draw < 0.45 else None
            networks = [uniform_segment(cast.start_ms, pool)]
            if rng.random() < 0.4:  # and the student's phone
                phone = (
                    world.placed(
                        world.ipv4(city), city, world.mobile_asn(FIELD_PLACES[city][0]), "mobile", None
                    ),
                )
                networks = cast.alternating([pool, phone], (5, 40), weights=[3, 1])
            account = cast.account(
                "campus_nat", networks, org_id=org, payment="own" if rng.random() < 0.8 else None
            )
            actors.append(Actor(account, _diurnal_times(cast, params, city)))
    return actors


def cross_border_commuter(cast: Cast, params: BenignClass, count: int, shared: Shared) -> list[Actor]:
    """Home on one side of a border, office on the other; the phone still exits in the home country."""
    rng, world, actors = cast.rng, cast.world, []
    for _ in range(count):
        home, work = rng.choice(COMMUTES)
        home_line, office = world.home_line(home, hub_km=50), world.business_line(work, hub_km=50)
        phone = world.placed(world.ipv4(home), home, world.mobile_asn(FIELD_PLACES[home][0]), "mobile", None)
        leave_ms = cast.start_ms + int(cast.duration_ms * rng.uniform(0.1, 0.6))
        arrive_ms = leave_ms + rng.randint(15, 50) * MINUTE_MS
        itinerary = [
            weighted_segment(cast.start_ms, (home_line, phone), [4, 1]),
            Segment(leave_ms, (phone,)),
            weighted_segment(arrive_ms, (office, phone), [4, 1]),
        ]
        if rng.random() < 0.5:  # and back at the end of the day
            back_ms = arrive_ms + int((cast.end_ms - arrive_ms) * rng.uniform(0.4, 0.9))
            itinerary.append(weighted_segment(back_ms, (home_line, phone), [4, 1]))
        actors.append(_home_user(cast, params, home, "cross_border_commuter", itinerary, shared=shared))
    return actors


def traveller(cast: Cast, params: BenignClass, count: int, shared: Shared) -> list[Actor]:
    """One real flight: home, maybe airport Wi-Fi, offline in the air, then roaming or hotel Wi-Fi."""
    rng, world, actors = cast.rng, cast.world, []
    for _ in range(count):
        origin, destination, minutes = rng.choice(FLIGHTS)
        if rng.random() < 0.5:
            origin, destination = destination, origin
        home_line = world.home_line(origin)
        itinerary = [Segment(cast.start_ms, (home_line,))]
        flight_ms = (minutes + rng.randint(40, 90)) * MINUTE_MS  # gate-to-gate plus taxi, boarding, exit
        latest_ms = cast.end_ms - flight_ms - 20 * MINUTE_MS
        pinned = []
        if latest_ms > cast.start_ms + 20 * MINUTE_MS:
            board_ms = rng.randrange(cast.start_ms + 20 * MINUTE_MS, latest_ms)
            if rng.random() < 0.3:  # airport Wi-Fi, registered to the operator's city
                airport = world.business_line(origin, hub_km=400)
                itinerary.append(Segment(board_ms - rng.randint(20, 60) * MINUTE_MS, (airport,)))
            itinerary.append(Segment(board_ms, ()))
            landed_ms = board_ms + flight_ms
            home_country = FIELD_PLACES[origin][0]
            if rng.random() < 0.5:  # roaming data exits through the home carrier, in the home country
                gateway = world.city_at_distance(origin, 300)
                arrived = world.placed(
                    world.ipv4(gateway), gateway, world.mobile_asn(home_country), "mobile", None
                )
            else:
                arrived = world.home_line(destination)  # hotel or office Wi-Fi at the destination
            itinerary.append(Segment(landed_ms, (arrived,)))
            pinned = [board_ms - 1, landed_ms]  # a last request at the gate, the first one on arrival
        actor = _personal(cast, "traveller", itinerary, shared=shared)
        times = _diurnal_times(cast, params, origin)
        actor.times = sorted(t for t in times + pinned if actor.account.segment_at(t).networks)
        actors.append(actor)
    return actors


def consumer_vpn(cast: Cast, params: BenignClass, count: int, shared: Shared) -> list[Actor]:
    """VPN users on shared exits whose country changes per session; privacy-relay users in their country."""
    rng, world, actors = cast.rng, cast.world, []
    for index in range(count):
        home = world.home_city()
        home_line = (world.home_line(home),)
        if rng.random() < 0.3:
            # A privacy relay egresses near the user, from a fresh address each session.
            relay_asn = rng.choice(PRIVACY_RELAY_ASNS)
            egresses = [world.city_at_distance(home, rng.uniform(0, 300)) for _ in range(8)]
            sessions = [
                (world.placed(world.ipv4(egress, relay_asn), egress, relay_asn, "vpn", None),)
                for egress in egresses
            ]
        else:
            exits = shared.vpn_providers[index % len(shared.vpn_providers)]
            sessions = [(rng.choice(exits),) for _ in range(8)]
        itinerary = cast.alternating([home_line, *sessions], (5, 45), weights=[4] + [1] * len(sessions))
        actors.append(_home_user(cast, params, home, "consumer_vpn", itinerary, org_share=0.3, shared=shared))
    return actors


def cloud_ci(cast: Cast, params: BenignClass, count: int, shared: Shared) -> list[Actor]:
    """Developers whose CI jobs run on a cloud region's runner pool shared by many unrelated customers."""
    rng, world, actors = cast.rng, cast.world, []
    pools = [
        world.cloud_ips(cast.randint(params.ips_per_user), rng.choice(CLOUD_REGIONS))
        for _ in range(ceil_div(count, params.nat_population))
    ]
    for index in range(count):
        home = world.home_city()
        desk = (world.business_line(home) if rng.random() < 0.5 else world.home_line(home),)
        pool = pools[index % len(pools)]
        itinerary, times = [Segment(cast.start_ms, desk)], []
        # Each pushed commit runs a job on one runner: a test suite's prompts in a minute or three.
        for commit_ms in cast.poisson(rng.uniform(0.5, 2.0), office_hours(cast.tz(home))):
            job_ms = rng.randint(1, 3) * MINUTE_MS
            itinerary += [Segment(commit_ms, (rng.choice(pool),)), Segment(commit_ms + job_ms, desk)]
            times += cast.poisson(
                rng.uniform(300, 900), span=(commit_ms, min(commit_ms + job_ms, cast.end_ms))
            )
        itinerary.sort(key=lambda segment: segment.start_ms)
        suite = cast.templates(rng.randint(3, 12), skew=0)
        account = cast.account(
            "cloud_ci",
            itinerary,
            org_id=cast.org(0.8),
            prompts=suite,
            user_agent=rng.choice(BENIGN_USER_AGENTS[:5]),
        )
        times += cast.poisson(cast.uniform(params.requests_per_hour) / 4, diurnal(cast.tz(home)))
        actors.append(Actor(account, sorted(times), rate_limit_per_minute=ENTERPRISE_RATE_LIMIT_PER_MINUTE))
    return actors


def research_team(cast: Cast, params: BenignClass, count: int, shared: Shared) -> list[Actor]:
    """A lab: one org, office hours, many experimental templates, reasoning-heavy prompts."""
    rng, world, actors = cast.rng, cast.world, []
    for members in group_sizes(count, params.nat_population):
        city = world.home_city()
        office = tuple(world.business_line(city) for _ in range(rng.randint(1, 2)))
        org, card = cast.build.hex_id("org_", 40), cast.card()
        experiments = cast.templates(rng.randint(30, 100), skew=0.3)
        reasoning = rng.uniform(0.3, 0.6)
        for _ in range(members):
            home_line = world.home_line(world.city_at_distance(city, rng.uniform(0, 80)))
            input_median = rng.uniform(800, 3000)
            style = RequestStyle(
                input_median,
                input_median * rng.uniform(0.8, 3),
                0.7,
                0.02,
                0.05,
                0.25,
                (("reasoning_elicitation", reasoning), ("tool_use", 0.1)),
                LARGE_MODEL_FIRST,
            )
            account = cast.account(
                "research_team",
                [weighted_segment(cast.start_ms, (*office, home_line), [3] * len(office) + [1])],
                org_id=org,
                payment=card,
                style=style,
                prompts=experiments,
            )
            actors.append(
                Actor(
                    account, cast.poisson(cast.uniform(params.requests_per_hour), office_hours(cast.tz(city)))
                )
            )
    return actors


def batch_customer(cast: Cast, params: BenignClass, count: int, shared: Shared) -> list[Actor]:
    """A paying pipeline: 24/7 flat from its cloud NAT gateways, few templates, output-heavy."""
    rng, world, actors = cast.rng, cast.world, []
    for _ in range(count):
        gateways = world.cloud_ips(rng.randint(1, 3))
        input_median = rng.uniform(300, 1500)
        style = RequestStyle(
            input_median,
            input_median * rng.uniform(1.5, 5),
            0.3,
            0.01,
            0.0,
            0.0,
            (("reasoning_elicitation", rng.choice((0.0, 0.0, 0.1, 0.3))),),
            rng.choice((LARGE_MODEL_FIRST, (1, 9, 10))),
        )
        account = cast.account(
            "batch_customer",
            [uniform_segment(cast.start_ms, gateways)],
            org_id=cast.build.hex_id("org_", 40),
            style=style,
            prompts=cast.templates(rng.randint(1, 4)),
            user_agent=BENIGN_USER_AGENTS[0],
        )
        times = cast.poisson(cast.uniform(params.requests_per_hour))
        actors.append(Actor(account, times, rate_limit_per_minute=ENTERPRISE_RATE_LIMIT_PER_MINUTE))
    return actors


def public_template_user(cast: Cast, params: BenignClass, count: int, shared: Shared) -> list[Actor]:
    """Unrelated people whose requests mostly carry a popular tool's default prompt."""
    rng, world, actors = cast.rng, cast.world, []
    for _ in range(count):
        home = world.home_city()
        template, tool = rng.choice(shared.public_templates)
        personal, cum = cast.build.personal_prompts()
        prompts = ((template, *personal), (2 * cum[-1], *(2 * cum[-1] + c for c in cum)))
        itinerary = [
            weighted_segment(cast.start_ms, (world.home_line(home), world.business_line(home)), [3, 1])
        ]
        actors.append(
            _home_user(
                cast, params, home, "public_template_user", itinerary, prompts=prompts, user_agent=tool
            )
        )
    return actors


def startup_shared_card(cast: Cast, params: BenignClass, count: int, shared: Shared) -> list[Actor]:
    """A remote startup: one org, one company card, people in several countries, a backend in the cloud."""
    rng, world, actors = cast.rng, cast.world, []
    for members in group_sizes(count, params.nat_population):
        org, card = cast.build.hex_id("org_", 40), cast.card()
        product = cast.templates(rng.randint(2, 5))
        backend = world.cloud_ips(2)
        for member in range(members):
            if member == 0:  # the product's backend: flat, its own few templates
                account = cast.account(
                    "startup_shared_card",
                    [uniform_segment(cast.start_ms, backend)],
                    org_id=org,
                    payment=card,
                    prompts=product,
                )
                actors.append(
                    Actor(
                        account,
                        cast.poisson(cast.uniform(params.requests_per_hour) * 3),
                        rate_limit_per_minute=ENTERPRISE_RATE_LIMIT_PER_MINUTE,
                    )
                )
                continue
            home = world.home_city()
            account = cast.account(
                "startup_shared_card",
                [Segment(cast.start_ms, (world.home_line(home),))],
                org_id=org,
                payment=card,
            )
            actors.append(Actor(account, _diurnal_times(cast, params, home)))
    return actors


def bursty_user(cast: Cast, params: BenignClass, count: int, shared: Shared) -> list[Actor]:
    """Scripts run by hand: a few minutes well over the rate limit (hence 429s), then nothing."""
    world, actors = cast.world, []
    for _ in range(count):
        home = world.home_city()
        actor = _personal(
            cast, "bursty_user", [Segment(cast.start_ms, (world.home_line(home),))], shared=shared
        )
        sessions_per_hour = cast.uniform(params.requests_per_hour)
        actor.times = sorted(
            cast.bursts(sessions_per_hour, (1, 4), (25, 45), diurnal(cast.tz(home)))
            + cast.poisson(3, diurnal(cast.tz(home)))
        )
        actors.append(actor)
    return actors


def proxy_service_customer(cast: Cast, params: BenignClass, count: int, shared: Shared) -> list[Actor]:
    """Ordinary customers of an API proxy/router service: the same exits a hydra ring hides behind."""
    rng, world, actors = cast.rng, cast.world, []
    services = shared.proxy_services or [world.cloud_ips(4)]
    for index in range(count):
        exits = services[index % len(services)]
        home = world.home_city()
        itinerary = [uniform_segment(cast.start_ms, exits)]
        if rng.random() < 0.3:  # sometimes direct from home as well
            itinerary = [
                weighted_segment(
                    cast.start_ms, (*exits, world.home_line(home)), [1] * len(exits) + [len(exits)]
                )
            ]
        actors.append(
            _home_user(cast, params, home, "proxy_service_customer", itinerary, org_share=0.3, shared=shared)
        )
    return actors


BENIGN_BUILDERS = {
    "multi_ip_individual": multi_ip_individual,
    "mobile_cgnat": mobile_cgnat,
    "corporate_egress": corporate_egress,
    "campus_nat": campus_nat,
    "cross_border_commuter": cross_border_commuter,
    "traveller": traveller,
    "consumer_vpn": consumer_vpn,
    "cloud_ci": cloud_ci,
    "research_team": research_team,
    "batch_customer": batch_customer,
    "public_template_user": public_template_user,
    "startup_shared_card": startup_shared_card,
    "bursty_user": bursty_user,
    "proxy_service_customer": proxy_service_customer,
}
