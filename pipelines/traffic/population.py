"""The building blocks of a synthetic population, shared by the classic and the field profile: reference
places, models and clients, and the accounts, networks, request styles and activity segments a builder
draws (unique /24s, so only intended sharing occurs)."""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import accumulate

from pipelines.detect import enrichment

BENIGN = "benign"  # the label of every account outside a scenario

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
            if self.utc_offset_h is not None and rng.random() > daytime_activity(t_ms, self.utc_offset_h):
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


def daytime_activity(t_ms: int, utc_offset_h: float) -> float:
    """Share of peak activity at this local hour: busy 07-23, a trickle at night."""
    local_hour = (t_ms / 3_600_000 + utc_offset_h) % 24
    return 0.08 + 0.92 * max(0.0, math.sin(math.pi * (local_hour - 7) / 16))


class Builder:
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
