// The Java client (Apache Kafka's kafka-clients) in the client matrix: one phase of
// compat-tests/matrix/SCENARIO.md per run, summary JSON as the last stdout line,
// everything else on stderr. Compiled by scripts/install-deps.sh.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class MatrixClient {
    static final String[] CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};
    /** SCENARIO.md: every phase finishes within 90 s or fails. */
    static final long PHASE_DEADLINE_MS = 85_000;

    final String bootstrap;
    final String topic;
    final String group;
    final int records;
    final int batch;
    final long deadline = System.currentTimeMillis() + PHASE_DEADLINE_MS;

    MatrixClient(Map<String, String> args) {
        bootstrap = required(args, "--bootstrap");
        topic = required(args, "--topic");
        group = required(args, "--group");
        records = Integer.parseInt(required(args, "--records"));
        batch = Integer.parseInt(required(args, "--batch"));
    }

    public static void main(String[] argv) {
        if (argv.length < 1) {
            fail("usage: MatrixClient <admin|produce|group|resume> --bootstrap H:P --topic T "
                    + "--group G --records N --batch B");
        }
        Map<String, String> args = new HashMap<>();
        for (int i = 1; i + 1 < argv.length; i += 2) {
            args.put(argv[i], argv[i + 1]);
        }
        MatrixClient c = new MatrixClient(args);
        String summary;
        try {
            switch (argv[0]) {
                case "admin": summary = c.admin(); break;
                case "produce": summary = c.produce(); break;
                case "group": summary = c.consume(false); break;
                case "resume": summary = c.consume(true); break;
                default: fail("unknown phase " + argv[0]); return;
            }
        } catch (Exception e) {
            e.printStackTrace();
            fail(argv[0] + ": " + e);
            return;
        }
        System.out.println(summary);
        System.out.flush();
        // Client threads (kafka-producer-network-thread etc.) are closed, but do not let
        // a straggler keep the JVM alive.
        System.exit(0);
    }

    static String required(Map<String, String> args, String name) {
        String v = args.get(name);
        if (v == null) {
            fail("missing " + name);
        }
        return v;
    }

    static void fail(String why) {
        System.err.println("matrix-java: " + why);
        System.exit(1);
    }

    static void log(String what) {
        System.err.println("matrix-java: " + what);
    }

    long remainingMs() {
        long left = deadline - System.currentTimeMillis();
        if (left <= 0) {
            throw new IllegalStateException("phase deadline passed");
        }
        return left;
    }

    // --- admin ---------------------------------------------------------------------

    String admin() throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        try (Admin admin = Admin.create(p)) {
            admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1)))
                    .all().get(remainingMs(), TimeUnit.MILLISECONDS);
            // A created topic may take a moment to show in metadata: poll to the deadline.
            boolean listed = false;
            while (!listed) {
                Set<String> names = admin.listTopics().names().get(remainingMs(), TimeUnit.MILLISECONDS);
                listed = names.contains(topic);
                if (!listed) {
                    log("listTopics does not show " + topic + " yet");
                    Thread.sleep(200);
                }
            }
            TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames()
                    .get(remainingMs(), TimeUnit.MILLISECONDS).get(topic);
            return "{\"phase\":\"admin\",\"listed\":" + listed + ",\"partitions\":"
                    + d.partitions().size() + "}";
        }
    }

    // --- produce -------------------------------------------------------------------

    String produce() throws Exception {
        int acked = 0;
        List<String> done = new ArrayList<>();
        // compression.type is a producer setting: one idempotent producer per codec.
        for (String codec : CODECS) {
            Properties p = new Properties();
            p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
            p.put(ProducerConfig.ACKS_CONFIG, "all");
            p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
            p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
            p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
            p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                List<Future<RecordMetadata>> sent = new ArrayList<>();
                for (int i = 0; i < records; i++) {
                    String id = batch + "-" + codec + "-" + i;
                    ProducerRecord<String, String> r = new ProducerRecord<>(topic, "k-" + id, "v-" + id);
                    r.headers().add("h", id.getBytes(StandardCharsets.UTF_8));
                    sent.add(producer.send(r));
                }
                producer.flush();
                for (Future<RecordMetadata> f : sent) {
                    // Throws (and so fails the phase) on any unacknowledged record.
                    f.get(remainingMs(), TimeUnit.MILLISECONDS);
                    acked++;
                }
            }
            done.add("\"" + codec + "\"");
        }
        return "{\"phase\":\"produce\",\"acked\":" + acked + ",\"codecs\":["
                + String.join(",", done) + "],\"skipped_codecs\":{}}";
    }

    // --- group / resume -----------------------------------------------------------

    /** What both members read, checked against SCENARIO.md's record format. */
    final class Tally {
        final Set<String> seen = ConcurrentHashMap.newKeySet();
        final AtomicInteger duplicates = new AtomicInteger();
        final AtomicInteger mismatched = new AtomicInteger();
        final AtomicInteger reread = new AtomicInteger();

        void record(ConsumerRecord<String, String> r) {
            String key = r.key() == null ? "" : r.key();
            if (!seen.add(key)) {
                duplicates.incrementAndGet();
                return;
            }
            String[] parts = key.split("-", 4);
            String id = key.length() > 2 ? key.substring(2) : "";
            Header h = r.headers().lastHeader("h");
            String header = h == null ? null : new String(h.value(), StandardCharsets.UTF_8);
            boolean wellFormed = parts.length == 4 && parts[0].equals("k")
                    && List.of(CODECS).contains(parts[2]) && parts[3].matches("[0-9]+")
                    && parts[1].matches("[0-9]+")
                    && ("v-" + id).equals(r.value()) && id.equals(header);
            if (wellFormed && Integer.parseInt(parts[1]) < batch) {
                reread.incrementAndGet();
            } else if (!wellFormed || Integer.parseInt(parts[1]) != batch) {
                mismatched.incrementAndGet();
            }
        }

        /** Records of the expected batch read so far. */
        int fresh() {
            return seen.size() - reread.get() - mismatched.get();
        }
    }

    /** One group member polling on its own thread until told to finish. */
    final class Member implements Runnable, ConsumerRebalanceListener {
        final String name;
        final Tally tally;
        final KafkaConsumer<String, String> consumer;
        final AtomicInteger consumed = new AtomicInteger();
        final AtomicBoolean finish = new AtomicBoolean();
        final AtomicBoolean pauseAll = new AtomicBoolean();
        /** Once this many records are read: pause, commit, set halfCommitted (-1: never). */
        final int pauseAfter;
        final AtomicBoolean halfCommitted = new AtomicBoolean();
        final AtomicReference<Set<TopicPartition>> assignment = new AtomicReference<>(Set.of());
        final AtomicInteger rebalances = new AtomicInteger();
        final AtomicReference<Throwable> error = new AtomicReference<>();
        final Thread thread;

        Member(String name, Tally tally, int pauseAfter) {
            this.name = name;
            this.tally = tally;
            this.pauseAfter = pauseAfter;
            Properties p = new Properties();
            p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
            p.put(ConsumerConfig.CLIENT_ID_CONFIG, group + "-" + name);
            p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            // Small fetches and polls: member a must not swallow every partition's records
            // before b joins (then b would read nothing).
            p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "10");
            p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, "512");
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
            p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            consumer = new KafkaConsumer<>(p);
            thread = new Thread(this, "member-" + name);
        }

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            // Commit what was read before the partitions move, or the next owner reads
            // them again (a duplicate).
            if (!partitions.isEmpty()) {
                consumer.commitSync(Duration.ofMillis(Math.min(remainingMs(), 30_000)));
            }
            log(name + " revoked " + partitions);
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            assignment.set(new HashSet<>(consumer.assignment()));
            rebalances.incrementAndGet();
            log(name + " assigned " + consumer.assignment());
        }

        @Override
        public void run() {
            try {
                consumer.subscribe(List.of(topic), this);
                while (!finish.get()) {
                    if (pauseAll.get()) {
                        consumer.pause(consumer.assignment());
                    } else {
                        consumer.resume(consumer.paused());
                    }
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(100))) {
                        consumed.incrementAndGet();
                        tally.record(r);
                    }
                    if (pauseAfter >= 0 && !halfCommitted.get() && consumed.get() >= pauseAfter) {
                        // Stop fetching (still heartbeating) so b finds records left to read.
                        pauseAll.set(true);
                        consumer.pause(consumer.assignment());
                        consumer.commitSync(Duration.ofMillis(Math.min(remainingMs(), 30_000)));
                        halfCommitted.set(true);
                    }
                    remainingMs();
                }
                consumer.commitSync(Duration.ofMillis(Math.min(remainingMs(), 30_000)));
            } catch (Throwable t) {
                error.set(t);
            } finally {
                // The scenario's members leave the group (LeaveGroup) on close.
                consumer.close(CloseOptions.groupMembershipOperation(
                        CloseOptions.GroupMembershipOperation.LEAVE_GROUP).withTimeout(Duration.ofSeconds(10)));
            }
        }

        void check() {
            Throwable t = error.get();
            if (t != null) {
                throw new IllegalStateException("member " + name + " failed", t);
            }
        }
    }

    void waitFor(String what, Member[] members, java.util.function.BooleanSupplier cond)
            throws InterruptedException {
        while (!cond.getAsBoolean()) {
            for (Member m : members) {
                m.check();
                if (!m.thread.isAlive() && !m.finish.get()) {
                    throw new IllegalStateException("member " + m.name + " stopped");
                }
            }
            if (System.currentTimeMillis() >= deadline) {
                throw new IllegalStateException("deadline waiting for " + what);
            }
            Thread.sleep(20);
        }
    }

    String consume(boolean resume) throws Exception {
        Tally tally = new Tally();
        Member a = new Member("a", tally, resume ? -1 : records / 2);
        Member b = new Member("b", tally, -1);
        Member[] both = {a, b};
        boolean rebalanced = false;
        try {
            if (resume) {
                a.thread.start();
                b.thread.start();
                waitFor("all new records", both, () -> tally.fresh() >= records);
                // Then 3 s more: nothing committed before may come back.
                long until = System.currentTimeMillis() + 3000;
                waitFor("3 s of quiet", both, () -> System.currentTimeMillis() >= until);
            } else {
                a.thread.start();
                waitFor("a to read and commit half", new Member[] {a}, () -> a.halfCommitted.get());
                int aRebalances = a.rebalances.get();
                Set<TopicPartition> before = a.assignment.get();
                log("a read " + a.consumed.get() + " alone, owning " + before);
                b.thread.start();
                waitFor("the rebalance b's join causes", both,
                        () -> a.rebalances.get() > aRebalances && b.rebalances.get() > 0);
                Set<TopicPartition> lost = new HashSet<>(before);
                lost.removeAll(a.assignment.get());
                a.pauseAll.set(false);
                waitFor("all records", both, () -> tally.fresh() >= records);
                rebalanced = !lost.isEmpty() && b.consumed.get() > 0;
            }
        } finally {
            for (Member m : both) {
                m.finish.set(true);
            }
            for (Member m : both) {
                m.thread.join(30_000);
            }
        }
        for (Member m : both) {
            m.check();
        }
        String common = "\"consumed\":" + tally.fresh() + ",\"duplicates\":" + tally.duplicates.get()
                + ",\"mismatched\":" + tally.mismatched.get();
        if (resume) {
            return "{\"phase\":\"resume\"," + common + ",\"reread\":" + tally.reread.get() + "}";
        }
        return "{\"phase\":\"group\"," + common + ",\"a\":" + a.consumed.get() + ",\"b\":"
                + b.consumed.get() + ",\"rebalanced\":" + rebalanced + "}";
    }
}
