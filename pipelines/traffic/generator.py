"""Seeded synthetic access-event traffic (`usagewatch generate`).

The population has three parts:

* ordinary individuals (diurnal, home IPs, personal prompt templates);
* benign *traps* that look suspicious to a naive rule and must stay quiet: a corporate NAT, a heavy
  batch user, travellers, a VPN user and a team sharing one prompt template;
* attack scenarios: a hydra distillation ring, a restricted-region user evading via VPN, an
  impossible-travel account, a country hopper, a lone extraction-profile account, and smaller rings
  bound by one thing each: a shared card, a shared prompt script, a shared minute-by-minute schedule
  (every member on its own residential line) and a load balancer keeping each account under the rate
  limit. Each detection in sql/detections has at least one scenario it must catch.

Everything is drawn from one `random.Random(seed)`, so a seed reproduces the output byte for byte.
Events come out in event-time order with a bounded shuffle (at most `max_disorder_s` late), the way
a real producer fleet delivers them.
"""

from __future__ import annotations

import csv
import heapq
import json
import math
import random
import time
import uuid
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import accumulate
from pathlib import Path
from typing import NamedTuple

from pipelines.detect import enrichment
from pipelines.stream.contracts import ACCESS_EVENT_SCHEMA, format_event_time, load_schema
from pipelines.stream.privacy import Privacy

SCENARIOS = (
    "hydra",
    "restricted",
    "travel",
    "hopper",
    "extraction",
    "payment_ring",
    "template_ring",
    "sync_ring",
    "rate_limit_ring",
)
# classic: the scenarios below; field: realistic noise and campaign variants
# (pipelines/traffic/field_traffic).
PROFILES = ("classic", "field")
LABEL_COLUMNS = ("account_id", "group", "scenario_or_benign")
BENIGN = "benign"
MALFORMED_KINDS = ("invalid_json", "missing_field", "wrong_type", "negative_tokens")

CORPORATE_NAT_ACCOUNTS = 15
TEMPLATE_TEAM_ACCOUNTS = 5
# corporate NAT + batch user + 2 travellers + VPN user + template team
BENIGN_TRAP_ACCOUNTS = CORPORATE_NAT_ACCOUNTS + 1 + 2 + 1 + TEMPLATE_TEAM_ACCOUNTS
# Sizes of the small single-bond rings (the hydra's size is configurable).
PAYMENT_RING_ACCOUNTS = 6
TEMPLATE_RING_ACCOUNTS = 8
SYNC_RING_ACCOUNTS = 8
RATE_LIMIT_RING_ACCOUNTS = 6
# The per-account limit the rate-limit ring stays under (sql/detections/rate_limit_evasion/rule.yml).
RATE_LIMIT_PER_MINUTE = 20
# Countries the hopper's residential-proxy exits cycle through, a few minutes each.
HOPPER_PLACES = ("Chicago", "Sao Paulo", "Madrid", "Seoul", "Stockholm", "Mumbai")

