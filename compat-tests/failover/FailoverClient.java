// The Java client's side of compat-tests/tests/replication.rs's failover test, compiled
// by scripts/install-deps.sh against kafka-clients:
//
//   produce BOOTSTRAP TOPIC COUNT        an idempotent acks=all KafkaProducer sends records
//                                        k<i>/v<i>, about 1000 a second; prints
//                                        "@@ acked <i> <partition> <offset> <epoch ms>" or
//                                        "@@ failed <i> <error>" per record, then "@@ done".
//   consume BOOTSTRAP TOPIC GROUP COUNT  a KafkaConsumer in GROUP (classic protocol) reads
//                                        until it has seen COUNT distinct values,
//                                        committing synchronously after each poll; prints
//                                        "@@ read <partition> <offset> <value>" per record,
//                                        "@@ commit-failed <error>" when a commit fails,
//                                        then "@@ done".
//
// Output lines are flushed at once: the test follows progress while the client runs.

import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class FailoverClient {
    private static synchronized void emit(String line) {
        System.out.println("@@ " + line);
        System.out.flush();
    }

    public static void main(String[] argv) throws Exception {
        if (argv.length == 4 && argv[0].equals("produce")) {
            produce(argv[1], argv[2], Integer.parseInt(argv[3]));
        } else if (argv.length == 5 && argv[0].equals("consume")) {
            consume(argv[1], argv[2], argv[3], Integer.parseInt(argv[4]));
        } else {
            System.err.println("usage: produce BOOTSTRAP TOPIC COUNT | consume BOOTSTRAP TOPIC GROUP COUNT");
            System.exit(2);
        }
    }

    private static void produce(String bootstrap, String topic, int count) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, 2);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            for (int i = 0; i < count; i++) {
                final int id = i;
                producer.send(new ProducerRecord<>(topic, "k" + id, "v" + id), (metadata, error) -> {
                    if (error == null) {
                        emit("acked " + id + " " + metadata.partition() + " " + metadata.offset()
                                + " " + System.currentTimeMillis());
                    } else {
                        emit("failed " + id + " " + error.getClass().getSimpleName());
                    }
                });
                if (i % 10 == 0) {
                    // A steady load rather than one burst: kills land mid-load, and the
                    // pause in acknowledgements they cause shows in the timestamps.
                    Thread.sleep(10);
                }
            }
            producer.flush();
        }
        emit("done");
    }

    private static void consume(String bootstrap, String topic, String group, int count) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        Set<String> seen = new HashSet<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            consumer.subscribe(List.of(topic));
            while (seen.size() < count) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : records) {
                    seen.add(r.value());
                    emit("read " + r.partition() + " " + r.offset() + " " + r.value());
                }
                if (!records.isEmpty()) {
                    try {
                        consumer.commitSync();
                    } catch (RuntimeException error) {
                        emit("commit-failed " + error.getClass().getSimpleName());
                    }
                }
            }
        }
        emit("done");
    }
}
