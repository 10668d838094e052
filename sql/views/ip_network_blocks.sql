-- ip_network_blocks: every source address of the lake with its network block, the unit proxy pools rotate
-- through: the IPv4 /24 ('203.0.113.0/24') or IPv6 /48 ('2001:db8:1::/48', leading zeros dropped so one
-- block has one spelling). Computed once per distinct address, not per event: a lake of 4M events has
-- ~30K addresses, and the string work below is most of what grouping by block costs.
create or replace view ip_network_blocks as
with addresses as (
    -- events_enriched has exactly the events' addresses; during a detection run it is the shared scan's
    -- table (pipelines/detect/detections.py: shared_scan), so the lake's files are read once, not twice
    -- (on a sink's small files each pass costs ~1.5 CPU-s at 4M events)
    select distinct source_ip
    from events_enriched
),

ipv6_parts as (
    -- IPv6 text may compress zeros with "::"; split around it so the /48 can be rebuilt in SQL.
    select
        source_ip,
        source_ip like '%:%' as is_ipv6,
        list_filter(string_split(lower(split_part(source_ip, '::', 1)), ':'), lambda hextet: hextet <> '')
            as head_hextets,
        case
            when source_ip like '%::%'
                then list_filter(
                    string_split(lower(split_part(source_ip, '::', 2)), ':'), lambda hextet: hextet <> ''
                )
            else []
        end as tail_hextets
    from addresses
)

select
    source_ip,
    case
        -- IPv4 /24: the first three octets
        when not is_ipv6 then regexp_extract(source_ip, '^(\d+\.\d+\.\d+)\.', 1) || '.0/24'
        -- IPv6 /48: first three hextets of the expanded address (head, zeros for "::", tail)
        else array_to_string(
            list_transform(
                list_concat(
                    head_hextets,
                    list_transform(range(8 - len(head_hextets) - len(tail_hextets)), lambda zero: '0'),
                    tail_hextets
                )[1:3],
                lambda hextet: coalesce(nullif(ltrim(hextet, '0'), ''), '0')
            ),
            ':'
        ) || '::/48'
    end as network_block
from ipv6_parts
