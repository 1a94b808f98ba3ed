package blumfeld.compat;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Compatibility driver on the official Java client. Every subcommand exits 0 on success and
 * non-zero with a "MISMATCH:" or "ERROR:" line on stderr otherwise, so the pytest suite can run
 * it as a subprocess against Blumfeld or Apache Kafka alike.
 *
 * The roundtrip consumers use assign() only; group-consume (see GroupConsume) is a group member.
 */
public final class Main {
    private static final Duration CONSUME_DEADLINE = Duration.ofSeconds(120);
    private static final Duration ADMIN_DEADLINE = Duration.ofSeconds(60);

    public static void main(String[] args) {
        if (args.length == 0) {
            usage();
        }
        Map<String, String> opts = parseOpts(Arrays.copyOfRange(args, 1, args.length));
        try {
            switch (args[0]) {
                case "roundtrip" -> roundtrip(opts);
                case "create-topic" -> createTopic(opts.get("bootstrap"), req(opts, "topic"),
                        Integer.parseInt(opts.getOrDefault("partitions", "6")));
                case "idempotent-produce" -> idempotentProduce(opts);
                case "bulk-produce" -> bulkProduce(opts);
                case "group-consume" -> GroupConsume.run(opts);
                case "checked-produce" -> CheckedProduce.run(opts);
                case "authorized-operations" -> authorizedOperations(opts);
                case "txn-visibility", "txn-fence", "txn-ctp", "txn-open", "txn-offsets", "txn-count", "txn-epochs" -> Transactions.run(args[0], opts);
                case "streams-setup", "streams-app", "streams-verify" -> StreamsEos.run(args[0], opts);
                default -> usage();
            }
        } catch (Mismatch m) {
            System.err.println("MISMATCH: " + m.getMessage());
            System.exit(2);
        } catch (Exception e) {
            System.err.println("ERROR: " + e);
            e.printStackTrace();
            System.exit(1);
        }
        System.exit(0);
    }

    private static void usage() {
        System.err.println("usage: compat-java roundtrip|create-topic|idempotent-produce|bulk-produce|checked-produce|group-consume|authorized-operations"
                + "|txn-visibility|txn-fence|txn-ctp|txn-open|txn-offsets|txn-count|txn-epochs|streams-setup|streams-app|streams-verify"
                + " --bootstrap HOST:PORT [--topic T | --topic-prefix P] [--partitions N] [--count N]"
                + " [--codecs none,gzip,snappy,lz4,zstd] [--bytes N] [--value-size N]"
                + " [--group G] [--protocol classic|consumer] [--session-timeout-ms N] [--client-id ID] [--instance-id ID]");
        System.exit(64);
    }

    static final class Mismatch extends Exception {
        Mismatch(String msg) {
            super(msg);
        }
    }

