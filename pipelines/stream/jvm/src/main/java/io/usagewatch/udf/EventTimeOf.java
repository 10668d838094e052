package io.usagewatch.udf;

import java.io.IOException;
import java.time.DateTimeException;
import java.time.LocalDateTime;
import java.util.regex.Pattern;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * The event time of a raw access event, read with a streaming scan that stops at the top-level
 * {@code event_time} field; null when the record has none or it is not RFC 3339 UTC with
 * milliseconds. Reads the raw bytes as UTF-8 (bytes that are not stop the scan: no event time).
 *
 * <p>The source table declares its watermark on this value, so it runs before the full parse
 * ({@link ParseAccessEvent}) and must stay cheap.
 */
public class EventTimeOf extends ScalarFunction {

    private static final JsonFactory FACTORY = new JsonFactory();
    private static final Pattern RFC3339_UTC_MILLIS =
            Pattern.compile("\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z");

    public @DataTypeHint("TIMESTAMP(3)") LocalDateTime eval(byte[] raw) {
        if (raw == null) {
            return null;
        }
        try (JsonParser parser = FACTORY.createParser(raw)) {
            if (parser.nextToken() != JsonToken.START_OBJECT) {
                return null;
            }
            JsonToken token;
            while ((token = parser.nextToken()) == JsonToken.FIELD_NAME) {
                boolean isEventTime = "event_time".equals(parser.currentName());
                JsonToken value = parser.nextToken();
                if (isEventTime) {
                    return value == JsonToken.VALUE_STRING ? parse(parser.getText()) : null;
                }
                parser.skipChildren();
            }
            return null;
        } catch (IOException e) {
            return null;
        }
    }

    /** Parses 2026-01-31T12:00:00.000Z as a UTC wall-clock timestamp; null if it is not one. */
    static LocalDateTime parse(String text) {
        if (!RFC3339_UTC_MILLIS.matcher(text).matches()) {
            return null;
        }
        try {
            return LocalDateTime.parse(text.substring(0, text.length() - 1));
        } catch (DateTimeException e) {
            return null;
        }
    }
}
