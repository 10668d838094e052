package io.usagewatch.udf;

import java.io.BufferedInputStream;
import java.io.BufferedWriter;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.flink.types.Row;

/**
 * Runs the job's parser ({@link ParseAccessEvent#parse}) over records on stdin and writes one verdict
 * per record to stdout: {@code {"ok":true}} or {@code {"error":"<dead-letter reason>"}}.
 *
 * <p>Default: one record per line, like the replay file source. With {@code --length-prefixed} each
 * record is its UTF-8 byte count in decimal, a newline, then exactly that many bytes, so a record may
 * contain newlines and one long-lived JVM can check many records (the hypothesis suite's mode). The
 * parser gets the record's bytes, as the job's source hands them over. Each verdict is flushed at once
 * so a caller can write a record and wait for its answer.
 */
public final class ParseCli {

    private static final ObjectMapper JSON = new ObjectMapper();

    private ParseCli() {}

    public static void main(String[] args) throws IOException {
        boolean lengthPrefixed = args.length == 1 && args[0].equals("--length-prefixed");
        if (args.length > 1 || (args.length == 1 && !lengthPrefixed)) {
            System.err.println("usage: ParseCli [--length-prefixed] < records > verdicts");
            System.exit(2);
        }
        Writer out = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8));
        DataInputStream in = new DataInputStream(new BufferedInputStream(System.in));
        if (lengthPrefixed) {
            String header;
            while ((header = readHeader(in)) != null) {
                byte[] record = new byte[parseLength(header)];
                in.readFully(record);
                writeVerdict(out, record);
            }
        } else {
            byte[] line;
            while ((line = readLine(in)) != null) {
                writeVerdict(out, line);
            }
        }
        out.flush();
    }

    /** The bytes up to the next newline (a trailing carriage return dropped), or null at the end. */
    private static byte[] readLine(InputStream in) throws IOException {
        ByteArrayOutputStream line = new ByteArrayOutputStream();
        int next;
        while ((next = in.read()) != '\n') {
            if (next < 0) {
                return line.size() == 0 ? null : line.toByteArray();
            }
            line.write(next);
        }
        byte[] bytes = line.toByteArray();
        boolean crlf = bytes.length > 0 && bytes[bytes.length - 1] == '\r';
        return crlf ? Arrays.copyOf(bytes, bytes.length - 1) : bytes;
    }

    private static void writeVerdict(Writer out, byte[] raw) throws IOException {
        Row row = ParseAccessEvent.parse(raw);
        ObjectNode verdict = JSON.createObjectNode();
        Object reason = row.getField(0);
        if (reason == null) {
            verdict.put("ok", true);
        } else {
            verdict.put("error", (String) reason);
        }
        out.write(JSON.writeValueAsString(verdict));
        out.write('\n');
        out.flush();
    }

    /** The decimal length line, or null at a clean end of input. */
    private static String readHeader(InputStream in) throws IOException {
        ByteArrayOutputStream digits = new ByteArrayOutputStream();
        int next;
        while ((next = in.read()) != '\n') {
            if (next < 0) {
                if (digits.size() == 0) {
                    return null;
                }
                throw new EOFException("input ends inside a length header");
            }
            digits.write(next);
        }
        return digits.toString(StandardCharsets.US_ASCII);
    }

    private static int parseLength(String header) throws IOException {
        try {
            int length = Integer.parseInt(header.trim());
            if (length >= 0) {
                return length;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new IOException("bad length header: " + header);
    }
}
