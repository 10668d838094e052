import java.io.BufferedReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDate;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Pre-loads a benchmark topic far faster than a Python producer: reads a base workload of
 * "key TAB json" lines and sends `total` records, tiling the base as often as needed. Copy k shifts
 * every event_time by k days and stamps k into the first 8 hex digits of event_id, so the tiled
 * stream has unique ids and moves forward in event time like one long recording.
 *
 * Run with the broker's own jars: java -cp '.deps/kafka/*' bench/TopicLoader.java FILE TOPIC BOOTSTRAP TOTAL
 */
public class TopicLoader {
    private static final String ID_FIELD = "\"event_id\":\"";
    private static final String TIME_FIELD = "\"event_time\":\"";

    public static void main(String[] args) throws Exception {
        Path base = Path.of(args[0]);
        String topic = args[1];
        long total = Long.parseLong(args[3]);
        Properties settings = new Properties();
        settings.put("bootstrap.servers", args[2]);
        settings.put("acks", "all");
        settings.put("linger.ms", "20");
        settings.put("batch.size", String.valueOf(1 << 20));
        // zstd: both the JVM consumers and kafka-python (with zstandard) read it; keeps the topic small.
        settings.put("compression.type", "zstd");
        settings.put("key.serializer", StringSerializer.class.getName());
        settings.put("value.serializer", StringSerializer.class.getName());
        AtomicReference<Exception> failure = new AtomicReference<>();
        long sent = 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(settings)) {
            for (int copy = 0; sent < total; copy++) {
                Map<String, String> shiftedDates = new HashMap<>();
                String stamp = String.format("%08x", copy);
                try (BufferedReader reader = Files.newBufferedReader(base, StandardCharsets.UTF_8)) {
                    String line;
                    while (sent < total && (line = reader.readLine()) != null) {
                        int tab = line.indexOf('\t');
                        String value = tiled(line.substring(tab + 1), copy, stamp, shiftedDates);
                        producer.send(new ProducerRecord<>(topic, line.substring(0, tab), value), (metadata, error) -> {
                            if (error != null) {
                                failure.compareAndSet(null, error);
                            }
                        });
                        sent++;
                    }
                }
                if (failure.get() != null) {
                    break;
                }
            }
            producer.flush();
        }
        if (failure.get() != null) {
            throw failure.get();
        }
        System.out.println(sent);
    }

    private static String tiled(String value, int copy, String stamp, Map<String, String> shiftedDates) {
        int id = value.indexOf(ID_FIELD) + ID_FIELD.length();
        int time = value.indexOf(TIME_FIELD) + TIME_FIELD.length();
        String date = value.substring(time, time + 10);
        String shifted = shiftedDates.computeIfAbsent(date, day -> LocalDate.parse(day).plusDays(copy).toString());
        // event_id precedes event_time in the generator's field order.
        return value.substring(0, id) + stamp + value.substring(id + 8, time) + shifted + value.substring(time + 10);
    }
}
