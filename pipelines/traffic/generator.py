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

This module is the classic profile (its config, population and scenarios, events and labels: ~600 lines
that only make sense together, one seeded stream); the building blocks both profiles share are in
population.py, what goes on the wire (records, JSONL, Kafka) in records.py, the command in
pipelines/commands/traffic.py.
"""

from __future__ import annotations

import csv
import heapq
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import accumulate
from pathlib import Path

from pipelines.stream.contracts import format_event_time
from pipelines.traffic.population import (
    BENIGN_USER_AGENTS,
    COMMUTE,
    EMBEDDING_MODEL,
    ERROR_STATUSES,
    HOME_REGIONS,
    HYDRA_USER_AGENT,
    LONDON_TRIPS,
    MODELS,
    PLACES,
    Account,
    Builder,
    Network,
    RequestStyle,
    Segment,
)
from pipelines.traffic.records import EPOCH, Record, records_with_malformed

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
        return (self.start - EPOCH) // timedelta(milliseconds=1)

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
def _population(config: GeneratorConfig, rng: random.Random) -> list[Account]:
    build = Builder(rng)
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
    def trip_fits(minutes: int) -> bool:
        return minutes * 60_000 <= duration_ms * 0.6

    def traveller(home: str, destination: str, minutes: int) -> Account:
        """At home; if the trip fits in 60% of the range, offline mid-range, then on at the destination."""
        itinerary = [Segment(start_ms, (build.home_network(home),))]
        pinned = []
        if trip_fits(minutes):
            depart_ms = start_ms + (duration_ms - minutes * 60_000) // 2
            arrive_ms = depart_ms + minutes * 60_000
            itinerary += [Segment(depart_ms, ()), Segment(arrive_ms, (build.home_network(destination),))]
            pinned = [depart_ms - 1, arrive_ms]  # last request before boarding, first after landing
        return build.account(
            "traveller",
            itinerary,
            org_id=personal_org(),
            peak_per_minute=1.0,
            utc_offset_h=None,
            pinned_ms=pinned,
            start_ms=start_ms,
        )

    # The longest trip that fits; when none does, the shortest, which traveller() then keeps at home.
    london_trip = next((trip for trip in LONDON_TRIPS if trip_fits(trip[1])), LONDON_TRIPS[-1])
    accounts.append(traveller("London", *london_trip))
    accounts.append(traveller(*COMMUTE))

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
                _scenario_account(
                    build,
                    "hydra",
                    [Segment(start_ms, exits, (1, 2, 3))],
                    build.hex_id("org_", 40) if rng.random() < 0.7 else None,
                    payment_fingerprint=payments[index % 2],
                    peak_per_minute=1.0,
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
            _scenario_account(
                build,
                "restricted",
                [Segment(start_ms, (build.home_network("Tehran"),)), Segment(switch_ms, (vpn_exit(),))],
                personal_org(),
                peak_per_minute=1.5,
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
            _scenario_account(
                build,
                "travel",
                [
                    Segment(start_ms, (build.home_network("New York"),)),
                    Segment(new_york_ms + 1, ()),
                    Segment(tokyo_ms, (build.home_network("Tokyo"),)),
                ],
                personal_org(),
                peak_per_minute=1.0,
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


def _random_home(build: Builder) -> str:
    cities, _ = build.rng.choices(HOME_REGIONS, cum_weights=tuple(accumulate(w for _, w in HOME_REGIONS)))[0]
    return build.rng.choice(cities)


def _scenario_account(
    build: Builder, scenario: str, itinerary: list[Segment], org_id: str | None, **fields
) -> Account:
    """A scripted scenario's account, its group named after the scenario; no local day (utc_offset_h
    None): its timing is the scenario's script, not a diurnal curve."""
    return build.account(scenario, itinerary, scenario=scenario, org_id=org_id, utc_offset_h=None, **fields)


def _own_home_line(build: Builder, start_ms: int) -> list[Segment]:
    """An itinerary on one residential line of its own, in a random home city."""
    return [Segment(start_ms, (build.home_network(_random_home(build)),))]


