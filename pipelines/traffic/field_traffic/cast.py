"""Accounts of the field profile and when they send requests.

An `Actor` is a classic generator `Account` (identity, itinerary of networks, request style, prompt
templates) plus its request times, computed up front, its rate-limit tier and, for campaign accounts,
a cover persona: the benign-looking requests a harvesting account mixes in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import accumulate

from pipelines.traffic.field_traffic.config import FieldConfig
from pipelines.traffic.field_traffic.world import FIELD_PLACES, World
from pipelines.traffic.generator import RATE_LIMIT_PER_MINUTE
from pipelines.traffic.population import Account, Network, RequestStyle, Segment, daytime_activity

Activity = Callable[[int], float]  # event time (ms) -> share of the peak rate at that moment
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
# Model mix weights over population.MODELS (large, medium, small).
LARGE_MODEL_FIRST = tuple(accumulate((8, 2, 0)))


@dataclass
class Actor:
    account: Account
    times: list[int]
    rate_limit_per_minute: int = RATE_LIMIT_PER_MINUTE
    cover: Account | None = None
    cover_share: float = 0.0
    # Ad-hoc prompts (outside the account's templates) whose fingerprint the edge did not compute.
    unfingerprinted_adhoc_share: float = 0.3


def office_hours(utc_offset_h: float) -> Activity:
    """Busy 09-18 local time on a workday, quiet otherwise."""

    def activity(t_ms: int) -> float:
        local_hour = (t_ms / HOUR_MS + utc_offset_h) % 24
        return 1.0 if 9 <= local_hour < 18 else 0.35 if 8 <= local_hour < 20 else 0.03

    return activity


def diurnal(utc_offset_h: float) -> Activity:
    return lambda t_ms: daytime_activity(t_ms, utc_offset_h)


def windows(spans: list[tuple[int, int]], outside: float = 0.0) -> Activity:
    """Full rate inside the spans, `outside` elsewhere."""
    return lambda t_ms: 1.0 if any(lo <= t_ms < hi for lo, hi in spans) else outside


class Cast:
    """Draws the accounts of one part of the population from that part's own random stream.

    Streams are per benign class and per campaign instance, so sweeping one campaign's parameters leaves
    every other account as it was.
    """

    def __init__(self, seed: str, config: FieldConfig):
        self.rng = random.Random(f"{config.seed}:{seed}")
        self.world = World(self.rng, config.geo_noise)
        self.build = self.world.build
        self.start_ms, self.end_ms = config.start_ms, config.end_ms

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms

    def uniform(self, bounds: tuple[float, float]) -> float:
        return self.rng.uniform(*bounds)

    def randint(self, bounds: tuple[float, float]) -> int:
        return self.rng.randint(int(bounds[0]), int(bounds[1]))

    def volume(self) -> float:
        """How much busier or quieter one account is than its kind's typical rate."""
        return min(3.0, max(0.3, self.rng.lognormvariate(0, 0.5)))

    def org(self, share: float = 0.5) -> str | None:
        return self.build.hex_id("org_", 40) if self.rng.random() < share else None

    def card(self) -> str:
        return self.build.hex_id("pay_", 64)

    # --- request times -----------------------------------------------------------------------------
    def poisson(
        self, per_hour: float, activity: Activity | None = None, span: tuple[int, int] | None = None
    ) -> list[int]:
        """A Poisson process at per_hour, thinned by activity(t) (None: flat around the clock)."""
        rng = self.rng
        lo, hi = span or (self.start_ms, self.end_ms)
        mean_gap_ms = HOUR_MS / per_hour
        times, t = [], lo + rng.expovariate(1) * mean_gap_ms
        while t < hi:
            if activity is None or rng.random() < activity(int(t)):
                times.append(int(t))
            t += rng.expovariate(1) * mean_gap_ms
        return times

    def bursts(
        self,
        per_hour: float,
        minutes: tuple[float, float],
        per_minute: tuple[float, float],
        activity: Activity | None = None,
    ) -> list[int]:
        """Sessions starting as a Poisson process, each a burst of requests at per_minute."""
        times = []
        for begin in self.poisson(per_hour, activity):
            length_ms = int(self.uniform(minutes) * MINUTE_MS)
            times += self.poisson(
                self.uniform(per_minute) * 60, span=(begin, min(begin + length_ms, self.end_ms))
            )
        return sorted(times)

    def tz(self, place: str) -> float:
        return FIELD_PLACES[place][3]

    # --- itineraries -------------------------------------------------------------------------------
    def alternating(
        self,
        options: list[tuple[Network, ...]],
        dwell_minutes: tuple[float, float],
        weights: list[float] | None = None,
    ) -> list[Segment]:
        """Segments switching between network sets every few minutes (Wi-Fi/cellular, VPN on/off)."""
        rng, segments, t = self.rng, [], self.start_ms
        current = None
        while t < self.end_ms:
            choices = [i for i in range(len(options)) if i != current] or [0]
            current = rng.choices(choices, weights=[weights[i] for i in choices] if weights else None)[0]
            segments.append(uniform_segment(t, options[current]))
            t += int(self.uniform(dwell_minutes) * MINUTE_MS)
        return segments

    # --- accounts ----------------------------------------------------------------------------------
    def account(
        self,
        group: str,
        itinerary: list[Segment],
        *,
        scenario: str | None = None,
        org_id: str | None = None,
        payment: str | None = "own",
        style: RequestStyle | None = None,
        prompts: tuple[tuple[str, ...], tuple[float, ...]] | None = None,
        user_agent: str | None = None,
    ) -> Account:
        """An account; payment "own" draws its own card, None leaves the payment method unknown."""
        account = self.build.account(
            group,
            itinerary,
            start_ms=self.start_ms,
            peak_per_minute=1.0,  # unused: field actors carry their own request times
            utc_offset_h=None,
            scenario=scenario,
            org_id=org_id,
            payment_fingerprint=None if payment in ("own", None) else payment,
            style=style,
            prompts=prompts,
            user_agent=user_agent,
        )
        if payment is None:
            account.payment_fingerprint = None
        return account

    def templates(self, count: int, skew: float = 1.0) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """count template fingerprints with Zipf(skew) reuse (skew 0: used evenly)."""
        fingerprints = tuple(self.build.fingerprint() for _ in range(max(1, count)))
        return fingerprints, tuple(accumulate(1 / (k**skew) for k in range(1, len(fingerprints) + 1)))

    def harvest_style(self, reasoning_share: float, output_ratio: float) -> RequestStyle:
        """Harvesting: short-to-medium prompts, long outputs, reasoning asked for on a share of them."""
        input_median = self.rng.uniform(250, 900)
        return RequestStyle(
            input_median=input_median,
            output_median=min(7000.0, input_median * output_ratio),
            token_sigma=0.35,
            error_rate=0.02,
            embedding_share=0.0,
            fresh_prompt_share=0.04,
            tag_probabilities=(("reasoning_elicitation", reasoning_share), ("tool_use", 0.01)),
            model_cum_weights=LARGE_MODEL_FIRST,
        )

    def with_cover(self, actor: Actor, share: float) -> Actor:
        """Mix ordinary requests (a personal style and ad-hoc templates) into a harvesting account."""
        fingerprints, cum_weights = self.build.personal_prompts()
        actor.cover = replace(
            actor.account,
            style=self.build.personal_style(),
            prompt_fingerprints=fingerprints,
            prompt_cum_weights=cum_weights,
        )
        actor.cover_share = share
        return actor


def uniform_segment(start_ms: int, networks: tuple[Network, ...]) -> Segment:
    """Every network equally likely per request (load balancers, NAT pools, rotating proxies)."""
    return Segment(start_ms, networks, tuple(range(1, len(networks) + 1)))


def weighted_segment(start_ms: int, networks: tuple[Network, ...], weights: list[float]) -> Segment:
    return Segment(start_ms, networks, tuple(accumulate(weights)))


def pick(rng: random.Random, items: tuple, share: float) -> tuple:
    """A random subset holding about `share` of items, never empty."""
    chosen = tuple(item for item in items if rng.random() < share)
    return chosen or (rng.choice(items),)


def ceil_div(a: int, b: int) -> int:
    return max(1, math.ceil(a / max(1, b)))


def group_sizes(count: int, group_size: int) -> list[int]:
    """`count` people in as few groups of about `group_size` as fit (at least one), sizes differing by one."""
    groups = ceil_div(count, group_size)
    return [count // groups + (group < count % groups) for group in range(groups)]
