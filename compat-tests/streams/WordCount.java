// Kafka Streams word count for compat-tests/tests/streams_wordcount.rs (at-least-once)
// and streams_eos.rs (`--guarantee exactly_once_v2 --cache-max-bytes 0`: every word's
// count update reaches the output, so a duplicate or lost update shows): lines of the
// input topic split into lower-case words, re-keyed by word (a repartition
// topic), counted in a persistent store (a changelog topic), counts written to the
// output topic as (word, count as a decimal string). Runs until stdin closes, then
// closes cleanly (leaving the group) and exits 0. Prints "@@ state <STATE>" on every
// state change. Compiled by scripts/install-deps.sh.

import java.io.IOException;
import java.io.InputStream;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;

public final class WordCount {
    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i + 1 < argv.length; i += 2) {
            args.put(argv[i], argv[i + 1]);
        }
        for (String required : new String[] {"--bootstrap", "--application-id", "--input", "--output", "--state-dir"}) {
            if (!args.containsKey(required)) {
                System.err.println("wordcount: missing " + required);
                System.exit(2);
            }
        }

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, args.get("--application-id"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.get("--bootstrap"));
        p.put(StreamsConfig.STATE_DIR_CONFIG, args.get("--state-dir"));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, args.getOrDefault("--guarantee", StreamsConfig.AT_LEAST_ONCE));
        if (args.containsKey("--cache-max-bytes")) {
            p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, Long.parseLong(args.get("--cache-max-bytes")));
        }
        // A killed instance's tasks move to the survivor after the session timeout
        // (Streams' default is 45 s).
        p.put(StreamsConfig.consumerPrefix("session.timeout.ms"), 6000);
        p.put(StreamsConfig.consumerPrefix("heartbeat.interval.ms"), 1500);
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        // Short commits: the test waits for the counts, and a commit is what flushes the
        // store's cache downstream and triggers the repartition topic's purge.
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 500);
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 1000);
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

        StreamsBuilder builder = new StreamsBuilder();
        builder.<String, String>stream(args.get("--input"))
                .flatMapValues(line -> Arrays.asList(line.toLowerCase().split("\\W+")))
                .filter((key, word) -> !word.isEmpty())
                .groupBy((key, word) -> word, Grouped.as("by-word"))
                .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("counts"))
                .toStream()
                .mapValues(count -> Long.toString(count))
                .to(args.get("--output"), Produced.with(Serdes.String(), Serdes.String()));

        KafkaStreams streams = new KafkaStreams(builder.build(), p);
        streams.setStateListener((now, before) -> {
            System.out.println("@@ state " + now);
            System.out.flush();
        });
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("wordcount: stream thread failed: " + e);
            e.printStackTrace();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
                    .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();

        // The test's "stop cleanly" signal: stdin reaches EOF.
        InputStream in = System.in;
        try {
            while (in.read() >= 0) {
                // Ignore input; only EOF matters.
            }
        } catch (IOException e) {
            System.err.println("wordcount: stdin: " + e);
        }
        boolean closed = streams.close(CloseOptions.groupMembershipOperation(
                CloseOptions.GroupMembershipOperation.LEAVE_GROUP).withTimeout(Duration.ofSeconds(60)));
        System.out.println("@@ closed " + closed);
        System.out.flush();
        System.exit(closed ? 0 : 1);
    }
}
