-- State database: signals whose window starts in the period, with their lifecycle.
select detection_id, severity, status, suppressed_by
from signals
where window_start >= $start and window_start < $end
