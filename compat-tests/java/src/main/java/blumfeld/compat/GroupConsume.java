package blumfeld.compat;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * {@code group-consume}: one member of a consumer group, reporting on stdout in the line protocol
 * of compat-tests/harness/groups.py, until its stdin closes (then it commits, closes and exits 0).
 *
 * <pre>
 *   OWNED 0,3,5          partitions owned after every rebalance callback (full set, may be empty)
 *   R 3 117              record at partition 3, offset 117 was processed
 *   COMMITTED 3:118,5:40 a synchronous commit of these next-offsets succeeded
 *   COMMIT-FAILED why    a commit failed (the records may be delivered again elsewhere)
 *   LOST 0,3             partitions lost without a chance to commit
 *   CLOSED               consumer closed cleanly
 * </pre>
 *
 * Records of a poll batch are printed and flushed before the batch is committed, so a SIGKILL
 * leaves a transcript in which everything consumed after the last COMMITTED may legitimately be
 * consumed again by another member. Revocation commits what was processed before the partitions
 * go, which is what makes a clean hand-over exactly-once.
 */
final class GroupConsume {
    private static final Duration POLL_TIMEOUT = Duration.ofMillis(200);

    private final String topic;
    private final KafkaConsumer<byte[], byte[]> consumer;
    private final PrintStream out = System.out;
    private final TreeSet<Integer> owned = new TreeSet<>();
    private final Map<TopicPartition, OffsetAndMetadata> pending = new HashMap<>();

    private GroupConsume(String topic, KafkaConsumer<byte[], byte[]> consumer) {
        this.topic = topic;
        this.consumer = consumer;
    }

    static void run(Map<String, String> opts) throws Exception {
        String protocol = opts.getOrDefault("protocol", "classic");
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, Main.req(opts, "bootstrap"));
        p.put(ConsumerConfig.GROUP_ID_CONFIG, Main.req(opts, "group"));
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, opts.getOrDefault("client-id", "compat-java-group"));
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 200);
        if (opts.containsKey("instance-id")) {
            p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, opts.get("instance-id")); // static membership
        }
        if (protocol.equals("classic")) {
            // With group.protocol=consumer the broker owns these (the client rejects them).
            int sessionMs = Integer.parseInt(opts.getOrDefault("session-timeout-ms", "6000"));
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, sessionMs);
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, Math.max(100, sessionMs / 12));
        }
        AtomicBoolean stop = new AtomicBoolean();
        Thread stdinWatcher = new Thread(() -> drainUntilEof(System.in, stop), "stdin-watcher");
        stdinWatcher.setDaemon(true);
        stdinWatcher.start();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            new GroupConsume(Main.req(opts, "topic"), consumer).loop(stop);
        }
        System.out.println("CLOSED");
        System.out.flush();
    }

    private static void drainUntilEof(InputStream in, AtomicBoolean stop) {
        byte[] buf = new byte[256];
        try {
            while (in.read(buf) >= 0) {
                // the test only ever closes stdin; any bytes are ignored
            }
        } catch (IOException ignored) {
            // a broken stdin means the test is gone: stop as well
        }
        stop.set(true);
    }

    private void loop(AtomicBoolean stop) {
        consumer.subscribe(List.of(topic), new Listener());
        while (!stop.get()) {
            ConsumerRecords<byte[], byte[]> records = consumer.poll(POLL_TIMEOUT);
            if (records.isEmpty()) {
                continue;
            }
            StringBuilder sb = new StringBuilder();
            for (ConsumerRecord<byte[], byte[]> r : records) {
                sb.append("R ").append(r.partition()).append(' ').append(r.offset()).append('\n');
                pending.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
            }
            out.print(sb);
            out.flush();
            commitPending();
        }
        commitPending();
    }

    private void commitPending() {
        if (pending.isEmpty()) {
            return;
        }
        Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>(pending);
        try {
            consumer.commitSync(offsets);
            pending.clear();
            StringBuilder sb = new StringBuilder("COMMITTED ");
            String sep = "";
            for (var e : offsets.entrySet()) {
                sb.append(sep).append(e.getKey().partition()).append(':').append(e.getValue().offset());
                sep = ",";
            }
            out.println(sb);
        } catch (RebalanceInProgressException e) {
            // Still ours until revocation, which commits `pending` again.
            out.println("COMMIT-RETRY " + e.getMessage());
        } catch (CommitFailedException e) {
            pending.clear();
            out.println("COMMIT-FAILED " + e.getMessage().replace('\n', ' '));
        }
        out.flush();
    }

    private void printOwned() {
        StringBuilder sb = new StringBuilder("OWNED ");
        String sep = "";
        for (int p : owned) {
            sb.append(sep).append(p);
            sep = ",";
        }
        out.println(sb);
        out.flush();
    }

    private final class Listener implements ConsumerRebalanceListener {
        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            commitPending();
            partitions.forEach(tp -> owned.remove(tp.partition()));
            printOwned();
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            partitions.forEach(tp -> owned.add(tp.partition()));
            printOwned();
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            StringBuilder sb = new StringBuilder("LOST ");
            String sep = "";
            for (TopicPartition tp : partitions) {
                pending.remove(tp);
                owned.remove(tp.partition());
                sb.append(sep).append(tp.partition());
                sep = ",";
            }
            out.println(sb);
            printOwned();
        }
    }
}
