// Transaction scenarios of Apache Kafka's Java client for compat-tests/tests/transactions.rs,
// compiled by scripts/install-deps.sh against kafka-clients:
//
//   TxnScenarios BOOTSTRAP PREFIX SCENARIO...
//
// Each scenario uses its own topics (PREFIX-<scenario>..., created here with 2 partitions)
// and prints one JSON line "@@ {"scenario":...}" with what it observed; the Rust test
// asserts on the values. Scenarios:
//   commit   10 records in one transaction, committed
//   abort    10 records aborted, then 5 committed
//   open     5 records in a transaction left open: the last stable offset stays before
//            them, then the commit releases them
//   fence    a second producer with the same transactional.id fences the first
//   timeout  transaction.timeout.ms=1000, the producer stalls: the coordinator aborts
//   ctp      consume-transform-produce with sendOffsetsToTransaction, one round aborted
//   bench    transactional produce throughput: 100 records a transaction for SECONDS
//            (env TXN_BENCH_SECONDS, default 5), prints records/s and transactions/s
// A scenario that throws prints {"scenario":..,"error":"<class>: <message>"} and the
// program goes on with the next one; it then exits 1.

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class TxnScenarios {
    private static String bootstrap;
    private static String prefix;

    public static void main(String[] argv) throws Exception {
        if (argv.length < 3) {
            System.err.println("usage: TxnScenarios BOOTSTRAP PREFIX SCENARIO...");
            System.exit(2);
        }
        bootstrap = argv[0];
        prefix = argv[1];
        int failed = 0;
        for (int i = 2; i < argv.length; i++) {
            String name = argv[i];
            try {
                emit(name, run(name));
            } catch (Exception e) {
                Map<String, Object> out = new HashMap<>();
                out.put("error", e.getClass().getSimpleName() + ": " + e.getMessage());
                emit(name, out);
                failed++;
            }
        }
        System.exit(failed == 0 ? 0 : 1);
    }

    private static Map<String, Object> run(String name) throws Exception {
        switch (name) {
            case "commit": return commit();
            case "abort": return abort();
            case "open": return open();
            case "fence": return fence();
            case "timeout": return timeout();
            case "ctp": return consumeTransformProduce();
            case "bench": return bench();
            default: throw new IllegalArgumentException("unknown scenario " + name);
        }
    }

    // --- scenarios -------------------------------------------------------------------

    private static Map<String, Object> commit() throws Exception {
        String topic = topic("commit");
        try (KafkaProducer<String, String> p = producer("commit", Map.of())) {
            p.initTransactions();
            p.beginTransaction();
            sendAll(p, topic, "c", 10);
            p.commitTransaction();
        }
        Map<String, Object> out = new HashMap<>();
        out.put("read_committed", values(topic, "read_committed"));
        out.put("read_uncommitted", values(topic, "read_uncommitted"));
        return out;
    }

    private static Map<String, Object> abort() throws Exception {
        String topic = topic("abort");
        try (KafkaProducer<String, String> p = producer("abort", Map.of())) {
            p.initTransactions();
            p.beginTransaction();
            sendAll(p, topic, "a", 10);
            p.flush();
            p.abortTransaction();
            p.beginTransaction();
            sendAll(p, topic, "c", 5);
            p.commitTransaction();
        }
        Map<String, Object> out = new HashMap<>();
        out.put("read_committed", values(topic, "read_committed"));
        out.put("read_uncommitted", values(topic, "read_uncommitted"));
        // Two data batches and two markers per partition: the log end includes the markers.
        out.put("log_end", endOffsets(topic, "read_uncommitted"));
        return out;
    }

    private static Map<String, Object> open() throws Exception {
        String topic = topic("open");
        Map<String, Object> out = new HashMap<>();
        try (KafkaProducer<String, String> p = producer("open", Map.of())) {
            p.initTransactions();
            // One committed record first so the open transaction starts at offset 1.
            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, 0, "k", "before")).get();
            p.commitTransaction();
            p.beginTransaction();
            for (int i = 0; i < 5; i++) {
                p.send(new ProducerRecord<>(topic, 0, "k" + i, "open" + i)).get();
            }
            out.put("lso_while_open", endOffsets(topic, "read_committed").get(0));
            out.put("hw_while_open", endOffsets(topic, "read_uncommitted").get(0));
            out.put("read_committed_while_open", values(topic, "read_committed"));
            out.put("read_uncommitted_while_open", values(topic, "read_uncommitted"));
            p.commitTransaction();
        }
        out.put("lso_after_commit", endOffsets(topic, "read_committed").get(0));
        out.put("read_committed_after_commit", values(topic, "read_committed"));
        return out;
    }

    private static Map<String, Object> fence() throws Exception {
        String topic = topic("fence");
        Map<String, Object> out = new HashMap<>();
        KafkaProducer<String, String> first = producer("fence", Map.of());
        first.initTransactions();
        first.beginTransaction();
        sendAll(first, topic, "zombie", 3);
        first.flush();
        try (KafkaProducer<String, String> second = producer("fence", Map.of())) {
            // Same transactional.id: bumps the epoch and aborts the first one's transaction.
            second.initTransactions();
            second.beginTransaction();
            sendAll(second, topic, "second", 3);
            second.commitTransaction();
        }
        try {
            first.commitTransaction();
            out.put("zombie_commit", "succeeded");
        } catch (Exception e) {
            out.put("zombie_commit", e.getClass().getSimpleName());
        }
        try {
            first.send(new ProducerRecord<>(topic, "late")).get();
            out.put("zombie_send", "succeeded");
        } catch (Exception e) {
            out.put("zombie_send", rootName(e));
        }
        first.close(Duration.ZERO);
        out.put("read_committed", values(topic, "read_committed"));
        out.put("read_uncommitted", values(topic, "read_uncommitted"));
        return out;
    }

    private static Map<String, Object> timeout() throws Exception {
        String topic = topic("timeout");
        Map<String, Object> out = new HashMap<>();
        KafkaProducer<String, String> p = producer("timeout", Map.of(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 1000));
        p.initTransactions();
        p.beginTransaction();
        sendAll(p, topic, "stalled", 4);
        p.flush();
        // The producer stalls; the coordinator's timeout abort writes the markers, which
        // moves the last stable offset to the log end.
        long deadline = System.currentTimeMillis() + 60_000;
        long start = System.currentTimeMillis();
        while (!endOffsets(topic, "read_committed").equals(endOffsets(topic, "read_uncommitted"))
                || sum(endOffsets(topic, "read_committed")) <= 4) {
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("the coordinator did not abort within 60 s");
            }
            Thread.sleep(100);
        }
        out.put("aborted_by_coordinator", true);
        out.put("abort_seen_after_ms_at_least_timeout", System.currentTimeMillis() - start >= 900);
        try {
            p.send(new ProducerRecord<>(topic, "after-timeout")).get();
            p.commitTransaction();
            out.put("next_op", "succeeded");
        } catch (Exception e) {
            out.put("next_op", rootName(e));
        }
        p.close(Duration.ZERO);
        out.put("read_committed", values(topic, "read_committed"));
        out.put("read_uncommitted", values(topic, "read_uncommitted"));
        return out;
    }

    private static Map<String, Object> consumeTransformProduce() throws Exception {
        String input = topic("ctp-in");
        String output = topic("ctp-out");
        String group = prefix + "-ctp-group";
        try (KafkaProducer<String, String> plain = plainProducer()) {
            for (int i = 0; i < 20; i++) {
                plain.send(new ProducerRecord<>(input, i % 2, "k" + i, "w" + i));
            }
            plain.flush();
        }
        int rounds = 0, aborted = 0;
        Properties c = consumerProps("read_committed");
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 4);
        try (KafkaProducer<String, String> p = producer("ctp", Map.of());
             KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            p.initTransactions();
            consumer.subscribe(List.of(input));
            long deadline = System.currentTimeMillis() + 60_000;
            while (committedTotal(group, input) < 20) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("ctp did not finish within 60 s");
                }
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
                if (records.isEmpty()) {
                    continue;
                }
                rounds++;
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (ConsumerRecord<String, String> r : records) {
                    p.send(new ProducerRecord<>(output, r.partition(), r.key(), r.value().toUpperCase()));
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                p.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
                if (rounds == 2) {
                    // A failed round: its output and its offsets go together; the
                    // consumer rewinds to the committed offsets and processes it again.
                    // Flushed first, so the aborted output is in the log (else the
                    // client may drop it unsent, depending on timing).
                    p.flush();
                    p.abortTransaction();
                    aborted++;
                    for (TopicPartition tp : offsets.keySet()) {
                        OffsetAndMetadata committed = consumer.committed(Collections.singleton(tp)).get(tp);
                        consumer.seek(tp, committed == null ? 0 : committed.offset());
                    }
                } else {
                    p.commitTransaction();
                }
            }
        }
        Map<String, Object> out = new HashMap<>();
        out.put("rounds", rounds);
        out.put("aborted_rounds", aborted);
        out.put("committed_offsets", committedTotal(group, input));
        out.put("output_read_committed", values(output, "read_committed"));
        out.put("output_read_uncommitted_count", values(output, "read_uncommitted").size());
        return out;
    }

    private static Map<String, Object> bench() throws Exception {
        String topic = topic("bench");
        long seconds = Long.parseLong(System.getenv().getOrDefault("TXN_BENCH_SECONDS", "5"));
        String value = "x".repeat(100);
        long txns = 0;
        try (KafkaProducer<String, String> p = producer("bench", Map.of(ProducerConfig.LINGER_MS_CONFIG, 5))) {
            p.initTransactions();
            long start = System.nanoTime();
            long end = start + seconds * 1_000_000_000L;
            while (System.nanoTime() < end) {
                p.beginTransaction();
                for (int i = 0; i < 100; i++) {
                    p.send(new ProducerRecord<>(topic, i % 2, null, value));
                }
                p.commitTransaction();
                txns++;
            }
            double elapsed = (System.nanoTime() - start) / 1e9;
            Map<String, Object> out = new HashMap<>();
            out.put("transactions", txns);
            out.put("records", txns * 100);
            out.put("seconds", Math.round(elapsed * 1000) / 1000.0);
            out.put("records_per_sec", Math.round(txns * 100 / elapsed));
            out.put("txns_per_sec", Math.round(txns / elapsed * 10) / 10.0);
            return out;
        }
    }

    // --- helpers ---------------------------------------------------------------------

    private static String topic(String scenario) throws Exception {
        String name = prefix + "-" + scenario;
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            admin.createTopics(List.of(new NewTopic(name, 2, (short) 1))).all().get();
        }
        return name;
    }

    private static KafkaProducer<String, String> producer(String txnId, Map<String, Object> extra) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, prefix + "-" + txnId);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30_000);
        p.putAll(extra);
        return new KafkaProducer<>(p);
    }

    private static KafkaProducer<String, String> plainProducer() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        return new KafkaProducer<>(p);
    }

    private static void sendAll(KafkaProducer<String, String> p, String topic, String tag, int n) throws Exception {
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            acks.add(p.send(new ProducerRecord<>(topic, i % 2, "k" + i, tag + i)));
        }
        for (Future<RecordMetadata> ack : acks) {
            ack.get();
        }
    }

    private static Properties consumerProps(String isolation) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        return c;
    }

    /** End offsets per partition as a consumer of that isolation level sees them (LSO or HW). */
    private static List<Long> endOffsets(String topic, String isolation) {
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(isolation))) {
            List<TopicPartition> tps = partitions(c, topic);
            Map<TopicPartition, Long> ends = c.endOffsets(tps);
            List<Long> out = new ArrayList<>();
            for (TopicPartition tp : tps) {
                out.add(ends.get(tp));
            }
            return out;
        }
    }

    /** Every value from the start to the end offsets (LSO for read_committed), sorted. */
    private static List<String> values(String topic, String isolation) {
        List<String> out = new ArrayList<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(isolation))) {
            List<TopicPartition> tps = partitions(c, topic);
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = c.endOffsets(tps);
            long deadline = System.currentTimeMillis() + 30_000;
            while (tps.stream().anyMatch(tp -> c.position(tp) < ends.get(tp))) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("reading " + topic + " did not reach " + ends);
                }
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    out.add(r.value());
                }
            }
        }
        Collections.sort(out);
        return out;
    }

    private static List<TopicPartition> partitions(KafkaConsumer<String, String> c, String topic) {
        List<TopicPartition> tps = new ArrayList<>();
        c.partitionsFor(topic).forEach(info -> tps.add(new TopicPartition(topic, info.partition())));
        tps.sort((a, b) -> Integer.compare(a.partition(), b.partition()));
        return tps;
    }

    private static long committedTotal(String group, String topic) throws Exception {
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            long total = 0;
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e
                    : admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().entrySet()) {
                if (e.getKey().topic().equals(topic) && e.getValue() != null) {
                    total += e.getValue().offset();
                }
            }
            return total;
        }
    }

    private static long sum(List<Long> xs) {
        return xs.stream().mapToLong(Long::longValue).sum();
    }

    private static String rootName(Throwable e) {
        while (e.getCause() != null && e.getCause() != e) {
            e = e.getCause();
        }
        return e.getClass().getSimpleName();
    }

    private static void emit(String scenario, Map<String, Object> fields) {
        StringBuilder b = new StringBuilder("{\"scenario\":").append(json(scenario));
        new java.util.TreeMap<>(fields).forEach((k, v) -> b.append(',').append(json(k)).append(':').append(json(v)));
        System.out.println("@@ " + b.append('}'));
        System.out.flush();
    }

    static String json(Object v) {
        if (v instanceof Number || v instanceof Boolean) {
            return v.toString();
        }
        if (v instanceof List<?> list) {
            StringBuilder b = new StringBuilder("[");
            for (int i = 0; i < list.size(); i++) {
                b.append(i == 0 ? "" : ",").append(json(list.get(i)));
            }
            return b.append(']').toString();
        }
        StringBuilder b = new StringBuilder("\"");
        for (char ch : String.valueOf(v).toCharArray()) {
            if (ch == '"' || ch == '\\') {
                b.append('\\').append(ch);
            } else if (ch < 0x20) {
                b.append(String.format("\\u%04x", (int) ch));
            } else {
                b.append(ch);
            }
        }
        return b.append('"').toString();
    }
}
