// A Jepsen-style transaction checker (the shape of Jepsen's Kafka workload) for
// compat-tests/tests/txn_checker.rs, compiled by scripts/install-deps.sh:
//
//   TxnChecker BOOTSTRAP PREFIX SECONDS PRODUCERS REPLICATION
//
// Produces for SECONDS or until stdin closes, whichever comes first. Creates PREFIX-0 and PREFIX-1 (3 partitions each, min.insync.replicas 2 when
// REPLICATION is 3). PRODUCERS threads each own a transactional.id and, for SECONDS, run
// transactions of 1-8 unique values "<txn>:<index>:<size>" sent to random partitions;
// 30% are aborted on purpose. Any error before the commit aborts the transaction (by
// abortTransaction, or by a new producer with the same transactional.id, whose
// initTransactions aborts it); an error from commitTransaction leaves the outcome
// unknown: the transaction is "indeterminate" and the producer is re-created.
// Meanwhile two read_committed consumers read everything: one subscribed in a group,
// one assigned every partition. At the end a final read_committed read of every
// partition from the beginning to its last stable offset decides the indeterminate
// transactions (all of their values present = committed, none = aborted) and the
// checker counts anomalies:
//   aborted_reads   a value of an aborted transaction returned by any reader
//   lost_writes     a value of a committed transaction missing from the final read
//   torn_txns       a committed or indeterminate transaction partly in the final read, or
//                   a live reader that returned a value while skipping a value of the
//                   same transaction at a lower offset of the same partition
//   duplicates      a value at two offsets, or returned twice in one reader session
//   nonmonotonic    a reader session whose offsets in a partition did not increase
//   unknown_values  a value no producer wrote
//   stuck_lso       partitions whose last stable offset stays below the high watermark
// TXN_CHECKER_LIVE_ISOLATION=read_uncommitted makes the live readers read uncommitted
// (the test that the checker does report aborted reads).
// Prints "@@ txns <finished transactions>" every 500 ms, "@@ progress ..." on errors and
// a final "@@ {json}" with all counts.

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class TxnChecker {
    enum Outcome { COMMITTED, ABORTED, INDETERMINATE }

    static final int PARTITIONS = 3;
    static String bootstrap;
    static List<TopicPartition> partitions = new ArrayList<>();
    /** Transaction id -> outcome as the producer knows it. */
    static final Map<String, Outcome> outcomes = new ConcurrentHashMap<>();
    static final AtomicLong producerRestarts = new AtomicLong();
    static final AtomicLong finished = new AtomicLong();
    static volatile boolean stopping;
    /** Partitions whose last stable offset never caught up with the high watermark. */
    static long stuckPartitions;

    static synchronized void emit(String line) {
        System.out.println("@@ " + line);
        System.out.flush();
    }

    public static void main(String[] argv) throws Exception {
        if (argv.length != 5) {
            System.err.println("usage: TxnChecker BOOTSTRAP PREFIX SECONDS PRODUCERS REPLICATION");
            System.exit(2);
        }
        bootstrap = argv[0];
        String prefix = argv[1];
        long seconds = Long.parseLong(argv[2]);
        int producers = Integer.parseInt(argv[3]);
        short replication = Short.parseShort(argv[4]);
        createTopics(prefix, replication);

        List<Reader> readers = List.of(new Reader("subscribe", prefix), new Reader("assign", prefix));
        List<Thread> threads = new ArrayList<>();
        for (Reader r : readers) {
            threads.add(start(r));
        }
        Thread stdin = new Thread(() -> {
            try {
                while (System.in.read() >= 0) {
                    // Only EOF matters.
                }
            } catch (java.io.IOException e) {
                // Treated as EOF.
            }
            stopping = true;
        });
        stdin.setDaemon(true);
        stdin.start();
        Thread ticker = new Thread(() -> {
            while (true) {
                emit("txns " + finished.get());
                sleep(500);
            }
        });
        ticker.setDaemon(true);
        ticker.start();
        List<Thread> writers = new ArrayList<>();
        long end = System.currentTimeMillis() + seconds * 1000;
        for (int i = 0; i < producers; i++) {
            writers.add(start(new Writer(prefix + "-txn-" + i, i, end)));
        }
        for (Thread w : writers) {
            w.join();
        }
        emit("progress producers done: " + outcomes.size() + " transactions");

        Map<TopicPartition, Long> stable = waitForStableEnds();
        for (Reader r : readers) {
            r.readUpTo = stable;
        }
        for (Thread t : threads) {
            t.join();
        }
        Map<TopicPartition, List<Read>> fin = readAll(stable);
        emit(check(readers, fin));
        System.exit(0);
    }

    static Thread start(Runnable r) {
        Thread t = new Thread(r);
        t.start();
        return t;
    }

    static void createTopics(String prefix, short replication) throws Exception {
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            List<NewTopic> topics = new ArrayList<>();
            for (int t = 0; t < 2; t++) {
                NewTopic topic = new NewTopic(prefix + "-" + t, PARTITIONS, replication);
                if (replication >= 3) {
                    topic.configs(Map.of("min.insync.replicas", "2"));
                }
                topics.add(topic);
                for (int p = 0; p < PARTITIONS; p++) {
                    partitions.add(new TopicPartition(prefix + "-" + t, p));
                }
            }
            admin.createTopics(topics).all().get();
        }
    }

    // --- writers ---------------------------------------------------------------------

    static final class Writer implements Runnable {
        final String transactionalId;
        final Random random;
        final long end;
        KafkaProducer<String, String> producer;

        Writer(String transactionalId, int seed, long end) {
            this.transactionalId = transactionalId;
            this.random = new Random(seed);
            this.end = end;
        }

        public void run() {
            producer = newProducer();
            for (int seq = 0; System.currentTimeMillis() < end && !stopping; seq++, finished.incrementAndGet()) {
                String txn = transactionalId + "-" + seq;
                int size = 1 + random.nextInt(8);
                boolean abort = random.nextInt(100) < 30;
                outcomes.put(txn, Outcome.ABORTED);
                boolean sent = false;
                try {
                    producer.beginTransaction();
                    List<Future<RecordMetadata>> acks = new ArrayList<>();
                    for (int i = 0; i < size; i++) {
                        TopicPartition tp = partitions.get(random.nextInt(partitions.size()));
                        acks.add(producer.send(new ProducerRecord<>(tp.topic(), tp.partition(), txn, txn + ":" + i + ":" + size)));
                    }
                    for (Future<RecordMetadata> ack : acks) {
                        ack.get();
                    }
                    sent = true;
                } catch (Exception e) {
                    // Never committed: abort it, or let the next producer's init abort it.
                    emit("progress " + txn + " send failed: " + e);
                }
                if (sent && !abort) {
                    try {
                        outcomes.put(txn, Outcome.INDETERMINATE);
                        producer.commitTransaction();
                        outcomes.put(txn, Outcome.COMMITTED);
                        continue;
                    } catch (Exception e) {
                        emit("progress " + txn + " commit failed (outcome unknown): " + e);
                        restart();
                        continue;
                    }
                }
                try {
                    producer.abortTransaction();
                } catch (Exception e) {
                    emit("progress " + txn + " abort failed: " + e);
                    restart();
                }
            }
            producer.close(Duration.ofSeconds(10));
        }

        void restart() {
            producerRestarts.incrementAndGet();
            producer.close(Duration.ZERO);
            producer = newProducer();
        }

        /** A producer with this transactional.id, initialised (retried until it is). */
        KafkaProducer<String, String> newProducer() {
            long deadline = System.currentTimeMillis() + 120_000;
            while (true) {
                Properties p = new Properties();
                p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
                p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
                p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 20_000);
                p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10_000);
                p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 30_000);
                p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30_000);
                p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
                p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
                KafkaProducer<String, String> producer = new KafkaProducer<>(p);
                while (true) {
                    try {
                        producer.initTransactions();
                        return producer;
                    } catch (TimeoutException e) {
                        // Retriable on the same producer.
                        emit("progress " + transactionalId + " init failed (retrying): " + e);
                        if (System.currentTimeMillis() > deadline) {
                            throw e;
                        }
                    } catch (RuntimeException e) {
                        if (System.currentTimeMillis() > deadline) {
                            throw e;
                        }
                        emit("progress " + transactionalId + " init failed: " + e);
                        producer.close(Duration.ZERO);
                        sleep(500);
                        break;
                    }
                }
            }
        }
    }

    // --- readers ---------------------------------------------------------------------

    record Read(long offset, String value, int session) {}

    static Properties consumerProps() {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        return c;
    }

    /**
     * A live read_committed consumer. A session is one stretch of ownership of a
     * partition (a subscribed consumer may read a partition again from its committed
     * offset after a rebalance): offsets must increase within a session.
     */
    static final class Reader implements Runnable, ConsumerRebalanceListener {
        final String name;
        final String prefix;
        final Map<TopicPartition, List<Read>> reads = new HashMap<>();
        volatile Map<TopicPartition, Long> readUpTo;
        int session;
        long commitFailures;
        KafkaConsumer<String, String> consumer;

        Reader(String name, String prefix) {
            this.name = name;
            this.prefix = prefix;
        }

        public void onPartitionsAssigned(java.util.Collection<TopicPartition> tps) {
            session++;
        }

        public void onPartitionsRevoked(java.util.Collection<TopicPartition> tps) {}

        public void run() {
            Properties c = consumerProps();
            c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG,
                    System.getenv().getOrDefault("TXN_CHECKER_LIVE_ISOLATION", "read_committed"));
            if (name.equals("subscribe")) {
                c.put(ConsumerConfig.GROUP_ID_CONFIG, prefix + "-readers");
            }
            consumer = new KafkaConsumer<>(c);
            if (name.equals("subscribe")) {
                consumer.subscribe(List.of(prefix + "-0", prefix + "-1"), this);
            } else {
                consumer.assign(partitions);
                consumer.seekToBeginning(partitions);
                session = 1;
            }
            long deadline = Long.MAX_VALUE;
            while (true) {
                Map<TopicPartition, Long> upTo = readUpTo;
                if (upTo != null) {
                    deadline = Math.min(deadline, System.currentTimeMillis() + 120_000);
                    if (caughtUp(upTo) || System.currentTimeMillis() > deadline) {
                        break;
                    }
                }
                try {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                        reads.computeIfAbsent(new TopicPartition(r.topic(), r.partition()), k -> new ArrayList<>())
                                .add(new Read(r.offset(), r.value(), session));
                    }
                    if (name.equals("subscribe")) {
                        consumer.commitSync();
                    }
                } catch (RuntimeException e) {
                    // Brokers come and go: the consumer recovers by itself.
                    commitFailures++;
                }
            }
            consumer.close();
        }

        /** Has this reader got past every record below the final stable offsets? */
        boolean caughtUp(Map<TopicPartition, Long> upTo) {
            try {
                for (TopicPartition tp : partitions) {
                    if (consumer.position(tp, Duration.ofSeconds(5)) < upTo.get(tp)) {
                        return false;
                    }
                }
                return true;
            } catch (RuntimeException e) {
                return false;
            }
        }
    }

    /** The end offsets once every last stable offset equals its high watermark. */
    static Map<TopicPartition, Long> waitForStableEnds() {
        Properties uncommitted = consumerProps();
        uncommitted.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_uncommitted");
        long deadline = System.currentTimeMillis() + 90_000;
        try (KafkaConsumer<String, String> rc = new KafkaConsumer<>(consumerProps());
             KafkaConsumer<String, String> ru = new KafkaConsumer<>(uncommitted)) {
            Map<TopicPartition, Long> lso = Map.of();
            Map<TopicPartition, Long> hw = Map.of();
            while (System.currentTimeMillis() < deadline) {
                try {
                    lso = rc.endOffsets(partitions, Duration.ofSeconds(10));
                    hw = ru.endOffsets(partitions, Duration.ofSeconds(10));
                    if (lso.equals(hw)) {
                        return lso;
                    }
                } catch (RuntimeException e) {
                    emit("progress end offsets: " + e);
                }
                sleep(500);
            }
            emit("progress last stable offsets " + lso + " stuck below the high watermarks " + hw);
            for (TopicPartition tp : partitions) {
                if (!lso.containsKey(tp) || !lso.get(tp).equals(hw.get(tp))) {
                    stuckPartitions++;
                }
            }
            return lso;
        }
    }

    /** Every committed record from the beginning up to `ends`, per partition. */
    static Map<TopicPartition, List<Read>> readAll(Map<TopicPartition, Long> ends) {
        Map<TopicPartition, List<Read>> out = new HashMap<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps())) {
            c.assign(partitions);
            c.seekToBeginning(partitions);
            long deadline = System.currentTimeMillis() + 120_000;
            while (partitions.stream().anyMatch(tp -> c.position(tp) < ends.getOrDefault(tp, 0L))) {
                if (System.currentTimeMillis() > deadline) {
                    emit("progress the final read did not reach " + ends);
                    break;
                }
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    out.computeIfAbsent(new TopicPartition(r.topic(), r.partition()), k -> new ArrayList<>())
                            .add(new Read(r.offset(), r.value(), 0));
                }
            }
        }
        return out;
    }

    // --- the check -------------------------------------------------------------------

    static final Map<String, Long> examples = new HashMap<>();

    static void anomaly(Map<String, Long> counts, String kind, String detail) {
        counts.merge(kind, 1L, Long::sum);
        if (examples.merge(kind, 1L, Long::sum) <= 5) {
            emit("anomaly " + kind + " " + detail);
        }
    }

    static String txnOf(String value) {
        int i = value.indexOf(':');
        return i < 0 ? value : value.substring(0, i);
    }

    static int sizeOf(String value) {
        return Integer.parseInt(value.substring(value.lastIndexOf(':') + 1));
    }

    static String check(List<Reader> readers, Map<TopicPartition, List<Read>> fin) {
        Map<String, Long> counts = new TreeMap<>();
        for (String k : List.of("aborted_reads", "lost_writes", "torn_txns", "duplicates", "nonmonotonic",
                "unknown_values")) {
            counts.put(k, 0L);
        }
        counts.put("stuck_lso", stuckPartitions);
        // Where each value is in the final read, and which values of each transaction.
        Map<String, TopicPartition> partitionOf = new HashMap<>();
        Map<String, Long> offsetOf = new HashMap<>();
        Map<String, Set<String>> present = new HashMap<>();
        long finalRecords = 0;
        for (Map.Entry<TopicPartition, List<Read>> e : fin.entrySet()) {
            for (Read r : e.getValue()) {
                finalRecords++;
                if (offsetOf.put(r.value(), r.offset()) != null) {
                    anomaly(counts, "duplicates", "final read " + e.getKey() + " " + r);
                }
                partitionOf.put(r.value(), e.getKey());
                present.computeIfAbsent(txnOf(r.value()), k -> new HashSet<>()).add(r.value());
            }
        }
        // Decide the indeterminate transactions; count committed/aborted; lost and torn.
        Map<String, Outcome> decided = new HashMap<>(outcomes);
        long indeterminateCommitted = 0, indeterminateAborted = 0, committedValues = 0;
        for (Map.Entry<String, Outcome> e : outcomes.entrySet()) {
            String txn = e.getKey();
            Set<String> seen = present.getOrDefault(txn, Set.of());
            int size = seen.isEmpty() ? 0 : sizeOf(seen.iterator().next());
            if (e.getValue() == Outcome.INDETERMINATE) {
                if (seen.isEmpty()) {
                    indeterminateAborted++;
                    decided.put(txn, Outcome.ABORTED);
                } else {
                    indeterminateCommitted++;
                    decided.put(txn, Outcome.COMMITTED);
                    if (seen.size() != size) {
                        anomaly(counts, "torn_txns", txn + " (indeterminate) has " + seen.size() + " of " + size + " values");
                    }
                }
            } else if (e.getValue() == Outcome.COMMITTED) {
                // A committed transaction of n values: every one must be there.
                if (seen.isEmpty()) {
                    anomaly(counts, "lost_writes", txn + " committed, no value read");
                } else if (seen.size() != size) {
                    anomaly(counts, "torn_txns", txn + " has " + seen.size() + " of " + size + " values");
                }
            }
        }
        for (Map.Entry<String, Set<String>> e : present.entrySet()) {
            Outcome o = decided.get(e.getKey());
            if (o == null) {
                anomaly(counts, "unknown_values", e.getValue().toString());
            } else if (o == Outcome.ABORTED) {
                anomaly(counts, "aborted_reads", "final read has " + e.getValue());
            } else {
                committedValues += e.getValue().size();
            }
        }
        // The live readers.
        long liveReads = 0;
        for (Reader reader : readers) {
            for (Map.Entry<TopicPartition, List<Read>> e : reader.reads.entrySet()) {
                TopicPartition tp = e.getKey();
                Map<Integer, Long> lastOffset = new HashMap<>();
                Map<Integer, Long> firstOffset = new HashMap<>();
                Map<Integer, Set<Long>> offsetsRead = new HashMap<>();
                Map<Integer, Set<String>> valuesRead = new HashMap<>();
                for (Read r : e.getValue()) {
                    liveReads++;
                    Long last = lastOffset.put(r.session(), r.offset());
                    if (last != null && r.offset() <= last) {
                        anomaly(counts, "nonmonotonic", reader.name + " " + tp + " " + last + " then " + r);
                    }
                    firstOffset.putIfAbsent(r.session(), r.offset());
                    offsetsRead.computeIfAbsent(r.session(), k -> new HashSet<>()).add(r.offset());
                    if (!valuesRead.computeIfAbsent(r.session(), k -> new HashSet<>()).add(r.value())) {
                        anomaly(counts, "duplicates", reader.name + " " + tp + " read twice " + r);
                    }
                    Outcome o = decided.get(txnOf(r.value()));
                    if (o == null) {
                        anomaly(counts, "unknown_values", reader.name + " " + r);
                    } else if (o == Outcome.ABORTED) {
                        anomaly(counts, "aborted_reads", reader.name + " " + tp + " " + r);
                    }
                }
                // A returned value whose transaction has a value at a lower offset of the
                // same partition that this session passed without returning it.
                Set<String> tornReported = new HashSet<>();
                for (Read r : e.getValue()) {
                    String txn = txnOf(r.value());
                    for (String other : present.getOrDefault(txn, Set.of())) {
                        Long o = offsetOf.get(other);
                        if (tp.equals(partitionOf.get(other)) && o < r.offset()
                                && o >= firstOffset.get(r.session())
                                && !offsetsRead.get(r.session()).contains(o)
                                && tornReported.add(txn)) {
                            anomaly(counts, "torn_txns", reader.name + " " + tp + " read " + r + " but not " + other + "@" + o);
                        }
                    }
                }
            }
        }
        long committed = decided.values().stream().filter(o -> o == Outcome.COMMITTED).count();
        StringBuilder b = new StringBuilder("{");
        counts.forEach((k, v) -> b.append('"').append(k).append("\":").append(v).append(','));
        b.append("\"transactions\":").append(outcomes.size())
                .append(",\"committed_txns\":").append(committed)
                .append(",\"aborted_txns\":").append(outcomes.size() - committed)
                .append(",\"indeterminate_txns\":").append(indeterminateCommitted + indeterminateAborted)
                .append(",\"indeterminate_committed\":").append(indeterminateCommitted)
                .append(",\"indeterminate_aborted\":").append(indeterminateAborted)
                .append(",\"committed_values\":").append(committedValues)
                .append(",\"final_records\":").append(finalRecords)
                .append(",\"live_reads\":").append(liveReads)
                .append(",\"producer_restarts\":").append(producerRestarts.get())
                .append(",\"reader_errors\":").append(readers.stream().mapToLong(r -> r.commitFailures).sum())
                .append('}');
        return b.toString();
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