def _ordinary_member(build: Builder, scenario: str, start_ms: int, **shared) -> Account:
    """A ring member that looks like an ordinary user (own org, own home's lines, a modest rate);
    only what the ring shares (`shared`: its card or its prompts) links it to the others."""
    return _scenario_account(
        build,
        scenario,
        [Segment(start_ms, build.home_networks(_random_home(build)))],
        build.hex_id("org_", 40),
        peak_per_minute=1.0,
        start_ms=start_ms,
        **shared,
    )


def _scheduled_member(build: Builder, scenario: str, start_ms: int, pinned_ms: list[int]) -> Account:
    """A ring member with its own home line and org whose requests are exactly its scheduler's."""
    return _scenario_account(
        build,
        scenario,
        _own_home_line(build, start_ms),
        build.hex_id("org_", 40),
        peak_per_minute=_PINNED_ONLY_PER_MINUTE,
        pinned_ms=pinned_ms,
        start_ms=start_ms,
    )


def _add_ring_scenarios(config: GeneratorConfig, build: Builder, accounts: list[Account]) -> None:
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
            _scenario_account(
                build,
                "hopper",
                itinerary,
                build.hex_id("org_", 40),
                peak_per_minute=2.0,
                pinned_ms=[segment.start_ms for segment in itinerary],
                start_ms=start_ms,
            )
        )

    if "extraction" in config.scenarios:
        # A lone harvester on its own residential line: no ring, only its traffic shape gives it away.
        fingerprints = (build.fingerprint(), build.fingerprint())
        accounts.append(
            _scenario_account(
                build,
                "extraction",
                _own_home_line(build, start_ms),
                build.hex_id("org_", 40),
                peak_per_minute=3.0,
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
            accounts.append(_ordinary_member(build, "payment_ring", start_ms, payment_fingerprint=card))

    if "template_ring" in config.scenarios:
        # Different orgs, own cards and lines, one harvesting script of two prompt templates.
        script = ((build.fingerprint(), build.fingerprint()), (0.7, 1.0))
        for _ in range(TEMPLATE_RING_ACCOUNTS):
            accounts.append(_ordinary_member(build, "template_ring", start_ms, prompts=script))

    if "sync_ring" in config.scenarios:
        # One scheduler fires every member in the same ~30% of minutes, 3 requests each; nothing else
        # is shared: each member has its own residential line, ASN, org, card and prompts.
        schedule = [t_ms for t_ms in minutes if rng.random() < 0.3]
        for _ in range(SYNC_RING_ACCOUNTS):
            pinned = [t_ms + rng.randrange(60_000) for t_ms in schedule for _ in range(3)]
            accounts.append(_scheduled_member(build, "sync_ring", start_ms, pinned))

    if "rate_limit_ring" in config.scenarios:
        # A load balancer keeps every account at 80-90% of the per-account limit, every minute.
        low, high = int(RATE_LIMIT_PER_MINUTE * 0.8), int(RATE_LIMIT_PER_MINUTE * 0.9)
        for _ in range(RATE_LIMIT_RING_ACCOUNTS):
            pinned = [t_ms + rng.randrange(60_000) for t_ms in minutes for _ in range(rng.randint(low, high))]
            accounts.append(_scheduled_member(build, "rate_limit_ring", start_ms, pinned))


# --- events ----------------------------------------------------------------------------------------
@lru_cache(maxsize=1024)
def _second_prefix(epoch_second: int) -> str:
    """'YYYY-MM-DDTHH:MM:SS' of an epoch second: events are time-ordered, so consecutive ones share it."""
    return format_event_time(EPOCH + timedelta(seconds=epoch_second))[:19]


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


def generate_records(config: GeneratorConfig) -> Iterator[Record]:
    """Encoded events with config.malformed broken records mixed in at random event times."""
    return records_with_malformed(
        _timed_events(config), config.seed, config.start_ms, config.end_ms, config.malformed
    )
