package io.usagewatch.udf;

import java.time.LocalDateTime;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * The time one raw record may move the watermark to: its event time if the job accepts the record (the
 * contract and the event-time bounds, {@link ParseAccessEvent#verdict}), never later than its arrival;
 * null for a record the job dead-letters, which must not move the watermark at all.
 *
 * <p>The source declares its watermark on this value, so it runs before the parse in the plan; the
 * verdict it computes is the one the parse then reuses.
 */
public class WatermarkTime extends ScalarFunction {

    public @DataTypeHint("TIMESTAMP(3)") LocalDateTime eval(
            byte[] raw,
            @DataTypeHint("TIMESTAMP(3)") LocalDateTime arrival,
            Integer maxFutureSkewS,
            Integer maxAgeS) {
        Object eventTime = ParseAccessEvent.verdict(raw, arrival, maxFutureSkewS, maxAgeS).getField(3);
        if (eventTime == null) {
            return null;
        }
        // A valid event dated a little ahead must not close the windows of the events arriving with it.
        LocalDateTime accepted = (LocalDateTime) eventTime;
        return arrival != null && accepted.isAfter(arrival) ? arrival : accepted;
    }
}
