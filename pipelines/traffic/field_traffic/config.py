"""Every knob of the field profile, with defaults sized for ~1,000 benign accounts over six hours.

Ranges are (low, high): each account or campaign instance draws its value inside, so instances differ;
a parameter sweep pins one by setting low == high (`FieldConfig.with_campaign`, `with_benign`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from pipelines.traffic.field_traffic.world import GeoNoise
from pipelines.traffic.generator import EventTimeSpan, this_minute

Range = tuple[float, float]


@dataclass(frozen=True)
class BenignClass:
    """One kind of ordinary customer. The three shape knobs, per class (- = unused):

    - multi_ip_individual: ips_per_user = home line, office, phone, a renewed address;
      geo_spread_km = GeoIP distance between one person's spots.
    - mobile_cgnat: ips_per_user = gateway IPs per carrier; geo_spread_km = gateway to user distance;
      nat_population = accounts per carrier.
    - corporate_egress: ips_per_user = egress cities per company; geo_spread_km = distance between
      egresses; nat_population = employees per company.
    - campus_nat: ips_per_user = addresses in the campus /24 NAT pool; nat_population = accounts per campus.
    - consumer_vpn: ips_per_user = exits per VPN provider.
    - cloud_ci: ips_per_user = runner IPs per cloud region pool; nat_population = customers per pool.
    - research_team, startup_shared_card: nat_population = accounts per team.
    - bursty_user: requests_per_hour = bursts (a minute or a few over the rate limit) per hour.
    """

    weight: float  # share of the benign population
    requests_per_hour: Range  # at the account's busiest time of day
    ips_per_user: Range = (1, 1)
    geo_spread_km: float = 0.0
    nat_population: int = 0


@dataclass(frozen=True)
class CampaignKind:
    instances: int  # campaigns of this kind per seed
    accounts: Range  # accounts per instance
    requests_per_hour: Range  # per account, before each account's own volume factor
    templates: Range  # prompt templates the instance's harvesting script cycles through
    reasoning_share: Range  # requests tagged reasoning_elicitation
    output_ratio: Range  # output tokens / input tokens of harvesting requests
    proxy_pool: Range = (1, 1)  # exit addresses the instance's accounts share
    group_size: Range = (1, 1)  # accounts per independent cell (split rings)
    cover_share: float = 0.15  # benign-looking requests mixed into the harvesting


BENIGN_CLASSES = {
    "multi_ip_individual": BenignClass(0.27, (4, 14), ips_per_user=(2, 4), geo_spread_km=450),
    "mobile_cgnat": BenignClass(0.18, (3, 10), ips_per_user=(3, 8), geo_spread_km=600, nat_population=90),
    "corporate_egress": BenignClass(0.12, (3, 10), ips_per_user=(2, 4), geo_spread_km=500, nat_population=40),
    "campus_nat": BenignClass(0.08, (3, 10), ips_per_user=(6, 20), nat_population=40),
    "cross_border_commuter": BenignClass(0.03, (4, 10)),
    "traveller": BenignClass(0.03, (4, 10)),
    "consumer_vpn": BenignClass(0.06, (4, 12), ips_per_user=(20, 40), nat_population=30),
    "cloud_ci": BenignClass(0.06, (20, 60), ips_per_user=(30, 60), nat_population=30),
    "research_team": BenignClass(0.04, (15, 40), nat_population=8),
    "batch_customer": BenignClass(0.007, (120, 360)),
    "public_template_user": BenignClass(0.05, (4, 12)),
    "startup_shared_card": BenignClass(0.012, (5, 15), nat_population=12),
    "bursty_user": BenignClass(0.03, (0.3, 0.7)),  # bursts per hour, each over the rate limit
    "proxy_service_customer": BenignClass(0.03, (4, 12)),
}

CAMPAIGN_KINDS = {
    "hydra_proxy_ring": CampaignKind(2, (25, 50), (20, 50), (3, 8), (0.5, 0.85), (4, 10), proxy_pool=(3, 8)),
    "residential_proxy_ring": CampaignKind(
        2, (10, 25), (15, 40), (2, 6), (0.4, 0.8), (4, 10), proxy_pool=(800, 3000)
    ),
    "split_ring": CampaignKind(1, (15, 30), (15, 40), (3, 8), (0.4, 0.8), (4, 10), group_size=(3, 6)),
    "low_and_slow": CampaignKind(2, (6, 15), (2, 8), (2, 5), (0.5, 0.85), (5, 12)),
    "many_template_extractor": CampaignKind(1, (3, 8), (20, 50), (40, 150), (0.15, 0.35), (3, 8)),
    "lone_extractor": CampaignKind(2, (1, 1), (90, 240), (8, 30), (0.2, 0.5), (5, 12), proxy_pool=(1, 2)),
    "sync_ring": CampaignKind(1, (8, 20), (30, 90), (2, 6), (0.3, 0.7), (3, 8)),
    "rate_limit_riders": CampaignKind(1, (5, 12), (960, 1140), (2, 5), (0.3, 0.7), (3, 8)),
    "restricted_region": CampaignKind(2, (1, 3), (6, 20), (3, 10), (0.0, 0.3), (0.3, 2), proxy_pool=(2, 6)),
    "key_sharing": CampaignKind(2, (1, 1), (10, 30), (3, 10), (0.0, 0.3), (0.5, 3), proxy_pool=(2, 3)),
}

# The standard tier's per-account limit; enterprise tiers (batch, CI) get ENTERPRISE_RATE_LIMIT.
ENTERPRISE_RATE_LIMIT_PER_MINUTE = 600


@dataclass(frozen=True)
class FieldConfig(EventTimeSpan):
    seed: int = 1
    start: datetime = field(default_factory=this_minute)
    duration: timedelta = timedelta(hours=6)
    benign_accounts: int = 1000
    max_disorder_s: float = 4.0
    malformed: int = 0
    benign: dict[str, BenignClass] = field(default_factory=lambda: dict(BENIGN_CLASSES))
    campaigns: dict[str, CampaignKind] = field(default_factory=lambda: dict(CAMPAIGN_KINDS))
    geo_noise: GeoNoise = GeoNoise()

    def __post_init__(self) -> None:
        if self.duration <= timedelta(0):
            raise ValueError("duration must be positive")
        if self.benign_accounts < len(self.benign):
            raise ValueError(f"benign_accounts must be >= {len(self.benign)} (one per benign class)")
        if not 0 <= self.max_disorder_s < 5 or self.malformed < 0:
            raise ValueError("max_disorder_s must be in [0, 5) and malformed >= 0")
        for name, kind in self.campaigns.items():
            if kind.instances < 0 or min(kind.accounts) < 1 or min(kind.requests_per_hour) <= 0:
                raise ValueError(f"campaign {name}: instances >= 0, accounts >= 1, requests_per_hour > 0")
        for name, benign in self.benign.items():
            if benign.weight < 0 or min(benign.requests_per_hour) <= 0:
                raise ValueError(f"benign class {name}: weight >= 0 and requests_per_hour > 0")
        self._start_in_utc()

    def with_campaign(self, kind: str, **changes) -> FieldConfig:
        """A copy with one campaign kind's parameters changed, e.g. with_campaign("lone_extractor",
        templates=(60, 60))."""
        return replace(self, campaigns={**self.campaigns, kind: replace(self.campaigns[kind], **changes)})

    def with_benign(self, name: str, **changes) -> FieldConfig:
        return replace(self, benign={**self.benign, name: replace(self.benign[name], **changes)})

    def only(self, *kinds: str) -> FieldConfig:
        """A copy with only these campaign kinds (the others get zero instances)."""
        unknown = set(kinds) - set(self.campaigns)
        if unknown:
            raise ValueError(
                f"unknown campaign kinds {sorted(unknown)}; choose from {', '.join(self.campaigns)}"
            )
        return replace(
            self,
            campaigns={
                name: kind if name in kinds else replace(kind, instances=0)
                for name, kind in self.campaigns.items()
            },
        )
