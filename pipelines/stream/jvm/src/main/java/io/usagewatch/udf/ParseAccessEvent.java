package io.usagewatch.udf;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonProcessingException;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.StreamReadConstraints;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.DeserializationFeature;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;

/**
 * Parses one raw access event (the bytes of a Kafka message value or a JSONL line) against
 * schemas/access_event.schema.json and emits exactly one row: the typed fields with a null
 * {@code error}, or null fields with {@code error} naming the first rule the record breaks.
 *
 * <p>The bytes must be UTF-8. A record that is not is rejected, never repaired: its {@code raw} is then
 * the record base64-encoded, so the dead letter still holds every byte.
 *
 * <p>One parse per record feeds every output (archive, windows, dead letters); the SQL
 * {@code json} format cannot do this because it either fails the job or, with
 * {@code json.ignore-parse-errors}, drops bad records silently.
 */
public class ParseAccessEvent extends ScalarFunction {

    // The Kafka coordinates pass through so that every output reads this one result and nothing else
    // of the source row: the planner then shares a single call between all sinks.
    private static final String ROW_TYPE =
            "ROW<error STRING, `raw` STRING, event_id STRING, event_time TIMESTAMP(3),"
                    + " account_id STRING, api_key_id STRING, org_id STRING, source_ip STRING,"
                    + " country STRING, latitude DOUBLE, longitude DOUBLE, asn BIGINT,"
                    + " asn_type STRING, model STRING, endpoint STRING, input_tokens BIGINT,"
                    + " output_tokens BIGINT, status_code INT, latency_ms BIGINT,"
                    + " prompt_fingerprint STRING, payment_fingerprint STRING, user_agent STRING,"
                    + " request_tags ARRAY<STRING>, extras STRING, kafka_partition INT,"
                    + " kafka_offset BIGINT>";

    private static final int ROW_ARITY = 26;

    /**
     * Longest record accepted, in characters. Kafka's default message limit is about 1 MB, and the bound
     * also caps every string inside the record, so the parser never buffers more than this.
     */
    static final int MAX_RECORD_CHARS = 1_000_000;

    // The schema's bounds (maxLength, maxItems, maximum); tests/test_hostile_input.py runs this parser and
    // the Python contract on each bound and one past it.
    private static final int MAX_IDENTIFIER_CHARS = 128;
    private static final int EVENT_TIME_CHARS = 24; // 2026-01-31T12:00:00.000Z
    private static final int MAX_ENDPOINT_CHARS = 256;
    private static final int MAX_USER_AGENT_CHARS = 1024;
    private static final int MAX_IP_CHARS = 45; // the longest IPv6 text: 6 groups and a dotted quad
    private static final int MAX_TAGS = 32;
    private static final int MAX_TAG_CHARS = 64;
    /** Tokens of one request: beyond any context window, and no one-minute sum can overflow a long. */
    private static final long MAX_TOKENS = 10_000_000L;
    private static final long MAX_ASN = 0xFFFF_FFFFL; // 32-bit AS numbers (RFC 6793)
    private static final long NO_MAXIMUM = Long.MAX_VALUE;

    private static final DateTimeFormatter RFC3339_MILLIS =
            DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'");

    private static final Set<String> ASN_TYPES =
            Set.of("residential", "business", "hosting", "vpn", "tor", "mobile", "unknown");
    private static final Pattern COUNTRY = Pattern.compile("[A-Z]{2}");
    private static final Pattern HEX = Pattern.compile("[0-9a-f]+");
    private static final Pattern IPV4 =
            Pattern.compile("(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(\\.(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)){3}");
    private static final Pattern IPV6_CHARS = Pattern.compile("[0-9A-Fa-f:.]+");
    private static final Set<String> KNOWN_FIELDS =
            Set.of(
                    "event_id", "event_time", "account_id", "api_key_id", "org_id", "source_ip",
                    "country", "latitude", "longitude", "asn", "asn_type", "model", "endpoint",
                    "input_tokens", "output_tokens", "status_code", "latency_ms",
                    "prompt_fingerprint", "payment_fingerprint", "user_agent", "request_tags");

