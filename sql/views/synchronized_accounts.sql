-- synchronized_accounts(...): accounts whose per-minute activity moves together, as a table macro so
-- the synchronized_traffic and ring_clustering detections share one definition with their own parameters.
-- Pairwise comparison of thousands of accounts is quadratic, so candidates are bucketed first with
-- MinHash locality-sensitive hashing over each account's set of active minutes (accounts with (nearly)
-- the same active minutes share a band signature with high probability, unrelated ones rarely), and
-- only members of one bucket are compared - against the bucket's consensus minutes, not pairwise.
-- Result: one row per (window, account) in its largest verified group; group_key identifies the group.
create or replace macro synchronized_accounts(
    window_hours, max_active_share, min_active_minutes, min_jaccard, min_accounts
) as table
with active_minutes as (
    select
        account_id,
        window_start as minute,
        time_bucket(to_hours(window_hours), window_start) as sync_window
    from account_minute
    where requests > 0
),

observed_minutes as (
    -- the lake's own clock: minutes in which anybody was active (a young lake has few)
    select sync_window, count(distinct minute) as observed_minutes
    from active_minutes
    group by sync_window
),

account_activity as (
    -- per account and window: its active minutes and their MinHash signature, in one pass.
    -- 12 hash functions (seeds) -> 4 bands of 3: two accounts with Jaccard 0.9 share some band with
    -- probability 1 - (1 - 0.9^3)^4 > 0.99; with Jaccard 0.2 only 1 - (1 - 0.2^3)^4 ~ 0.03.
    -- Twelve min() aggregates rather than every minute crossed with twelve seeds and that product
    -- grouped: a seventh of the CPU.
    select
        account_id,
        sync_window,
        count(*) as active_minute_count,
        min(hash(0, minute)) as minhash_0,
        min(hash(1, minute)) as minhash_1,
        min(hash(2, minute)) as minhash_2,
        min(hash(3, minute)) as minhash_3,
        min(hash(4, minute)) as minhash_4,
        min(hash(5, minute)) as minhash_5,
        min(hash(6, minute)) as minhash_6,
        min(hash(7, minute)) as minhash_7,
        min(hash(8, minute)) as minhash_8,
        min(hash(9, minute)) as minhash_9,
        min(hash(10, minute)) as minhash_10,
        min(hash(11, minute)) as minhash_11
    from active_minutes
    group by account_id, sync_window
),

candidates as (
    -- An account active (nearly) every minute carries no timing signal: any two such accounts look
    -- "synchronized" (the flat 24/7 batch customer). Those are the extraction-profile rule's business.
    select account_activity.*
    from account_activity
    inner join observed_minutes using (sync_window)
    where account_activity.active_minute_count >= min_active_minutes
        and account_activity.active_minute_count <= max_active_share * observed_minutes.observed_minutes
),

band_signatures as (
    select candidates.account_id, candidates.sync_window, bands.band, bands.signature
    from candidates
    cross join lateral (
        values
            (0, hash([candidates.minhash_0, candidates.minhash_1, candidates.minhash_2])),
            (1, hash([candidates.minhash_3, candidates.minhash_4, candidates.minhash_5])),
            (2, hash([candidates.minhash_6, candidates.minhash_7, candidates.minhash_8])),
            (3, hash([candidates.minhash_9, candidates.minhash_10, candidates.minhash_11]))
    ) as bands(band, signature)
),

buckets as (
    select *
    from (
        select sync_window, band, signature, count(*) as bucket_accounts
        from band_signatures
        group by sync_window, band, signature
    ) as bucket_sizes
    where bucket_accounts >= min_accounts
),

bucket_members as (
    select band_signatures.*, buckets.bucket_accounts
    from band_signatures
    inner join buckets using (sync_window, band, signature)
),

consensus_minutes as (
    -- the bucket's shared rhythm: minutes in which at least half of its members were active
    select members.sync_window, members.band, members.signature, activity.minute
    from bucket_members as members
    inner join active_minutes as activity using (account_id, sync_window)
    group by members.sync_window, members.band, members.signature, activity.minute
    having count(*) >= 0.5 * any_value(members.bucket_accounts)
),

consensus_sizes as (
    select sync_window, band, signature, count(*) as consensus_minute_count
    from consensus_minutes
    group by sync_window, band, signature
),

member_overlap as (
    select
        members.sync_window,
        members.band,
        members.signature,
        members.account_id,
        count(*) as active_minute_count,
        count(consensus.minute) as shared_minute_count
    from bucket_members as members
    inner join active_minutes as activity using (account_id, sync_window)
    left join consensus_minutes as consensus
        on consensus.sync_window = members.sync_window
        and consensus.band = members.band
        and consensus.signature = members.signature
        and consensus.minute = activity.minute
    group by members.sync_window, members.band, members.signature, members.account_id
),

verified_members as (
    -- Jaccard similarity of the member's active minutes with the consensus minutes
    select
        overlap.*,
        sizes.consensus_minute_count,
        overlap.shared_minute_count
        / (overlap.active_minute_count + sizes.consensus_minute_count - overlap.shared_minute_count)
            as jaccard
    from member_overlap as overlap
    inner join consensus_sizes as sizes using (sync_window, band, signature)
    where overlap.shared_minute_count
        >= min_jaccard
        * (overlap.active_minute_count + sizes.consensus_minute_count - overlap.shared_minute_count)
),

verified_groups as (
    select *
    from (
        select
            sync_window,
            band,
            signature,
            count(*) as verified_accounts,
            -- the smallest member names the group: stable across re-runs and across bands
            min(account_id) as group_key
        from verified_members
        group by sync_window, band, signature
    ) as group_sizes
    where verified_accounts >= min_accounts
),

best_group as (
    -- the same ring shows up in several bands; each account joins its largest group only
    select
        members.*,
        groups.verified_accounts,
        groups.group_key,
        row_number() over (
            partition by members.account_id, members.sync_window
            order by groups.verified_accounts desc, groups.group_key
        ) as preference
    from verified_members as members
    inner join verified_groups as groups using (sync_window, band, signature)
)

select
    sync_window as window_start,
    sync_window + to_hours(window_hours) as window_end,
    group_key,
    account_id,
    jaccard,
    active_minute_count,
    consensus_minute_count
from best_group
where preference = 1