# Events are generated one slice of event time at a time so memory stays flat for long runs.
_SLICE_MS = 60_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# --- reference data --------------------------------------------------------------------------------
# name: (country, latitude, longitude, UTC offset in hours, standard time). Geo-IP resolves to city
# centroids, so every address in a city gets exactly these coordinates.
PLACES = {
    "New York": ("US", 40.7128, -74.0060, -5),
    "San Francisco": ("US", 37.7749, -122.4194, -8),
    "Chicago": ("US", 41.8781, -87.6298, -6),
    "Austin": ("US", 30.2672, -97.7431, -6),
    "Seattle": ("US", 47.6062, -122.3321, -8),
    "Ashburn": ("US", 39.0438, -77.4874, -5),
    "London": ("GB", 51.5072, -0.1276, 0),
    "Manchester": ("GB", 53.4808, -2.2426, 0),
    "Edinburgh": ("GB", 55.9533, -3.1883, 0),
    "Berlin": ("DE", 52.5200, 13.4050, 1),
    "Munich": ("DE", 48.1351, 11.5820, 1),
    "Hamburg": ("DE", 53.5511, 9.9937, 1),
    "Kehl": ("DE", 48.5725, 7.8156, 1),
    "Paris": ("FR", 48.8566, 2.3522, 1),
    "Lyon": ("FR", 45.7640, 4.8357, 1),
    "Strasbourg": ("FR", 48.5734, 7.7521, 1),
    "Bengaluru": ("IN", 12.9716, 77.5946, 5.5),
    "Mumbai": ("IN", 19.0760, 72.8777, 5.5),
    "Delhi": ("IN", 28.7041, 77.1025, 5.5),
    "Sao Paulo": ("BR", -23.5505, -46.6333, -3),
    "Rio de Janeiro": ("BR", -22.9068, -43.1729, -3),
    "Tokyo": ("JP", 35.6762, 139.6503, 9),
    "Osaka": ("JP", 34.6937, 135.5023, 9),
    "Toronto": ("CA", 43.6532, -79.3832, -5),
    "Vancouver": ("CA", 49.2827, -123.1207, -8),
    "Montreal": ("CA", 45.5019, -73.5674, -5),
    "Sydney": ("AU", -33.8688, 151.2093, 11),
    "Melbourne": ("AU", -37.8136, 144.9631, 11),
    "Amsterdam": ("NL", 52.3676, 4.9041, 1),
    "Rotterdam": ("NL", 51.9244, 4.4777, 1),
    "Seoul": ("KR", 37.5665, 126.9780, 9),
    "Madrid": ("ES", 40.4168, -3.7038, 1),
    "Barcelona": ("ES", 41.3874, 2.1686, 1),
    "Singapore": ("SG", 1.3521, 103.8198, 8),
    "Stockholm": ("SE", 59.3293, 18.0686, 1),
    "Mexico City": ("MX", 19.4326, -99.1332, -6),
    "Tehran": ("IR", 35.6892, 51.3890, 3.5),
}
# Where ordinary customers live: (home cities, relative weight).
HOME_REGIONS = (
    (("New York", "San Francisco", "Chicago", "Austin", "Seattle"), 28),
    (("Bengaluru", "Mumbai", "Delhi"), 10),
    (("London", "Manchester", "Edinburgh"), 8),
    (("Berlin", "Munich", "Hamburg"), 8),
    (("Paris", "Lyon"), 6),
    (("Sao Paulo", "Rio de Janeiro"), 6),
    (("Tokyo", "Osaka"), 6),
    (("Toronto", "Vancouver", "Montreal"), 5),
    (("Sydney", "Melbourne"), 4),
    (("Amsterdam", "Rotterdam"), 3),
    (("Seoul",), 3),
    (("Madrid", "Barcelona"), 3),
    (("Mexico City",), 3),
    (("Singapore",), 2),
    (("Stockholm",), 2),
)
# Long-haul traveller's possible trips from London: (destination, door-to-door minutes), longest
# first; the longest that fits the generated time range is taken.
LONDON_TRIPS = (("New York", 8 * 60), ("Paris", 150))
# Cross-border commuter: Strasbourg to Kehl is ~5 km across the Rhine, a different country.
COMMUTE = ("Strasbourg", "Kehl", 12)
MODELS = ("nimbus-large", "nimbus-medium", "nimbus-small")
EMBEDDING_MODEL = "nimbus-embed"
BENIGN_USER_AGENTS = (
    "python-sdk/1.54.0 CPython/3.12.7",
    "python-sdk/1.49.2 CPython/3.11.9",
    "node-sdk/4.71.0 node/20.18.0",
    "node-sdk/4.68.1 node/22.11.0",
    "go-sdk/0.9.1 go1.23.2",
    "curl/8.5.0",
    "python-httpx/0.27.2",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Safari/605.1.15",
)
HYDRA_USER_AGENT = "python-httpx/0.27.2"
# Rejections carry no tokens; 429 dominates because clients retry into rate limits.
ERROR_STATUSES = (429, 429, 429, 400, 401, 500, 529)


# --- configuration ---------------------------------------------------------------------------------
def this_minute() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)


class EventTimeSpan:
    """The event-time span of a traffic profile's config (fields `start`, `duration`): UTC and as epoch
    milliseconds. Shared by the classic and the field profile."""

    start: datetime
    duration: timedelta

    def _start_in_utc(self) -> None:
        """A naive start is UTC (call from __post_init__ of the frozen dataclass)."""
        if self.start.tzinfo is None:
            object.__setattr__(self, "start", self.start.replace(tzinfo=UTC))

    @property
    def start_ms(self) -> int:
        return (self.start - _EPOCH) // timedelta(milliseconds=1)

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration // timedelta(milliseconds=1)