    private static Map<String, String> parseOpts(String[] args) {
        Map<String, String> out = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                usage();
            }
            out.put(args[i].substring(2), args[++i]);
        }
        return out;
    }

    static String req(Map<String, String> opts, String key) {
        String v = opts.get(key);
        if (v == null) {
            System.err.println("missing --" + key);
            usage();
        }
        return v;
    }

    // ---------------------------------------------------------------- authorized operations

    /**
     * Prints the authorized operations the AdminClient reports, one line each, operations sorted:
     * {@code topic OPS}, {@code cluster OPS}, {@code classic-group OPS} (an empty classic group made
     * by committing an offset: DescribeGroups) and {@code consumer-group OPS} (a live KIP-848 member:
     * ConsumerGroupDescribe). {@code null} means the broker omitted the field.
     */
    private static void authorizedOperations(Map<String, String> opts) throws Exception {
        String bootstrap = req(opts, "bootstrap");
        String topic = req(opts, "topic");
        String group = req(opts, "group");
        String classic = group + "-classic";
        createTopic(bootstrap, topic, 1);
        try (Admin admin = admin(bootstrap)) {
            admin.alterConsumerGroupOffsets(classic,
                    Map.of(new TopicPartition(topic, 0), new org.apache.kafka.clients.consumer.OffsetAndMetadata(0)))
                    .all().get(ADMIN_DEADLINE.toMillis(), TimeUnit.MILLISECONDS);
            Properties p = new Properties();
            p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
            p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
            p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
            try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
                consumer.subscribe(List.of(topic));
                long deadline = System.nanoTime() + CONSUME_DEADLINE.toNanos();
                while (consumer.assignment().isEmpty()) {
                    if (System.nanoTime() > deadline) {
                        throw new Mismatch("no assignment for " + group);
                    }
                    consumer.poll(Duration.ofMillis(200));
                }
                var topicOps = admin.describeTopics(List.of(topic),
                        new org.apache.kafka.clients.admin.DescribeTopicsOptions().includeAuthorizedOperations(true))
                        .allTopicNames().get(ADMIN_DEADLINE.toMillis(), TimeUnit.MILLISECONDS).get(topic).authorizedOperations();
                var clusterOps = admin.describeCluster(
                        new org.apache.kafka.clients.admin.DescribeClusterOptions().includeAuthorizedOperations(true))
                        .authorizedOperations().get(ADMIN_DEADLINE.toMillis(), TimeUnit.MILLISECONDS);
                var groups = admin.describeConsumerGroups(List.of(classic, group),
                        new org.apache.kafka.clients.admin.DescribeConsumerGroupsOptions().includeAuthorizedOperations(true))
                        .all().get(ADMIN_DEADLINE.toMillis(), TimeUnit.MILLISECONDS);
                System.out.println("topic " + sortedOps(topicOps));
                System.out.println("cluster " + sortedOps(clusterOps));
                System.out.println("classic-group " + sortedOps(groups.get(classic).authorizedOperations()));
                System.out.println("consumer-group " + sortedOps(groups.get(group).authorizedOperations()));
            }
        }
    }

    private static String sortedOps(Set<org.apache.kafka.common.acl.AclOperation> ops) {
        if (ops == null) {
            return "null";
        }
        return String.join(",", ops.stream().map(Enum::name).sorted().toList());
    }

    // ---------------------------------------------------------------- clients

    private static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) ADMIN_DEADLINE.toMillis());
        return Admin.create(p);
    }

    /** Producer with the client's defaults (idempotent, acks=all) plus the given overrides. */
    private static KafkaProducer<byte[], byte[]> producer(String bootstrap, Map<String, Object> extra) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.putAll(extra);
        return new KafkaProducer<>(p);
    }

    private static KafkaConsumer<byte[], byte[]> consumer(String bootstrap) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        return new KafkaConsumer<>(p);
    }

    private static void createTopic(String bootstrap, String topic, int partitions) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            try {
                admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all()
                        .get(ADMIN_DEADLINE.toMillis(), TimeUnit.MILLISECONDS);
            } catch (ExecutionException e) {
                // A retried CreateTopics through a flaky connection can find its own earlier success.
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
            System.out.println("created " + topic + " partitions=" + partitions);
        }
    }

    // ---------------------------------------------------------------- roundtrip

    /** Deterministic message i: the same bytes on produce and on verification. */
    record Msg(byte[] key, byte[] value, List<Header> headers) {
        static Msg of(int i) {
            byte[] key = ("key-" + (i % 1009) + "-" + i).getBytes(StandardCharsets.UTF_8);
            int len = 20 + (int) (mix(i) % 300);
            byte[] value = new byte[len];
            long s = mix(i * 31L + 7);
            for (int j = 0; j < len; j++) {
                s = s * 6364136223846793005L + 1442695040888963407L;
                // Half random bytes, half text, so every codec has something to squeeze.
                value[j] = (j % 2 == 0) ? (byte) (s >>> 56) : (byte) ('a' + (i + j) % 26);
            }
            List<Header> headers = List.of(
                    new RecordHeader("idx", Integer.toString(i).getBytes(StandardCharsets.UTF_8)),
                    new RecordHeader("bin", new byte[] {0, (byte) 0xff, (byte) i, (byte) (i >> 8)}),
                    new RecordHeader("empty", new byte[0]));
            return new Msg(key, value, headers);
        }
    }

    private static long mix(long x) {
        x ^= x >>> 33;
        x *= 0xff51afd7ed558ccdL;
        x ^= x >>> 33;
        return x & Long.MAX_VALUE;
    }

    private static void roundtrip(Map<String, String> opts) throws Exception {
        String bootstrap = req(opts, "bootstrap");
        String prefix = opts.getOrDefault("topic-prefix", "java-roundtrip");
        int partitions = Integer.parseInt(opts.getOrDefault("partitions", "6"));
        int count = Integer.parseInt(opts.getOrDefault("count", "10000"));
        String[] codecs = opts.getOrDefault("codecs", "none,gzip,snappy,lz4,zstd").split(",");
        for (String codec : codecs) {
            String topic = prefix + "-" + codec;
            long t0 = System.nanoTime();
            createTopic(bootstrap, topic, partitions);
            Map<TopicPartition, List<Integer>> placed = produceMessages(bootstrap, topic, codec, count);
            consumeAndCheck(bootstrap, topic, partitions, count, placed);
            checkOffsets(bootstrap, topic, partitions, placed);
            deleteTopic(bootstrap, topic);
            System.out.printf("ok codec=%s topic=%s messages=%d ms=%d%n", codec, topic, count,
                    (System.nanoTime() - t0) / 1_000_000);
        }
    }

    /** Returns, per partition, the message indices in offset order (offset k holds list[k]). */
    private static Map<TopicPartition, List<Integer>> produceMessages(String bootstrap, String topic,
            String codec, int count) throws Exception {
        List<Future<RecordMetadata>> futures = new ArrayList<>(count);
        try (KafkaProducer<byte[], byte[]> producer = producer(bootstrap,
                Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec, ProducerConfig.LINGER_MS_CONFIG, 5))) {
            for (int i = 0; i < count; i++) {
                Msg m = Msg.of(i);
                futures.add(producer.send(new ProducerRecord<>(topic, null, m.key(), m.value(), m.headers())));
            }
            producer.flush();
        }
        Map<TopicPartition, Map<Long, Integer>> byOffset = new HashMap<>();
        for (int i = 0; i < count; i++) {
            RecordMetadata md = futures.get(i).get();
            TopicPartition tp = new TopicPartition(md.topic(), md.partition());
            Integer prev = byOffset.computeIfAbsent(tp, k -> new HashMap<>()).put(md.offset(), i);
            if (prev != null) {
                throw new Mismatch(tp + " offset " + md.offset() + " acknowledged twice (" + prev + ", " + i + ")");
            }
        }
        Map<TopicPartition, List<Integer>> placed = new HashMap<>();
        for (var e : byOffset.entrySet()) {
            List<Integer> list = new ArrayList<>();
            for (long off = 0; off < e.getValue().size(); off++) {
                Integer idx = e.getValue().get(off);
                if (idx == null) {
                    throw new Mismatch(e.getKey() + " offsets are not contiguous from 0: missing " + off);
                }
                if (!list.isEmpty() && list.get(list.size() - 1) > idx) {
                    throw new Mismatch(e.getKey() + " offsets do not follow send order at offset " + off);
                }
                list.add(idx);
            }
            placed.put(e.getKey(), list);
        }
        return placed;
    }

    private static void consumeAndCheck(String bootstrap, String topic, int partitions, int count,
            Map<TopicPartition, List<Integer>> placed) throws Exception {
        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < partitions; p++) {
            tps.add(new TopicPartition(topic, p));
        }
        Map<TopicPartition, Long> next = new HashMap<>();
        long received = 0;
        long deadline = System.nanoTime() + CONSUME_DEADLINE.toNanos();
        try (KafkaConsumer<byte[], byte[]> consumer = consumer(bootstrap)) {
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            while (received < count) {
                if (System.nanoTime() > deadline) {
                    throw new Mismatch(topic + ": consumed only " + received + " of " + count);
                }
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                    long expectedOffset = next.getOrDefault(tp, 0L);
                    if (r.offset() != expectedOffset) {
                        throw new Mismatch(tp + ": got offset " + r.offset() + ", expected " + expectedOffset);
                    }
                    next.put(tp, expectedOffset + 1);
                    List<Integer> list = placed.get(tp);
                    if (list == null || r.offset() >= list.size()) {
                        throw new Mismatch(tp + ": unexpected record at offset " + r.offset());
                    }
                    checkRecord(tp, r, Msg.of(list.get((int) r.offset())));
                    received++;
                }
            }
        }
        System.out.println("consumed " + received + " from " + topic);
    }

    private static void checkRecord(TopicPartition tp, ConsumerRecord<byte[], byte[]> r, Msg want)
            throws Mismatch {
        String where = tp + "@" + r.offset();
        if (!Arrays.equals(r.key(), want.key())) {
            throw new Mismatch(where + ": key differs");
        }
        if (!Arrays.equals(r.value(), want.value())) {
            throw new Mismatch(where + ": value differs");
        }
        Header[] got = r.headers().toArray();
        if (got.length != want.headers().size()) {
            throw new Mismatch(where + ": " + got.length + " headers, expected " + want.headers().size());
        }
        for (int h = 0; h < got.length; h++) {
            Header w = want.headers().get(h);
            if (!got[h].key().equals(w.key()) || !Arrays.equals(got[h].value(), w.value())) {
                throw new Mismatch(where + ": header " + h + " differs (" + got[h].key() + ")");
            }
        }
    }

    private static void checkOffsets(String bootstrap, String topic, int partitions,
            Map<TopicPartition, List<Integer>> placed) throws Exception {
        Map<TopicPartition, OffsetSpec> earliest = new HashMap<>();
        Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
        for (int p = 0; p < partitions; p++) {
            earliest.put(new TopicPartition(topic, p), OffsetSpec.earliest());
            latest.put(new TopicPartition(topic, p), OffsetSpec.latest());
        }
        try (Admin admin = admin(bootstrap)) {
            var lo = admin.listOffsets(earliest).all().get();
            var hi = admin.listOffsets(latest).all().get();
            for (int p = 0; p < partitions; p++) {
                TopicPartition tp = new TopicPartition(topic, p);
                long n = placed.getOrDefault(tp, List.of()).size();
                ListOffsetsResult.ListOffsetsResultInfo l = lo.get(tp);
                ListOffsetsResult.ListOffsetsResultInfo h = hi.get(tp);
                if (l == null || l.offset() != 0) {
                    throw new Mismatch(tp + ": earliest offset " + (l == null ? "missing" : l.offset()) + ", expected 0");
                }
                if (h == null || h.offset() != n) {
                    throw new Mismatch(tp + ": latest offset " + (h == null ? "missing" : h.offset()) + ", expected " + n);
                }
            }
        }
        System.out.println("offsets ok for " + topic);
    }

    private static void deleteTopic(String bootstrap, String topic) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            admin.deleteTopics(List.of(topic)).all().get(ADMIN_DEADLINE.toMillis(), TimeUnit.MILLISECONDS);
            long deadline = System.nanoTime() + ADMIN_DEADLINE.toNanos();
            while (true) {
                Set<String> names = admin.listTopics().names().get();
                if (!names.contains(topic)) {
                    break;
                }
                if (System.nanoTime() > deadline) {
                    throw new Mismatch(topic + " still listed after DeleteTopics");
                }
                Thread.sleep(100); // polling interval of a condition wait, not synchronisation
            }
        }
        System.out.println("deleted " + topic);
    }

    // ---------------------------------------------------------------- idempotence / bulk

    /**
     * Writes numbers 0..count-1, number n to partition n % partitions, value = the number in
     * decimal. Default producer config: idempotent, acks=all, retries until delivery.timeout.ms.
     */
    private static void idempotentProduce(Map<String, String> opts) throws Exception {
        String bootstrap = req(opts, "bootstrap");
        String topic = req(opts, "topic");
        int partitions = Integer.parseInt(opts.getOrDefault("partitions", "4"));
        int count = Integer.parseInt(opts.getOrDefault("count", "20000"));
        // Messages per second; spreads the stream over time so a fault injector gets to cut it often.
        int rate = Integer.parseInt(opts.getOrDefault("rate", "0"));
        long t0 = System.nanoTime();
        AtomicLong acked = new AtomicLong();
        AtomicReference<Exception> failure = new AtomicReference<>();
        try (KafkaProducer<byte[], byte[]> producer = producer(bootstrap, Map.of(
                ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 300_000,
                ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10_000))) {
            for (int n = 0; n < count; n++) {
                if (rate > 0 && n % 100 == 0) {
                    long dueNanos = t0 + n * 1_000_000_000L / rate;
                    long waitNanos = dueNanos - System.nanoTime();
                    if (waitNanos > 0) {
                        Thread.sleep(waitNanos / 1_000_000, (int) (waitNanos % 1_000_000));
                    }
                }
                byte[] v = Integer.toString(n).getBytes(StandardCharsets.UTF_8);
                producer.send(new ProducerRecord<>(topic, n % partitions, v, v), (md, e) -> {
                    if (e != null) {
                        failure.compareAndSet(null, e);
                    } else {
                        acked.incrementAndGet();
                    }
                });
            }
            producer.flush();
        }
        if (failure.get() != null) {
            throw new Mismatch("a send failed: " + failure.get());
        }
        if (acked.get() != count) {
            throw new Mismatch("acknowledged " + acked.get() + " of " + count);
        }
        System.out.println("acked " + acked.get());
    }

    /** Writes about --bytes bytes of incompressible values quickly (large batches, no compression). */
    private static void bulkProduce(Map<String, String> opts) throws Exception {
        String bootstrap = req(opts, "bootstrap");
        String topic = req(opts, "topic");
        int partitions = Integer.parseInt(opts.getOrDefault("partitions", "4"));
        long bytes = Long.parseLong(req(opts, "bytes"));
        int valueSize = Integer.parseInt(opts.getOrDefault("value-size", "65536"));
        long n = (bytes + valueSize - 1) / valueSize;
        byte[][] values = new byte[16][valueSize];
        java.util.Random rnd = new java.util.Random(42);
        for (byte[] v : values) {
            rnd.nextBytes(v);
        }
        AtomicReference<Exception> failure = new AtomicReference<>();
        long t0 = System.nanoTime();
        try (KafkaProducer<byte[], byte[]> producer = producer(bootstrap, Map.of(
                ProducerConfig.BATCH_SIZE_CONFIG, 1 << 20,
                ProducerConfig.LINGER_MS_CONFIG, 20,
                ProducerConfig.BUFFER_MEMORY_CONFIG, 64L << 20,
                ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 8 << 20))) {
            for (long i = 0; i < n; i++) {
                producer.send(new ProducerRecord<>(topic, (int) (i % partitions), null, values[(int) (i % 16)]),
                        (md, e) -> {
                            if (e != null) {
                                failure.compareAndSet(null, e);
                            }
                        });
            }
            producer.flush();
        }
        if (failure.get() != null) {
            throw new Mismatch("a send failed: " + failure.get());
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        System.out.printf("bulk records=%d bytes=%d secs=%.1f MBps=%.1f%n", n, n * valueSize, secs,
                n * valueSize / secs / 1e6);
    }
}
