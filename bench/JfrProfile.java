import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordedFrame;
import jdk.jfr.consumer.RecordingFile;

/**
 * Where a job's CPU went, from a Java Flight Recording of its JVM: CPU seconds per thread (jdk.ThreadCPULoad,
 * numbered threads folded into one name), garbage collection and JIT totals, and for the threads whose name
 * starts with the optional prefix the methods most often on the stack (share of their samples).
 *
 * <pre>
 * JVM_ARGS="-Xmx2g -XX:+UseParallelGC -XX:StartFlightRecording=filename=job.jfr,settings=profile" \
 *   python -m bench --sections throughput --variants flink_java_udf --events 1000000
 * java bench/JfrProfile.java job.jfr "Source:"
 * </pre>
 */
public class JfrProfile {
    public static void main(String[] args) throws Exception {
        String prefix = args.length > 1 ? args[1] : null;
        int cores = Runtime.getRuntime().availableProcessors();
        Map<String, Double> cpuByThread = new HashMap<>();
        Map<Long, Instant> lastLoadAt = new HashMap<>();
        Map<String, Integer> onStack = new HashMap<>();
        double gcCpu = 0, jitWall = 0;
        int samples = 0;
        try (RecordingFile recording = new RecordingFile(Path.of(args[0]))) {
            while (recording.hasMoreEvents()) {
                RecordedEvent event = recording.readEvent();
                switch (event.getEventType().getName()) {
                    case "jdk.ThreadCPULoad" -> {
                        var thread = event.getThread("eventThread");
                        if (thread == null) continue;
                        Instant previous = lastLoadAt.put(thread.getId(), event.getStartTime());
                        // The load is a share of all the machine's cores over the time since the last sample.
                        double seconds = previous == null ? 0 : Duration.between(previous, event.getStartTime()).toMillis() / 1000.0;
                        double load = event.getFloat("user") + event.getFloat("system");
                        cpuByThread.merge(threadKey(thread.getJavaName(), thread.getOSName()), load * seconds * cores, Double::sum);
                    }
                    case "jdk.GCCPUTime" -> gcCpu += (event.getLong("userTime") + event.getLong("systemTime")) / 1e9;
                    case "jdk.Compilation" -> jitWall += event.getDuration().toMillis() / 1000.0;
                    case "jdk.ExecutionSample" -> {
                        var thread = event.getThread("sampledThread");
                        String name = thread == null ? "" : String.valueOf(thread.getJavaName());
                        if (prefix == null || !name.startsWith(prefix) || event.getStackTrace() == null) continue;
                        samples++;
                        Set<String> seen = new HashSet<>();
                        for (RecordedFrame frame : event.getStackTrace().getFrames()) {
                            String method = frame.getMethod().getType().getName() + "." + frame.getMethod().getName();
                            if (seen.add(method)) onStack.merge(method, 1, Integer::sum);
                        }
                    }
                    default -> { }
                }
            }
        }
        System.out.println("CPU seconds per thread (jdk.ThreadCPULoad):");
        cpuByThread.entrySet().stream().sorted(Map.Entry.<String, Double>comparingByValue().reversed()).limit(12)
            .forEach(entry -> System.out.printf("%8.1f  %s%n", entry.getValue(), entry.getKey()));
        System.out.printf("garbage collection %.1f CPU-s; compilations took %.1f s (those above JFR's threshold)%n", gcCpu, jitWall);
        if (prefix != null) {
            System.out.printf("methods on the stack in %d samples of threads '%s*':%n", samples, prefix);
            final int total = Math.max(samples, 1);
            onStack.entrySet().stream().sorted(Map.Entry.<String, Integer>comparingByValue().reversed()).limit(60)
                .forEach(entry -> System.out.printf("%5.1f%%  %s%n", 100.0 * entry.getValue() / total, entry.getKey()));
        }
    }

    /** Thread names with their numbers folded ("GlobalWindowAggregate[12] ..." -> "GlobalWindowAggregate[N] ..."). */
    private static String threadKey(String javaName, String osName) {
        String name = (javaName != null ? javaName : osName).replaceAll("\\d+", "N");
        return name.length() > 70 ? name.substring(0, 70) : name;
    }
}