@dataclass(frozen=True)
class GeneratorConfig(EventTimeSpan):
    seed: int = 1
    accounts: int = 200  # benign accounts, traps included
    start: datetime = field(default_factory=this_minute)
    duration: timedelta = timedelta(minutes=30)
    scenarios: tuple[str, ...] = SCENARIOS
    hydra_accounts: int = 40
    max_disorder_s: float = 5.0
    malformed: int = 0

    def __post_init__(self) -> None:
        if self.accounts < BENIGN_TRAP_ACCOUNTS:
            raise ValueError(f"accounts must be >= {BENIGN_TRAP_ACCOUNTS} (the benign trap groups)")
        unknown = set(self.scenarios) - set(SCENARIOS)
        if unknown:
            raise ValueError(f"unknown scenarios {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
        if self.duration <= timedelta(0):
            raise ValueError("duration must be positive")
        if "hydra" in self.scenarios and self.hydra_accounts < 1:
            raise ValueError("hydra_accounts must be >= 1 when the hydra scenario is on")
        if self.max_disorder_s < 0 or self.malformed < 0:
            raise ValueError("max_disorder_s and malformed must be >= 0")
        self._start_in_utc()


# --- population ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Network:
    """Where a request comes from, as geo-IP/ASN enrichment sees it."""

    ip: str
    country: str | None
    latitude: float | None
    longitude: float | None
    asn: int | None
    asn_type: str | None
    geo_accuracy_km: int | None = None  # GeoIP accuracy radius; emitted only when known


@dataclass(frozen=True)
class RequestStyle:
    input_median: float
    output_median: float
    token_sigma: float  # lognormal spread of token counts
    error_rate: float
    embedding_share: float  # embeddings calls: no output, no prompt template
    fresh_prompt_share: float  # one-off prompts outside the account's templates
    tag_probabilities: tuple[tuple[str, float], ...]
    model_cum_weights: tuple[float, ...]  # over MODELS


@dataclass
class Segment:
    """From start_ms on, requests come from one of `networks`; no networks = offline (in transit)."""

    start_ms: int
    networks: tuple[Network, ...]
    cum_weights: tuple[float, ...] = ()


@dataclass
class Account:
    account_id: str
    api_key_id: str
    org_id: str | None
    group: str
    scenario: str | None
    payment_fingerprint: str | None
    user_agent: str
    peak_per_minute: float
    utc_offset_h: float | None  # None: machine traffic, flat around the clock
    style: RequestStyle
    prompt_fingerprints: tuple[str, ...]
    prompt_cum_weights: tuple[float, ...]
    itinerary: list[Segment]
    pinned_ms: list[int] = field(default_factory=list)  # requests that happen for sure (timelines)
    next_candidate_ms: float = 0.0

    def segment_at(self, t_ms: int) -> Segment:
        return self.itinerary[bisect_right(self.itinerary, t_ms, key=lambda s: s.start_ms) - 1]

    def request_times(self, until_ms: int, rng: random.Random) -> list[int]:
        """Request times before until_ms: a Poisson process thinned by the local time of day."""
        times = []
        per_ms = self.peak_per_minute / 60_000
        while self.next_candidate_ms < until_ms:
            t_ms = int(self.next_candidate_ms)
            self.next_candidate_ms += rng.expovariate(per_ms)
            if not self.segment_at(t_ms).networks:
                continue
            if self.utc_offset_h is not None and rng.random() > _daytime_activity(t_ms, self.utc_offset_h):
                continue
            times.append(t_ms)
        while self.pinned_ms and self.pinned_ms[0] < until_ms:
            times.append(self.pinned_ms.pop(0))
        times.sort()
        return times

    @property
    def label(self) -> dict[str, str]:
        return {
            "account_id": self.account_id,
            "group": self.group,
            "scenario_or_benign": self.scenario or BENIGN,
        }


def _daytime_activity(t_ms: int, utc_offset_h: float) -> float:
    """Share of peak activity at this local hour: busy 07-23, a trickle at night."""
    local_hour = (t_ms / 3_600_000 + utc_offset_h) % 24
    return 0.08 + 0.92 * max(0.0, math.sin(math.pi * (local_hour - 7) / 16))


class _Builder:
    """Draws identities, addresses and networks; remembers used /24s so only intended sharing occurs."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self._used_blocks: set[str] = set()
        self._country_asns: dict[str, tuple[list[int], int]] = {}

    def hex_id(self, prefix: str, bits: int = 48) -> str:
        return f"{prefix}{self.rng.getrandbits(bits):0{bits // 4}x}"

    def fingerprint(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def block(self, country: str, asn_name: str | None = None) -> str:
        """A fresh /24 ("a.b.c") that the GeoIP database places in country (and in the AS it names
        asn_name, when it has any there): enrichment resolves the address to where it is meant to be."""
        while True:
            prefix = str(enrichment.country_block(country, 4, self.rng, asn_name).network_address)[:-2]
            if prefix not in self._used_blocks:
                self._used_blocks.add(prefix)
                return prefix
            asn_name = None  # the AS may have only a block or two there: draw from the whole country

    def ipv6(self, country: str) -> str:
        """An address in a /48 the GeoIP database places in country."""
        block = enrichment.country_block(country, 6, self.rng)
        return str(block.network_address + self.rng.getrandbits(128 - block.prefixlen))

    def asn(self) -> int:
        return self.rng.randrange(2_000, 400_000)

    def isp_asns(self, country: str) -> tuple[list[int], int]:
        """A few residential ISPs and one mobile carrier per country, shared by its customers."""
        if country not in self._country_asns:
            self._country_asns[country] = ([self.asn() for _ in range(3)], self.asn())
        return self._country_asns[country]

    def network(self, ip: str, place: str, asn: int, asn_type: str) -> Network:
        country, latitude, longitude, _ = PLACES[place]
        return Network(ip, country, latitude, longitude, asn, asn_type)

    def home_network(self, place: str) -> Network:
        country = PLACES[place][0]
        residential, _ = self.isp_asns(country)
        ip = f"{self.block(country)}.{self.rng.randrange(2, 255)}"
        return self.network(ip, place, self.rng.choice(residential), "residential")

    def home_networks(self, place: str) -> tuple[Network, ...]:
        """1-3 addresses: the home line, maybe a phone, maybe a second address after a DHCP renewal."""
        home = self.home_network(place)
        networks = [home]
        count = self.rng.choice((1, 1, 2, 2, 3))
        if count >= 2:
            _, mobile_asn = self.isp_asns(home.country)
            ip = (
                self.ipv6(home.country)
                if self.rng.random() < 0.25
                else f"{self.block(home.country)}.{self.rng.randrange(2, 255)}"
            )
            networks.append(self.network(ip, place, mobile_asn, "mobile"))
        if count == 3:
            renewed_ip = f"{home.ip.rsplit('.', 1)[0]}.{self.rng.randrange(2, 255)}"
            networks.append(self.network(renewed_ip, place, home.asn, "residential"))
        return tuple(networks)

    def personal_style(self) -> RequestStyle:
        rng = self.rng
        input_median = rng.uniform(600, 3000)
        return RequestStyle(
            input_median=input_median,
            output_median=input_median * rng.uniform(0.15, 0.8),  # input-heavy to balanced
            token_sigma=0.8,
            error_rate=rng.uniform(0.01, 0.04),
            embedding_share=rng.choice((0.0, 0.0, 0.05, 0.15)),
            fresh_prompt_share=0.2,
            tag_probabilities=(("tool_use", 0.06), ("vision", 0.02), ("reasoning_elicitation", 0.02)),
            model_cum_weights=tuple(accumulate(rng.choice(((3, 5, 2), (6, 3, 1), (1, 4, 5))))),
        )

    def personal_prompts(self) -> tuple[tuple[str, ...], tuple[float, ...]]:
        count = self.rng.randint(3, 8)
        # Zipf-like reuse: a favourite template or two, then a tail.
        return tuple(self.fingerprint() for _ in range(count)), tuple(
            accumulate(1 / k for k in range(1, count + 1))
        )

    def account(
        self,
        group: str,
        itinerary: list[Segment],
        *,
        start_ms: int,
        peak_per_minute: float,
        utc_offset_h: float | None,
        scenario: str | None = None,
        org_id: str | None = None,
        payment_fingerprint: str | None = None,
        style: RequestStyle | None = None,
        prompts: tuple[tuple[str, ...], tuple[float, ...]] | None = None,
        user_agent: str | None = None,
        pinned_ms: Iterable[int] = (),
    ) -> Account:
        for segment in itinerary:
            if segment.networks and not segment.cum_weights:
                # Clients mostly stick to their first address: 3:1 against each other one.
                segment.cum_weights = tuple(
                    accumulate(1.0 if i else 3.0 for i in range(len(segment.networks)))
                )
        fingerprints, cum_weights = prompts or self.personal_prompts()
        account = Account(
            account_id=self.hex_id("acct_"),
            api_key_id=self.hex_id("key_"),
            org_id=org_id,
            group=group,
            scenario=scenario,
            payment_fingerprint=payment_fingerprint or self.hex_id("pay_", 64),
            user_agent=user_agent or self.rng.choice(BENIGN_USER_AGENTS),
            peak_per_minute=peak_per_minute,
            utc_offset_h=utc_offset_h,
            style=style or self.personal_style(),
            prompt_fingerprints=fingerprints,
            prompt_cum_weights=cum_weights,
            itinerary=itinerary,
            pinned_ms=sorted(pinned_ms),
        )
        account.next_candidate_ms = start_ms + self.rng.expovariate(peak_per_minute / 60_000)
        return account


def _population(config: GeneratorConfig, rng: random.Random) -> list[Account]:
    build = _Builder(rng)
    start_ms, end_ms = config.start_ms, config.end_ms
    duration_ms = end_ms - start_ms
    accounts: list[Account] = []
    region_cum_weights = tuple(accumulate(weight for _, weight in HOME_REGIONS))

    def personal_org() -> str | None:
        return build.hex_id("org_", 40) if rng.random() < 0.6 else None

    # Ordinary individuals.
    for _ in range(config.accounts - BENIGN_TRAP_ACCOUNTS):
        cities, _ = rng.choices(HOME_REGIONS, cum_weights=region_cum_weights)[0]
        place = rng.choice(cities)
        accounts.append(
            build.account(
                "individual",
                [Segment(start_ms, build.home_networks(place))],
                org_id=personal_org(),
                peak_per_minute=min(6.0, rng.lognormvariate(0, 0.6)),
                utc_offset_h=PLACES[place][3],
                start_ms=start_ms,
            )
        )

    # Trap: a company's 15 employees behind one office NAT address, billed to one card.
    office = build.network(f"{build.block('DE')}.{rng.randrange(2, 255)}", "Munich", build.asn(), "business")
    org, payment = build.hex_id("org_", 40), build.hex_id("pay_", 64)
    for _ in range(CORPORATE_NAT_ACCOUNTS):
        accounts.append(
            build.account(
                "corporate_nat",
                [Segment(start_ms, (office,))],
                org_id=org,
                payment_fingerprint=payment,
                peak_per_minute=rng.uniform(0.5, 1.5),
                utc_offset_h=PLACES["Munich"][3],
                start_ms=start_ms,
            )
        )

    # Trap: a legitimate batch pipeline, very high volume around the clock, input-heavy.
    batch_block = build.block("US")  # Seattle
    batch_asn = build.asn()
    accounts.append(
        build.account(
            "batch_user",
            [
                Segment(
                    start_ms,
                    tuple(
                        build.network(f"{batch_block}.{host}", "Seattle", batch_asn, "business")
                        for host in (20, 21)
                    ),
                )
            ],
            org_id=build.hex_id("org_", 40),
            peak_per_minute=45.0,
            utc_offset_h=None,
            style=RequestStyle(6000, 200, 0.4, 0.01, 0.0, 0.0, (), tuple(accumulate((0, 1, 0)))),
            prompts=((build.fingerprint(), build.fingerprint()), (0.7, 1.0)),
            user_agent=BENIGN_USER_AGENTS[0],
            start_ms=start_ms,
        )
    )

    # Trap: travellers. A Londoner takes the longest trip that fits the time range (New York needs
    # > 13 h of data); a commuter crosses the Rhine from France to Germany.
    london = build.home_network("London")
    itinerary = [Segment(start_ms, (london,))]
    pinned = []
    trip = next(
        ((place, minutes) for place, minutes in LONDON_TRIPS if minutes * 60_000 <= duration_ms * 0.6), None
    )
    if trip is not None:
        destination, minutes = trip
        depart_ms = start_ms + (duration_ms - minutes * 60_000) // 2
        arrive_ms = depart_ms + minutes * 60_000
        itinerary += [Segment(depart_ms, ()), Segment(arrive_ms, (build.home_network(destination),))]
        pinned = [depart_ms - 1, arrive_ms]  # last request before boarding, first after landing
    accounts.append(
        build.account(
            "traveller",
            itinerary,
            org_id=personal_org(),
            peak_per_minute=1.0,
            utc_offset_h=None,
            pinned_ms=pinned,
            start_ms=start_ms,
        )
    )
    home, away, minutes = COMMUTE
    itinerary = [Segment(start_ms, (build.home_network(home),))]
    pinned = []
    if minutes * 60_000 <= duration_ms * 0.6:
        depart_ms = start_ms + (duration_ms - minutes * 60_000) // 2
        arrive_ms = depart_ms + minutes * 60_000
        itinerary += [Segment(depart_ms, ()), Segment(arrive_ms, (build.home_network(away),))]
        pinned = [depart_ms - 1, arrive_ms]
    accounts.append(
        build.account(
            "traveller",
            itinerary,
            org_id=personal_org(),
            peak_per_minute=1.0,
            utc_offset_h=None,
            pinned_ms=pinned,
            start_ms=start_ms,
        )
    )

    # A commercial VPN provider's exits in Amsterdam; the VPN user and the restricted scenario share it.
    vpn_block, vpn_asn = build.block("NL"), build.asn()  # Amsterdam

    def vpn_exit() -> Network:
        return build.network(f"{vpn_block}.{rng.randrange(2, 255)}", "Amsterdam", vpn_asn, "vpn")

    # Trap: a Berliner switching the VPN on and off every 5-15 minutes.
    berlin, exit_node = build.home_network("Berlin"), vpn_exit()
    itinerary, t_ms, on_vpn = [], start_ms, False
    while t_ms < end_ms:
        itinerary.append(Segment(t_ms, (exit_node if on_vpn else berlin,)))
        t_ms += rng.randrange(5 * 60_000, 15 * 60_000)
        on_vpn = not on_vpn
    accounts.append(
        build.account(
            "vpn_user",
            itinerary,
            org_id=personal_org(),
            peak_per_minute=1.5,
            utc_offset_h=None,
            pinned_ms=[segment.start_ms for segment in itinerary],
            start_ms=start_ms,
        )
    )

    # Trap: a team in one org sharing a prompt template, each from their own home line.
    org, payment, template = build.hex_id("org_", 40), build.hex_id("pay_", 64), build.fingerprint()
    for _ in range(TEMPLATE_TEAM_ACCOUNTS):
        personal, _ = build.personal_prompts()
        fingerprints = (template, *personal[:3])
        accounts.append(
            build.account(
                "shared_template_team",
                [Segment(start_ms, build.home_networks("Bengaluru"))],
                org_id=org,
                payment_fingerprint=payment,
                peak_per_minute=1.0,
                utc_offset_h=PLACES["Bengaluru"][3],
                prompts=(fingerprints, tuple(accumulate((0.6, 0.2, 0.1, 0.1)))),
                start_ms=start_ms,
            )
        )

    if "hydra" in config.scenarios:
        # A proxy service: many clean-looking accounts load-balanced over 3 hosting IPs in one /24,
        # 2 cards, 3 templates asking for step-by-step reasoning, long outputs, flat 24/7 timing.
        block, asn = build.block("US"), build.asn()  # Ashburn
        base = rng.randrange(2, 250)
        exits = tuple(build.network(f"{block}.{base + i}", "Ashburn", asn, "hosting") for i in range(3))
        payments = (build.hex_id("pay_", 64), build.hex_id("pay_", 64))
        templates = ((build.fingerprint(), build.fingerprint(), build.fingerprint()), (0.5, 0.8, 1.0))
        style = _EXTRACTION_STYLE
        for index in range(config.hydra_accounts):
            accounts.append(
                build.account(
                    "hydra",
                    [Segment(start_ms, exits, (1, 2, 3))],
                    scenario="hydra",
                    org_id=build.hex_id("org_", 40) if rng.random() < 0.7 else None,
                    payment_fingerprint=payments[index % 2],
                    peak_per_minute=1.0,
                    utc_offset_h=None,
                    style=style,
                    prompts=templates,
                    user_agent=HYDRA_USER_AGENT,
                    start_ms=start_ms,
                )
            )

    if "restricted" in config.scenarios:
        # A user in Iran, first direct, then through a VPN exit in the Netherlands to evade the block.
        switch_ms = start_ms + int(duration_ms * 0.4)
        accounts.append(
            build.account(
                "restricted",
                [Segment(start_ms, (build.home_network("Tehran"),)), Segment(switch_ms, (vpn_exit(),))],
                scenario="restricted",
                org_id=personal_org(),
                peak_per_minute=1.5,
                utc_offset_h=None,
                pinned_ms=[start_ms, switch_ms - 1, switch_ms],
                start_ms=start_ms,
            )
        )

    if "travel" in config.scenarios:
        # One API key used in New York and, 20 minutes later, in Tokyo: ~10,850 km, impossible.
        gap_ms = min(20 * 60_000, duration_ms // 2)
        new_york_ms = start_ms + (duration_ms - gap_ms) // 2
        tokyo_ms = new_york_ms + gap_ms
        accounts.append(
            build.account(
                "travel",
                [
                    Segment(start_ms, (build.home_network("New York"),)),
                    Segment(new_york_ms + 1, ()),
                    Segment(tokyo_ms, (build.home_network("Tokyo"),)),
                ],
                scenario="travel",
                org_id=personal_org(),
                peak_per_minute=1.0,
                utc_offset_h=None,
                pinned_ms=[new_york_ms, tokyo_ms],
                start_ms=start_ms,
            )
        )
    _add_ring_scenarios(config, build, accounts)
    return accounts


# Harvesting traffic: short prompts, long outputs, mostly "show your reasoning", the largest model.
_EXTRACTION_STYLE = RequestStyle(
    350, 3600, 0.35, 0.02, 0.0, 0.0, (("reasoning_elicitation", 0.85),), (1.0, 1.0, 1.0)
)
# Only pinned requests: a rate this low adds (almost) no Poisson requests of its own.
_PINNED_ONLY_PER_MINUTE = 1e-6


def _random_home(build: _Builder) -> str:
    cities, _ = build.rng.choices(HOME_REGIONS, cum_weights=tuple(accumulate(w for _, w in HOME_REGIONS)))[0]
    return build.rng.choice(cities)


def _add_ring_scenarios(config: GeneratorConfig, build: _Builder, accounts: list[Account]) -> None:
    """The scenarios added for the detection catalogue; each ring member has its own org and home line."""
    rng = build.rng
    start_ms, end_ms = config.start_ms, config.end_ms
    minutes = range(start_ms, end_ms, 60_000)

    if "hopper" in config.scenarios:
        # One key behind a residential-proxy pool: a new country every 3 minutes, no VPN/hosting exits.
        exits = [build.home_network(place) for place in HOPPER_PLACES]
        itinerary = [
            Segment(t_ms, (exits[index % len(exits)],))
            for index, t_ms in enumerate(range(start_ms, end_ms, 3 * 60_000))
        ]
        accounts.append(
            build.account(
                "hopper",
                itinerary,
                scenario="hopper",
                org_id=build.hex_id("org_", 40),
                peak_per_minute=2.0,
                utc_offset_h=None,
                pinned_ms=[segment.start_ms for segment in itinerary],
                start_ms=start_ms,
            )
        )

    if "extraction" in config.scenarios:
        # A lone harvester on its own residential line: no ring, only its traffic shape gives it away.
        fingerprints = (build.fingerprint(), build.fingerprint())
        accounts.append(
            build.account(
                "extraction",
                [Segment(start_ms, (build.home_network(_random_home(build)),))],
                scenario="extraction",
                org_id=build.hex_id("org_", 40),
                peak_per_minute=3.0,
                utc_offset_h=None,
                style=_EXTRACTION_STYLE,
                prompts=(fingerprints, (0.6, 1.0)),
                user_agent=HYDRA_USER_AGENT,
                start_ms=start_ms,
            )
        )

    if "payment_ring" in config.scenarios:
        # Ordinary-looking accounts of different orgs, all paid with one card.
        card = build.hex_id("pay_", 64)
        for _ in range(PAYMENT_RING_ACCOUNTS):
            accounts.append(
                build.account(
                    "payment_ring",
                    [Segment(start_ms, build.home_networks(_random_home(build)))],
                    scenario="payment_ring",
                    org_id=build.hex_id("org_", 40),
                    payment_fingerprint=card,
                    peak_per_minute=1.0,
                    utc_offset_h=None,
                    start_ms=start_ms,
                )
            )

    if "template_ring" in config.scenarios:
        # Different orgs, own cards and lines, one harvesting script of two prompt templates.
        script = ((build.fingerprint(), build.fingerprint()), (0.7, 1.0))
        for _ in range(TEMPLATE_RING_ACCOUNTS):
            accounts.append(
                build.account(
                    "template_ring",
                    [Segment(start_ms, build.home_networks(_random_home(build)))],
                    scenario="template_ring",
                    org_id=build.hex_id("org_", 40),
                    peak_per_minute=1.0,
                    utc_offset_h=None,
                    prompts=script,
                    start_ms=start_ms,
                )
            )

    if "sync_ring" in config.scenarios:
        # One scheduler fires every member in the same ~30% of minutes, 3 requests each; nothing else
        # is shared: each member has its own residential line, ASN, org, card and prompts.
        schedule = [t_ms for t_ms in minutes if rng.random() < 0.3]
        for _ in range(SYNC_RING_ACCOUNTS):
            pinned = [t_ms + rng.randrange(60_000) for t_ms in schedule for _ in range(3)]
            accounts.append(
                build.account(
                    "sync_ring",
                    [Segment(start_ms, (build.home_network(_random_home(build)),))],
                    scenario="sync_ring",
                    org_id=build.hex_id("org_", 40),
                    peak_per_minute=_PINNED_ONLY_PER_MINUTE,
                    utc_offset_h=None,
                    pinned_ms=pinned,
                    start_ms=start_ms,
                )
            )

    if "rate_limit_ring" in config.scenarios:
        # A load balancer keeps every account at 80-90% of the per-account limit, every minute.
        low, high = int(RATE_LIMIT_PER_MINUTE * 0.8), int(RATE_LIMIT_PER_MINUTE * 0.9)
        for _ in range(RATE_LIMIT_RING_ACCOUNTS):
            pinned = [t_ms + rng.randrange(60_000) for t_ms in minutes for _ in range(rng.randint(low, high))]
            accounts.append(
                build.account(
                    "rate_limit_ring",
                    [Segment(start_ms, (build.home_network(_random_home(build)),))],
                    scenario="rate_limit_ring",
                    org_id=build.hex_id("org_", 40),
                    peak_per_minute=_PINNED_ONLY_PER_MINUTE,
                    utc_offset_h=None,
                    pinned_ms=pinned,
                    start_ms=start_ms,
                )
            )


# --- events ----------------------------------------------------------------------------------------
@lru_cache(maxsize=1024)
def _second_prefix(epoch_second: int) -> str:
    """'YYYY-MM-DDTHH:MM:SS' of an epoch second: events are time-ordered, so consecutive ones share it."""
    return format_event_time(_EPOCH + timedelta(seconds=epoch_second))[:19]


def _event(account: Account, t_ms: int, rng: random.Random) -> dict:
    segment = account.segment_at(t_ms)
    networks = segment.networks
    network = networks[0] if len(networks) == 1 else rng.choices(networks, cum_weights=segment.cum_weights)[0]
    style = account.style
    if rng.random() < style.embedding_share:
        endpoint, model, fingerprint = "/v1/embeddings", EMBEDDING_MODEL, None
        input_tokens = max(1, int(rng.lognormvariate(math.log(style.input_median / 4), style.token_sigma)))
        output_tokens = 0
    else:
        endpoint = "/v1/messages"
        model = rng.choices(MODELS, cum_weights=style.model_cum_weights)[0]
        if rng.random() < style.fresh_prompt_share:
            fingerprint = f"{rng.getrandbits(64):016x}"
        else:
            fingerprint = rng.choices(account.prompt_fingerprints, cum_weights=account.prompt_cum_weights)[0]
        input_tokens = max(1, int(rng.lognormvariate(math.log(style.input_median), style.token_sigma)))
        output_tokens = max(1, int(rng.lognormvariate(math.log(style.output_median), style.token_sigma)))
    if rng.random() < style.error_rate:
        status_code = rng.choice(ERROR_STATUSES)
        input_tokens = output_tokens = 0
        latency_ms = rng.randrange(20, 400)
    else:
        status_code = 200
        latency_ms = int(150 + output_tokens * rng.uniform(8, 20) + input_tokens * 0.02)
    event = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_time": f"{_second_prefix(t_ms // 1000)}.{t_ms % 1000:03d}Z",
        "account_id": account.account_id,
        "api_key_id": account.api_key_id,
        "org_id": account.org_id,
        "source_ip": network.ip,
        "country": network.country,
        "latitude": network.latitude,
        "longitude": network.longitude,
        "asn": network.asn,
        "asn_type": network.asn_type,
        "model": model,
        "endpoint": endpoint,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "status_code": status_code,
        "latency_ms": latency_ms,
        "prompt_fingerprint": fingerprint,
        "payment_fingerprint": account.payment_fingerprint,
        "user_agent": account.user_agent,
        "request_tags": [tag for tag, probability in style.tag_probabilities if rng.random() < probability],
    }
    if network.geo_accuracy_km is not None:
        event["geo_accuracy_km"] = network.geo_accuracy_km
    return event


class DeliveryQueue:
    """Events delivered at event time + a random delay below max_disorder_s, emitted in delivery order.

    Emitting in delivery order means no event arrives more than max_disorder_s behind one already
    emitted, the way a real producer fleet delivers them.
    """

    def __init__(self, max_disorder_s: float):
        self._max_delay_ms = int(max_disorder_s * 1000)
        self._pending: list[tuple[int, int, int, dict]] = []
        self._sequence = 0

    def delivery_ms(self, t_ms: int, rng: random.Random) -> int:
        return t_ms + (rng.randrange(self._max_delay_ms) if self._max_delay_ms else 0)

    def push(self, delivered_ms: int, t_ms: int, event: dict) -> None:
        heapq.heappush(self._pending, (delivered_ms, self._sequence, t_ms, event))
        self._sequence += 1

    def release(self, before_ms: int | None = None) -> Iterator[tuple[int, dict]]:
        """(event time, event) of everything delivered before before_ms (None: everything left).

        Callers only push events with event time >= before_ms afterwards, so none can overtake these.
        """
        pending = self._pending
        while pending and (before_ms is None or pending[0][0] < before_ms):
            _, _, t_ms, event = heapq.heappop(pending)
            yield t_ms, event


def _timed_events(config: GeneratorConfig) -> Iterator[tuple[int, dict]]:
    rng = random.Random(config.seed)
    accounts = _population(config, rng)
    queue = DeliveryQueue(config.max_disorder_s)
    for slice_start in range(config.start_ms, config.end_ms, _SLICE_MS):
        slice_end = min(slice_start + _SLICE_MS, config.end_ms)
        for account in accounts:
            for t_ms in account.request_times(slice_end, rng):
                delivered_ms = queue.delivery_ms(t_ms, rng)
                queue.push(delivered_ms, t_ms, _event(account, t_ms, rng))
        yield from queue.release(before_ms=slice_end)
    yield from queue.release()


def generate_events(config: GeneratorConfig) -> Iterator[dict]:
    """Valid access events for [start, start + duration), in event-time order up to max_disorder_s."""
    for _, event in _timed_events(config):
        yield event


def labels(config: GeneratorConfig) -> list[dict[str, str]]:
    """Ground truth, one row per account: account_id, group, scenario_or_benign."""
    return [account.label for account in _population(config, random.Random(config.seed))]


def write_labels(config: GeneratorConfig, path: Path) -> int:
    return write_label_rows(labels(config), path)


def write_label_rows(rows: list[dict[str, str]], path: Path) -> int:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


# --- records: what goes on the wire ----------------------------------------------------------------
class Record(NamedTuple):
    key: str
    value: bytes
    event_time_ms: int
    malformed: bool


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def encode_event(event: dict) -> bytes:
    return _COMPACT_JSON.encode(event).encode()


def _record(event: dict) -> Record:
    event_time_ms = (datetime.fromisoformat(event["event_time"]) - _EPOCH) // timedelta(milliseconds=1)
    return Record(event["account_id"], encode_event(event), event_time_ms, False)


def _malformed_value(event: dict, kind: str, rng: random.Random) -> bytes:
    broken = dict(event, event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)))
    if kind == "invalid_json":
        text = encode_event(broken)
        return text[: len(text) // 2]  # cut mid-object: never parses
    if kind == "missing_field":
        del broken[rng.choice(load_schema(ACCESS_EVENT_SCHEMA)["required"])]
    elif kind == "wrong_type":
        broken["input_tokens"] = "abc"
    else:
        broken["output_tokens"] = -rng.randint(1, 500)
    return encode_event(broken)


def generate_records(config: GeneratorConfig) -> Iterator[Record]:
    """Encoded events with config.malformed broken records mixed in at random event times."""
    return records_with_malformed(
        _timed_events(config), config.seed, config.start_ms, config.end_ms, config.malformed
    )


def records_with_malformed(
    timed_events: Iterable[tuple[int, dict]], seed: int, start_ms: int, end_ms: int, malformed: int
) -> Iterator[Record]:
    """Encoded (event time, event) pairs with `malformed` broken records mixed in at random times.

    The malformed records come from their own random stream, so the valid events are identical with
    or without them.
    """
    rng = random.Random(f"{seed}:malformed")
    due_ms = sorted(rng.randrange(start_ms, end_ms) for _ in range(malformed))
    made = 0
    last: tuple[int, dict] | None = None
    for t_ms, event in timed_events:
        yield Record(event["account_id"], encode_event(event), t_ms, False)
        last = (t_ms, event)
        while made < len(due_ms) and due_ms[made] <= t_ms:
            yield Record(
                event["account_id"], _malformed_value(event, MALFORMED_KINDS[made % 4], rng), t_ms, True
            )
            made += 1
    if made < len(due_ms) and last is None:
        raise ValueError("no events generated, so there is nothing to derive malformed records from")
    while made < len(due_ms):
        t_ms, event = last
        yield Record(event["account_id"], _malformed_value(event, MALFORMED_KINDS[made % 4], rng), t_ms, True)
        made += 1


def write_jsonl(records: Iterable[Record], path: Path) -> tuple[int, int]:
    """Write one record per line; returns (valid, malformed) counts."""
    counts = [0, 0]
    with path.open("wb", buffering=1 << 20) as handle:
        for record in records:
            handle.write(record.value + b"\n")
            counts[record.malformed] += 1
    return counts[0], counts[1]


def produce_to_kafka(
    events: Iterable[dict | Record],
    bootstrap: str,
    topic: str,
    rate: float = 0,
    *,
    time_compression: float = 0,
) -> int:
    """Send events (dicts or pre-encoded Records) keyed by account_id; returns the count acknowledged.

    rate caps messages per second (0 = as fast as possible); time_compression K paces sends so event
    time advances K times faster than the wall clock (0 = no pacing).
    """
    from kafka import KafkaProducer  # imported here so file-only generation never needs the client

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        # Small JSON messages are cheap only in bulk: big batches, and gzip (repetitive keys compress
        # well) roughly doubled throughput on a busy 2-core machine versus uncompressed.
        linger_ms=50,
        batch_size=1024 * 1024,
        compression_type="gzip",
        max_block_ms=30_000,
    )
    acknowledged, failures = 0, []

    def on_success(_metadata) -> None:
        nonlocal acknowledged
        acknowledged += 1

    sent = 0
    started = time.monotonic()
    first_event_ms = None
    try:
        for item in events:
            record = item if isinstance(item, Record) else _record(item)
            wait_until = started + (sent / rate if rate > 0 else 0)
            if time_compression > 0:
                first_event_ms = record.event_time_ms if first_event_ms is None else first_event_ms
                wait_until = max(
                    wait_until, started + (record.event_time_ms - first_event_ms) / 1000 / time_compression
                )
            delay = wait_until - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the producer, not synchronisation
            future = producer.send(topic, key=record.key.encode(), value=record.value)
            future.add_callback(on_success)
            future.add_errback(failures.append)
            sent += 1
        producer.flush()
    finally:
        producer.close()
    if failures:
        raise RuntimeError(f"{len(failures)} of {sent} messages to {topic} failed, first: {failures[0]!r}")
    return acknowledged



def pseudonymised(records: Iterable[Record], privacy: Privacy) -> Iterator[Record]:
    """Pseudonymise valid events as a producer would before they leave for Kafka (see privacy.py)."""
    for record in records:
        if record.malformed:
            yield record
        else:
            yield record._replace(value=encode_event(privacy.apply(json.loads(record.value))))
