select count(*) as requests, coalesce(sum(output_tokens), 0) as output_tokens
from period_events
where list_contains($accounts, account_id)
