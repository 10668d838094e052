-- State database: incidents active in the period (event time). Merged incidents are left out: they are
-- counted once, in the incident they were merged into.
select incident_id, ack_by, ack_at, resolved_by, resolved_at, incident
from incidents
where merged_into is null and first_seen < $end and last_seen >= $start
