-- risk_severity(risk): the severity a signal of this risk (0-100) is shown with, one banding for every
-- detection so that severity and risk never disagree: below 20 is ordinary noise kept as context (info),
-- 60-80 is strong evidence of one kind, 80 and above is conclusive on its own.
create or replace macro risk_severity(risk) as
    case
        when risk < 20 then 'info'
        when risk < 40 then 'low'
        when risk < 60 then 'medium'
        when risk < 80 then 'high'
        else 'critical'
    end