    // Duplicate keys are ambiguous (which value did the producer mean?), so they are rejected.
    private static final ObjectMapper MAPPER = new ObjectMapper();

    static {
        MAPPER.enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);
        // A record is exactly one JSON document: `{...} trailing` is truncation or concatenation.
        MAPPER.enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
        // Bound hostile input: deep nesting is rejected, not parsed. Names and strings are bounded by the
        // record size; a number literal over 1000 characters (quadratic to convert) is rejected.
        MAPPER.getFactory()
                .setStreamReadConstraints(
                        StreamReadConstraints.builder()
                                .maxNestingDepth(32)
                                .maxNameLength(MAX_RECORD_CHARS)
                                .maxStringLength(MAX_RECORD_CHARS)
                                .maxNumberLength(1000)
                                .build());
    }

    /** A record that breaks the contract; the message is the dead-letter reason. */
    static final class InvalidEvent extends Exception {
        InvalidEvent(String message) {
            super(message, null, false, false);
        }
    }

    /**
     * @param arrival when the record reached the system (Kafka's log-append time, a file's modification
     *     time): its event time may be at most {@code maxFutureSkewS} seconds later and {@code maxAgeS}
     *     seconds earlier than this.
     */
    public @DataTypeHint(ROW_TYPE) Row eval(
            byte[] raw,
            Integer kafkaPartition,
            Long kafkaOffset,
            @DataTypeHint("TIMESTAMP(3)") LocalDateTime arrival,
            Integer maxFutureSkewS,
            Integer maxAgeS) {
        Row row = Row.copy(verdict(raw, arrival, maxFutureSkewS, maxAgeS));
        row.setField(ROW_ARITY - 2, kafkaPartition);
        row.setField(ROW_ARITY - 1, kafkaOffset);
        return row;
    }

    /**
     * The verdict on one raw record, without Kafka coordinates: field 0 is null for a valid event, else
     * the dead-letter reason. Shared with {@link ParseCli} so tests exercise exactly this code.
     */
    static Row parse(byte[] raw) {
        if (raw == null) {
            return rejected("invalid JSON: empty record", null);
        }
        String text;
        try {
            text = utf8(raw);
        } catch (InvalidEvent e) {
            return rejected(e.getMessage(), Base64.getEncoder().encodeToString(raw));
        }
        Row row = new Row(ROW_ARITY);
        try {
            fill(row, text);
        } catch (InvalidEvent e) {
            return rejected(e.getMessage(), text);
        }
        return row;
    }

    /** The last record parsed on this thread (a copy of its bytes) and the parser's verdict on it. */
    private record Parsed(byte[] raw, Row verdict) {}

    private static final ThreadLocal<Parsed> LAST_PARSED =
            ThreadLocal.withInitial(() -> new Parsed(new byte[0], null));

    /**
     * The job's verdict on one record: the contract ({@link #parse}), then the event-time bounds against
     * the record's arrival. Do not modify the row: it is shared.
     *
     * <p>Both the watermark ({@link WatermarkTime}) and the parse call this for every record, on the
     * same thread one right after the other (the source and the parse are chained), so the contract
     * parse is remembered for the last record and the second call finds it: each record is parsed once.
     * Should the calls ever run on different threads, the record is parsed twice, with the same verdict.
     */
    static Row verdict(byte[] raw, LocalDateTime arrival, long maxFutureSkewS, long maxAgeS) {
        Parsed last = LAST_PARSED.get();
        Row verdict;
        if (raw != null && Arrays.equals(last.raw(), raw)) {
            verdict = last.verdict();
        } else {
            verdict = parse(raw);
            // A copy: the caller owns the array and may reuse it for the next record.
            LAST_PARSED.set(new Parsed(raw == null ? new byte[0] : raw.clone(), verdict));
        }
        if (verdict.getField(0) != null || arrival == null) {
            return verdict;
        }
        String outOfBounds =
                eventTimeOutOfBounds((LocalDateTime) verdict.getField(3), arrival, maxFutureSkewS, maxAgeS);
        // The bytes are valid UTF-8 here: the contract accepted them.
        return outOfBounds == null ? verdict : rejected(outOfBounds, new String(raw, StandardCharsets.UTF_8));
    }

    /**
     * The dead-letter reason of a valid event whose time is implausible for when it arrived, else null.
     * The contract alone accepts any year from 0000 to 9999; windows and partitions need times near the
     * present, and the job's watermark must never follow a far-future one.
     */
    private static String eventTimeOutOfBounds(
            LocalDateTime eventTime, LocalDateTime arrival, long maxFutureSkewS, long maxAgeS) {
        String arrived = " the record arrived (" + RFC3339_MILLIS.format(arrival) + ")";
        if (eventTime.isAfter(arrival.plusSeconds(maxFutureSkewS))) {
            return "event_time out of bounds: more than " + maxFutureSkewS + " s after" + arrived;
        }
        if (eventTime.isBefore(arrival.minusSeconds(maxAgeS))) {
            return "event_time out of bounds: more than " + maxAgeS + " s before" + arrived;
        }
        return null;
    }

    /** A rejected record keeps nothing half-parsed: only the reason and the record itself. */
    private static Row rejected(String reason, String raw) {
        Row row = new Row(ROW_ARITY);
        row.setField(0, reason);
        row.setField(1, raw);
        return row;
    }

    /** The record as text, or the offset of its first byte that is not UTF-8. */
    static String utf8(byte[] raw) throws InvalidEvent {
        // The lenient decoder (the JDK's fast path) writes U+FFFD for each malformed sequence, so text
        // without one is valid; only text with one, rare in real traffic, is decoded again strictly.
        String text = new String(raw, StandardCharsets.UTF_8);
        if (text.indexOf('\uFFFD') < 0) {
            return text;
        }
        CharsetDecoder strict =
                StandardCharsets.UTF_8
                        .newDecoder()
                        .onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT);
        ByteBuffer in = ByteBuffer.wrap(raw);
        CoderResult result = strict.decode(in, CharBuffer.allocate(raw.length), true);
        if (result.isError()) {
            // On an error the input position is where the malformed sequence starts.
            throw new InvalidEvent(
                    "invalid UTF-8 at byte " + in.position() + ": raw holds the record base64-encoded");
        }
        return text; // valid UTF-8 that contains a genuine U+FFFD
    }

    /**
     * Declared non-deterministic so that the planner never copies the call into each field access
     * or each sink branch: the record is parsed once and the result shared.
     */
    @Override
    public boolean isDeterministic() {
        return false;
    }

    private static void fill(Row row, String raw) throws InvalidEvent {
        if (raw.length() > MAX_RECORD_CHARS) {
            throw new InvalidEvent("record too large: over " + MAX_RECORD_CHARS + " characters");
        }
        JsonNode root;
        try {
            root = MAPPER.readTree(raw);
        } catch (JsonProcessingException e) {
            throw new InvalidEvent("invalid JSON: " + e.getOriginalMessage());
        }
        if (root == null || root.isMissingNode()) {
            throw new InvalidEvent("invalid JSON: empty record");
        }
        if (!root.isObject()) {
            throw new InvalidEvent("invalid JSON: not an object");
        }
        ObjectNode event = (ObjectNode) root;
        row.setField(2, requiredString(event, "event_id", MAX_IDENTIFIER_CHARS));
        row.setField(3, EventTimeOf.parse(requiredString(event, "event_time", EVENT_TIME_CHARS)));
        if (row.getField(3) == null) {
            throw new InvalidEvent(
                    "invalid event_time: expected RFC 3339 UTC with milliseconds, e.g. 2026-01-31T12:00:00.000Z");
        }
        row.setField(4, requiredString(event, "account_id", MAX_IDENTIFIER_CHARS));
        row.setField(5, requiredString(event, "api_key_id", MAX_IDENTIFIER_CHARS));
        row.setField(6, optionalString(event, "org_id", MAX_IDENTIFIER_CHARS));
        row.setField(7, ipAddress(requiredString(event, "source_ip", MAX_IP_CHARS)));
        row.setField(8, matching(event, "country", COUNTRY, "an ISO-3166 alpha-2 code"));
        row.setField(9, coordinate(event, "latitude", 90));
        row.setField(10, coordinate(event, "longitude", 180));
        row.setField(11, optionalLong(event, "asn", MAX_ASN));
        String asnType = optionalString(event, "asn_type", MAX_IDENTIFIER_CHARS);
        if (asnType != null && !ASN_TYPES.contains(asnType)) {
            throw new InvalidEvent("invalid asn_type: must be one of " + ASN_TYPES);
        }
        row.setField(12, asnType);
        row.setField(13, requiredString(event, "model", MAX_IDENTIFIER_CHARS));
        row.setField(14, requiredString(event, "endpoint", MAX_ENDPOINT_CHARS));
        row.setField(15, requiredLong(event, "input_tokens", MAX_TOKENS));
        row.setField(16, requiredLong(event, "output_tokens", MAX_TOKENS));
        row.setField(17, statusCode(event));
        row.setField(18, optionalLong(event, "latency_ms", NO_MAXIMUM));
        row.setField(19, matching(event, "prompt_fingerprint", HEX, "a lowercase hex string"));
        row.setField(20, optionalString(event, "payment_fingerprint", MAX_IDENTIFIER_CHARS));
        row.setField(21, optionalString(event, "user_agent", MAX_USER_AGENT_CHARS));
        row.setField(22, requestTags(event));
        row.setField(23, extras(event));
    }

    private static JsonNode present(ObjectNode event, String field) throws InvalidEvent {
        JsonNode node = event.get(field);
        if (node == null || node.isNull()) {
            throw new InvalidEvent("missing required field: " + field);
        }
        return node;
    }

    private static String requiredString(ObjectNode event, String field, int maxChars) throws InvalidEvent {
        JsonNode node = present(event, field);
        if (!node.isTextual()) {
            throw new InvalidEvent("wrong type: " + field + " must be a string");
        }
        if (node.textValue().isEmpty()) {
            throw new InvalidEvent("invalid " + field + ": must not be empty");
        }
        return bounded(node.textValue(), field, maxChars);
    }

    private static String optionalString(ObjectNode event, String field, int maxChars) throws InvalidEvent {
        JsonNode node = event.get(field);
        if (node == null || node.isNull()) {
            return null;
        }
        if (!node.isTextual()) {
            throw new InvalidEvent("wrong type: " + field + " must be a string or null");
        }
        return bounded(node.textValue(), field, maxChars);
    }

    /** JSON Schema's maxLength counts code points; a Java char is a UTF-16 unit, so 😀 is two of them. */
    private static String bounded(String value, String field, int maxChars) throws InvalidEvent {
        if (value.length() > maxChars && value.codePointCount(0, value.length()) > maxChars) {
            throw new InvalidEvent("invalid " + field + ": longer than " + maxChars + " characters");
        }
        return value;
    }

    private static String matching(ObjectNode event, String field, Pattern pattern, String what)
            throws InvalidEvent {
        String value = optionalString(event, field, MAX_IDENTIFIER_CHARS);
        if (value != null && !pattern.matcher(value).matches()) {
            throw new InvalidEvent("invalid " + field + ": must be " + what);
        }
        return value;
    }

    private static long integral(JsonNode node, String field) throws InvalidEvent {
        // JSON Schema's integer is any number with a zero fractional part, so 12.0 and 1e2 count (as
        // the Python validator agrees); "12", true and 1.5 are contract violations, not numbers to coerce.
        if (node.isFloatingPointNumber()) {
            double value = node.doubleValue();
            if (Double.isInfinite(value) || value != Math.rint(value)) {
                throw new InvalidEvent("wrong type: " + field + " must be an integer");
            }
            // 2^63 is the first double past Long.MAX_VALUE; the schema caps every integer at that bound.
            if (value >= 0x1p63 || value < -0x1p63) {
                throw new InvalidEvent("invalid " + field + ": out of range");
            }
            return (long) value;
        }
        if (!node.isIntegralNumber()) {
            throw new InvalidEvent("wrong type: " + field + " must be an integer");
        }
        if (!node.canConvertToLong()) {
            throw new InvalidEvent("invalid " + field + ": out of range");
        }
        return node.longValue();
    }

    private static Long requiredLong(ObjectNode event, String field, long maximum) throws InvalidEvent {
        return inRange(integral(present(event, field), field), field, maximum);
    }

    private static Long optionalLong(ObjectNode event, String field, long maximum) throws InvalidEvent {
        JsonNode node = event.get(field);
        if (node == null || node.isNull()) {
            return null;
        }
        return inRange(integral(node, field), field, maximum);
    }

    private static long inRange(long value, String field, long maximum) throws InvalidEvent {
        if (value < 0) {
            throw new InvalidEvent("invalid " + field + ": must be >= 0");
        }
        if (value > maximum) {
            throw new InvalidEvent("invalid " + field + ": must be <= " + maximum);
        }
        return value;
    }

    private static Integer statusCode(ObjectNode event) throws InvalidEvent {
        long value = integral(present(event, "status_code"), "status_code");
        if (value < 100 || value > 599) {
            throw new InvalidEvent("invalid status_code: must be an HTTP status (100-599)");
        }
        return (int) value;
    }

    private static Double coordinate(ObjectNode event, String field, double bound)
            throws InvalidEvent {
        JsonNode node = event.get(field);
        if (node == null || node.isNull()) {
            return null;
        }
        if (!node.isNumber()) {
            throw new InvalidEvent("wrong type: " + field + " must be a number or null");
        }
        double value = node.doubleValue();
        if (!(value >= -bound && value <= bound)) {
            throw new InvalidEvent("invalid " + field + ": must be within [-" + (int) bound + ", " + (int) bound + "]");
        }
        return value;
    }

    private static String ipAddress(String value) throws InvalidEvent {
        if (IPV4.matcher(value).matches()) {
            return value;
        }
        // Only IPv6 literals reach InetAddress: a string with ':' is parsed, never resolved via DNS.
        if (value.indexOf(':') >= 0 && IPV6_CHARS.matcher(value).matches()) {
            try {
                InetAddress.getByName(value);
                return value;
            } catch (UnknownHostException e) {
                // falls through to the error below
            }
        }
        throw new InvalidEvent("invalid source_ip: not an IPv4 or IPv6 address");
    }

    private static String[] requestTags(ObjectNode event) throws InvalidEvent {
        JsonNode node = event.get("request_tags");
        if (node == null || node.isNull()) {
            return new String[0];
        }
        if (!node.isArray()) {
            throw new InvalidEvent("wrong type: request_tags must be an array of strings");
        }
        if (node.size() > MAX_TAGS) {
            throw new InvalidEvent("invalid request_tags: more than " + MAX_TAGS + " tags");
        }
        List<String> tags = new ArrayList<>(node.size());
        for (JsonNode tag : node) {
            if (!tag.isTextual()) {
                throw new InvalidEvent("wrong type: request_tags must be an array of strings");
            }
            if (tag.textValue().isEmpty()) {
                throw new InvalidEvent("invalid request_tags: a tag must not be empty");
            }
            tags.add(bounded(tag.textValue(), "request_tags", MAX_TAG_CHARS));
        }
        return tags.toArray(new String[0]);
    }

    /** Fields outside the contract are kept verbatim (as a JSON object) for the raw archive. */
    private static String extras(ObjectNode event) {
        ObjectNode extras = null;
        Iterator<Map.Entry<String, JsonNode>> fields = event.fields();
        while (fields.hasNext()) {
            Map.Entry<String, JsonNode> field = fields.next();
            if (!KNOWN_FIELDS.contains(field.getKey())) {
                if (extras == null) {
                    extras = MAPPER.createObjectNode();
                }
                extras.set(field.getKey(), field.getValue());
            }
        }
        return extras == null ? null : extras.toString();
    }
}
