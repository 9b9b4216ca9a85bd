// Kafka smoke test for the stack (used by `scripts/stack.sh smoke`):
// create a topic, produce 3 records, consume them in a consumer group, delete the topic.
//   java -cp '<stack>/kafka/lib/*' KafkaSmoke.java 127.0.0.1:9092

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class KafkaSmoke {
    public static void main(String[] args) throws Exception {
        String bootstrap = args.length > 0 ? args[0] : "127.0.0.1:9092";
        String topic = "logflow-smoke-" + UUID.randomUUID().toString().substring(0, 8);
        Properties common = new Properties();
        common.put("bootstrap.servers", bootstrap);

        try (Admin admin = Admin.create(common)) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
            System.out.println("  ok  created topic " + topic);

            Properties pp = new Properties();
            pp.putAll(common);
            pp.put("acks", "all");
            try (KafkaProducer<String, String> producer =
                     new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
                for (int i = 0; i < 3; i++) {
                    producer.send(new ProducerRecord<>(topic, "k" + i, "line " + i)).get();
                }
            }
            System.out.println("  ok  produced 3 records (acks=all)");

            Properties cp = new Properties();
            cp.putAll(common);
            cp.put("group.id", "smoke-" + topic);
            cp.put("auto.offset.reset", "earliest");
            List<String> got = new ArrayList<>();
            try (KafkaConsumer<String, String> consumer =
                     new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer())) {
                consumer.subscribe(List.of(topic));
                long deadline = System.currentTimeMillis() + 30_000;
                while (got.size() < 3 && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                        got.add(r.value());
                    }
                }
                consumer.commitSync();
            }
            if (got.size() != 3) {
                throw new IllegalStateException("consumed " + got + " instead of 3 records");
            }
            System.out.println("  ok  consumed 3 records in a consumer group and committed offsets");
            admin.deleteTopics(Set.of(topic)).all().get();
            System.out.println("  ok  deleted topic");
        }
    }
}
