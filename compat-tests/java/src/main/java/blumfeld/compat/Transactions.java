package blumfeld.compat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Transactional scenarios on the official Java client (transactions version 1 or 2, whatever
 * the broker finalizes). Each exits 0 when every check holds, else throws {@link Main.Mismatch}.
 *
 * <pre>
 *   txn-visibility  3 topics: commit, abort, commit; LSO held while open; read_committed sees
 *                   exactly the commits, read_uncommitted everything minus the markers
 *   txn-fence       a second producer with the same transactional.id fences the first
 *   txn-ctp         consume-transform-produce with sendOffsetsToTransaction (some aborted)
 *   txn-open        opens a transaction, prints OPEN, waits for stdin EOF (to be killed)
 *   txn-offsets     prints "P lso=X hw=Y" per partition (ListOffsets both isolation levels)
 *   txn-count       prints "count=N" for a read_committed or read_uncommitted read to the end
 *   txn-epochs      the finalized transaction.version (must equal --expect-version), then
 *                   commits and aborts in turn and reads the producer epoch after each from
 *                   DescribeTransactions (the coordinator) and DescribeProducers (the
 *                   partition's last marker): version 2 bumps it with every commit and abort,
 *                   version 1 never; the records of the committed ones are read back
 * </pre>
 */
final class Transactions {
    private static final Duration DEADLINE = Duration.ofSeconds(120);
    private static final Duration POLL = Duration.ofMillis(200);

    private Transactions() {}

    static void run(String cmd, Map<String, String> opts) throws Exception {
        switch (cmd) {
            case "txn-visibility" -> visibility(opts);
            case "txn-fence" -> fence(opts);
            case "txn-ctp" -> consumeTransformProduce(opts);
            case "txn-open" -> open(opts);
            case "txn-offsets" -> printOffsets(opts);
            case "txn-count" -> count(opts);
            case "txn-epochs" -> epochs(opts);
            default -> throw new Main.Mismatch("unknown command " + cmd);
        }
    }

    // ------------------------------------------------------------------ clients

    private static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) DEADLINE.toMillis());
        return Admin.create(p);
    }

    static KafkaProducer<byte[], byte[]> txnProducer(String bootstrap, String txnId, int timeoutMs) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, timeoutMs);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<byte[], byte[]> consumer(String bootstrap, String isolation, String group) {
        return consumer(bootstrap, isolation, group, 500);
    }

    static KafkaConsumer<byte[], byte[]> consumer(String bootstrap, String isolation, String group, int maxPollRecords) {
        Properties p = new Properties();
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, maxPollRecords);
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        }
        return new KafkaConsumer<>(p);
    }

    private static void createTopics(String bootstrap, List<String> topics, int partitions) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            List<NewTopic> all = topics.stream().map(t -> new NewTopic(t, partitions, (short) 1)).toList();
            try {
                admin.createTopics(all).all().get(DEADLINE.toMillis(), TimeUnit.MILLISECONDS);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
        }
    }

    private static List<TopicPartition> partitions(List<String> topics, int n) {
        List<TopicPartition> out = new ArrayList<>();
        for (String t : topics) {
            for (int p = 0; p < n; p++) {
                out.add(new TopicPartition(t, p));
            }
        }
        return out;
    }

    /** Latest offsets of `tps` at `level` (read_committed: the last stable offsets). */
    static Map<TopicPartition, Long> latest(Admin admin, List<TopicPartition> tps, IsolationLevel level) throws Exception {
        Map<TopicPartition, OffsetSpec> spec = new HashMap<>();
        tps.forEach(tp -> spec.put(tp, OffsetSpec.latest()));
        var result = admin.listOffsets(spec, new ListOffsetsOptions(level)).all().get(DEADLINE.toMillis(), TimeUnit.MILLISECONDS);
        Map<TopicPartition, Long> out = new HashMap<>();
        result.forEach((tp, info) -> out.put(tp, info.offset()));
        return out;
    }

    /**
     * Waits until every partition's LSO equals its high watermark (the markers of ended
     * transactions written: a coordinator may write them after EndTxn answers) and returns
     * those offsets.
     */
    static Map<TopicPartition, Long> stableEnds(Admin admin, List<TopicPartition> tps) throws Exception {
        long deadline = System.nanoTime() + DEADLINE.toNanos();
        while (true) {
            Map<TopicPartition, Long> hw = latest(admin, tps, IsolationLevel.READ_UNCOMMITTED);
            Map<TopicPartition, Long> lso = latest(admin, tps, IsolationLevel.READ_COMMITTED);
            if (hw.equals(lso)) {
                return hw;
            }
            if (System.nanoTime() > deadline) {
                throw new Main.Mismatch("LSO " + lso + " never reached HW " + hw);
            }
            Thread.sleep(20); // polling interval of a condition wait with a deadline
        }
    }

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static String text(byte[] b) {
        return new String(b, StandardCharsets.UTF_8);
    }

    /** Reads every partition from the beginning until its position reaches `ends`. */
    static Map<TopicPartition, List<ConsumerRecord<byte[], byte[]>>> readToEnd(String bootstrap, String isolation,
            List<TopicPartition> tps, Map<TopicPartition, Long> ends) throws Exception {
        Map<TopicPartition, List<ConsumerRecord<byte[], byte[]>>> out = new HashMap<>();
        tps.forEach(tp -> out.put(tp, new ArrayList<>()));
        long deadline = System.nanoTime() + DEADLINE.toNanos();
        try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap, isolation, null)) {
            c.assign(tps);
            c.seekToBeginning(tps);
            while (true) {
                boolean done = true;
                for (TopicPartition tp : tps) {
                    done &= c.position(tp) >= ends.getOrDefault(tp, 0L);
                }
                if (done) {
                    break;
                }
                if (System.nanoTime() > deadline) {
                    throw new Main.Mismatch(isolation + " read did not reach " + ends);
                }
                for (ConsumerRecord<byte[], byte[]> r : c.poll(POLL)) {
                    out.get(new TopicPartition(r.topic(), r.partition())).add(r);
                }
            }
        }
        return out;
    }

    // ------------------------------------------------------------------ txn-visibility

    private static void visibility(Map<String, String> opts) throws Exception {
        String bootstrap = Main.req(opts, "bootstrap");
        String prefix = opts.getOrDefault("topic-prefix", "txn");
        int count = Integer.parseInt(opts.getOrDefault("count", "300"));
        int parts = 2;
        List<String> topics = List.of(prefix + "-a", prefix + "-b", prefix + "-c");
        createTopics(bootstrap, topics, parts);
        List<TopicPartition> tps = partitions(topics, parts);
        // Which transactions wrote to each partition: each leaves one marker there.
        Map<TopicPartition, Set<String>> txnsIn = new HashMap<>();
        try (Admin admin = admin(bootstrap);
             KafkaProducer<byte[], byte[]> producer = txnProducer(bootstrap, prefix + "-tx", 60_000)) {
            producer.initTransactions();
            String[] names = {"c1", "a2", "c3"};
            for (String name : names) {
                producer.beginTransaction();
                for (int i = 0; i < count; i++) {
                    for (String t : topics) {
                        int p = i % parts;
                        producer.send(new ProducerRecord<>(t, p, bytes("k" + i), bytes(name + "-" + i)));
                        txnsIn.computeIfAbsent(new TopicPartition(t, p), k -> new HashSet<>()).add(name);
                    }
                }
                producer.flush();
                Map<TopicPartition, Long> lso = latest(admin, tps, IsolationLevel.READ_COMMITTED);
                Map<TopicPartition, Long> hw = latest(admin, tps, IsolationLevel.READ_UNCOMMITTED);
                for (TopicPartition tp : tps) {
                    if (lso.get(tp) >= hw.get(tp)) {
                        throw new Main.Mismatch(name + " open: " + tp + " LSO " + lso.get(tp) + " not below HW " + hw.get(tp));
                    }
                }
                checkNothingVisible(bootstrap, tps, lso, name);
                if (name.startsWith("c")) {
                    producer.commitTransaction();
                } else {
                    producer.abortTransaction();
                }
                Map<TopicPartition, Long> after = stableEnds(admin, tps);
                for (TopicPartition tp : tps) {
                    if (after.get(tp) <= hw.get(tp)) {
                        throw new Main.Mismatch(name + " ended without a marker in " + tp + ": HW " + after.get(tp));
                    }
                }
                System.out.println("txn " + name + " ended; LSO = HW = " + new TreeMap<>(stringKeys(after)));
            }
            Map<TopicPartition, Long> ends = stableEnds(admin, tps);
            var committed = readToEnd(bootstrap, "read_committed", tps, ends);
            var uncommitted = readToEnd(bootstrap, "read_uncommitted", tps, ends);
            for (TopicPartition tp : tps) {
                List<String> want = new ArrayList<>();
                List<String> wantAll = new ArrayList<>();
                for (String name : names) {
                    for (int i = tp.partition(); i < count; i += parts) {
                        wantAll.add(name + "-" + i);
                        if (name.startsWith("c")) {
                            want.add(name + "-" + i);
                        }
                    }
                }
                List<String> got = committed.get(tp).stream().map(r -> text(r.value())).toList();
                if (!got.equals(want)) {
                    throw new Main.Mismatch(tp + " read_committed got " + got.size() + " records, want " + want.size()
                            + (got.size() < 5 ? " " + got : ""));
                }
                List<String> all = uncommitted.get(tp).stream().map(r -> text(r.value())).toList();
                if (!all.equals(wantAll)) {
                    throw new Main.Mismatch(tp + " read_uncommitted got " + all.size() + " records, want " + wantAll.size());
                }
                long markers = ends.get(tp) - all.size();
                if (markers != txnsIn.get(tp).size()) {
                    throw new Main.Mismatch(tp + ": " + markers + " offsets without a record, want one marker per transaction ("
                            + txnsIn.get(tp).size() + ")");
                }
            }
            System.out.println("ok visibility partitions=" + tps.size() + " records=" + count * 3 * topics.size());
        }
    }

    private static Map<String, Long> stringKeys(Map<TopicPartition, Long> m) {
        Map<String, Long> out = new HashMap<>();
        m.forEach((k, v) -> out.put(k.toString(), v));
        return out;
    }

    /** A read_committed consumer of an open transaction gets nothing beyond the LSO. */
    private static void checkNothingVisible(String bootstrap, List<TopicPartition> tps, Map<TopicPartition, Long> lso, String name)
            throws Exception {
        try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap, "read_committed", null)) {
            c.assign(tps);
            c.seekToBeginning(tps);
            // A bounded look for records that must not exist: two full polls past the LSO.
            for (int i = 0; i < 2; i++) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) {
                    if (text(r.value()).startsWith(name + "-")) {
                        throw new Main.Mismatch("read_committed saw " + text(r.value()) + " of the open transaction at "
                                + r.topic() + "-" + r.partition() + "@" + r.offset());
                    }
                }
            }
            for (TopicPartition tp : tps) {
                if (c.position(tp) > lso.get(tp)) {
                    throw new Main.Mismatch(tp + " read_committed position " + c.position(tp) + " past the LSO " + lso.get(tp));
                }
            }
        }
    }

    // ------------------------------------------------------------------ txn-fence

    private static void fence(Map<String, String> opts) throws Exception {
        String bootstrap = Main.req(opts, "bootstrap");
        String topic = Main.req(opts, "topic");
        createTopics(bootstrap, List.of(topic), 1);
        String txnId = topic + "-tx";
        TopicPartition tp = new TopicPartition(topic, 0);
        KafkaProducer<byte[], byte[]> zombie = txnProducer(bootstrap, txnId, 60_000);
        zombie.initTransactions();
        zombie.beginTransaction();
        for (int i = 0; i < 10; i++) {
            zombie.send(new ProducerRecord<>(topic, 0, null, bytes("zombie-" + i)));
        }
        zombie.flush();
        try (KafkaProducer<byte[], byte[]> next = txnProducer(bootstrap, txnId, 60_000)) {
            long t0 = System.nanoTime();
            next.initTransactions();
            System.out.printf("second producer initialised in %d ms%n", (System.nanoTime() - t0) / 1_000_000);
            String fencedBy = "nothing";
            try {
                zombie.commitTransaction();
            } catch (ProducerFencedException e) {
                fencedBy = e.getClass().getSimpleName();
            } catch (Exception e) {
                throw new Main.Mismatch("zombie commit failed with " + e + ", want ProducerFencedException");
            }
            if (!fencedBy.equals("ProducerFencedException")) {
                throw new Main.Mismatch("zombie commit was not fenced: " + fencedBy);
            }
            System.out.println("zombie commit: " + fencedBy);
            zombie.close(Duration.ZERO);
            next.beginTransaction();
            for (int i = 0; i < 5; i++) {
                next.send(new ProducerRecord<>(topic, 0, null, bytes("next-" + i)));
            }
            next.commitTransaction();
        }
        try (Admin admin = admin(bootstrap)) {
            Map<TopicPartition, Long> ends = stableEnds(admin, List.of(tp));
            List<String> got = readToEnd(bootstrap, "read_committed", List.of(tp), ends).get(tp).stream().map(r -> text(r.value())).toList();
            List<String> want = List.of("next-0", "next-1", "next-2", "next-3", "next-4");
            if (!got.equals(want)) {
                throw new Main.Mismatch("read_committed saw " + got + ", want " + want);
            }
            List<String> all = readToEnd(bootstrap, "read_uncommitted", List.of(tp), ends).get(tp).stream().map(r -> text(r.value())).toList();
            if (all.size() != 15) {
                throw new Main.Mismatch("read_uncommitted saw " + all.size() + " records, want 15 (10 aborted, 5 committed)");
            }
        }
        System.out.println("ok fence");
    }

    // ------------------------------------------------------------------ txn-ctp

    private static void consumeTransformProduce(Map<String, String> opts) throws Exception {
        String bootstrap = Main.req(opts, "bootstrap");
        String input = Main.req(opts, "input");
        String output = Main.req(opts, "output");
        String group = Main.req(opts, "group");
        int count = Integer.parseInt(opts.getOrDefault("count", "2000"));
        int abortEvery = Integer.parseInt(opts.getOrDefault("abort-every", "4"));
        int parts = 3;
        createTopics(bootstrap, List.of(input, output), parts);
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> plain = new KafkaProducer<>(pp)) {
            for (int i = 0; i < count; i++) {
                plain.send(new ProducerRecord<>(input, i % parts, bytes("k" + i), bytes(Integer.toString(i))));
            }
            plain.flush();
        }
        List<TopicPartition> in = partitions(List.of(input), parts);
        Map<TopicPartition, Long> inputEnds;
        try (Admin admin = admin(bootstrap)) {
            inputEnds = latest(admin, in, IsolationLevel.READ_UNCOMMITTED);
        }
        int batches = 0;
        int aborted = 0;
        int failed = 0;
        long deadline = System.nanoTime() + DEADLINE.toNanos();
        int maxPollRecords = Integer.parseInt(opts.getOrDefault("max-poll-records", "500"));
        try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap, "read_committed", group, maxPollRecords);
             KafkaProducer<byte[], byte[]> p = txnProducer(bootstrap, group + "-tx", 60_000)) {
            p.initTransactions();
            c.subscribe(List.of(input));
            while (true) {
                if (System.nanoTime() > deadline) {
                    throw new Main.Mismatch("the group's offsets never reached the input's end " + inputEnds);
                }
                ConsumerRecords<byte[], byte[]> records = c.poll(POLL);
                if (records.isEmpty()) {
                    if (reached(c, inputEnds)) {
                        break;
                    }
                    continue;
                }
                batches++;
                boolean abort = abortEvery > 0 && batches % abortEvery == 0;
                try {
                    p.beginTransaction();
                    Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
                    for (ConsumerRecord<byte[], byte[]> r : records) {
                        p.send(new ProducerRecord<>(output, r.partition(), r.key(), bytes("out-" + text(r.value()))));
                        next.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    }
                    p.sendOffsetsToTransaction(next, c.groupMetadata());
                    if (abort) {
                        p.abortTransaction();
                        aborted++;
                        // The aborted batch is consumed again from the last committed offsets.
                        rewind(c);
                    } else {
                        commitRetryingTimeouts(p);
                        System.out.println("COMMITTED " + batches);
                    }
                } catch (ProducerFencedException e) {
                    throw e;
                } catch (org.apache.kafka.common.KafkaException e) {
                    // A broker restart or a rebalance: abort, then go on from the committed offsets.
                    failed++;
                    System.out.println("TXN-FAILED " + e);
                    p.abortTransaction();
                    rewind(c);
                }
                System.out.flush();
            }
        }
        System.out.println("processed batches=" + batches + " aborted=" + aborted + " failed=" + failed);
        try (Admin admin = admin(bootstrap)) {
            List<TopicPartition> out = partitions(List.of(output), parts);
            Map<TopicPartition, Long> ends = stableEnds(admin, out);
            var records = readToEnd(bootstrap, "read_committed", out, ends);
            Map<String, Integer> seen = new HashMap<>();
            records.values().forEach(list -> list.forEach(r -> seen.merge(text(r.value()), 1, Integer::sum)));
            for (int i = 0; i < count; i++) {
                Integer n = seen.remove("out-" + i);
                if (n == null || n != 1) {
                    throw new Main.Mismatch("output holds out-" + i + " " + (n == null ? 0 : n) + " times");
                }
            }
            if (!seen.isEmpty()) {
                throw new Main.Mismatch("unexpected output records " + seen.keySet());
            }
            Map<TopicPartition, Long> inEnds = latest(admin, in, IsolationLevel.READ_UNCOMMITTED);
            // The group's offsets become committed with the marker on __consumer_offsets.
            var offsets = admin.listConsumerGroupOffsets(group, new org.apache.kafka.clients.admin.ListConsumerGroupOffsetsOptions().requireStable(true)).partitionsToOffsetAndMetadata().get(DEADLINE.toMillis(), TimeUnit.MILLISECONDS);
            for (TopicPartition tp : in) {
                OffsetAndMetadata om = offsets.get(tp);
                if (om == null || om.offset() != inEnds.get(tp)) {
                    throw new Main.Mismatch(tp + " committed " + om + ", want the input's end " + inEnds.get(tp));
                }
            }
        }
        System.out.println("ok ctp records=" + count);
    }

    /** commitTransaction may time out while the broker restarts; it must then be retried. */
    private static void commitRetryingTimeouts(KafkaProducer<byte[], byte[]> p) {
        for (int attempt = 0; ; attempt++) {
            try {
                p.commitTransaction();
                return;
            } catch (org.apache.kafka.common.errors.TimeoutException e) {
                if (attempt >= 5) {
                    throw e;
                }
                System.out.println("COMMIT-TIMEOUT retrying");
            }
        }
    }

    /** Seeks every assigned partition back to its committed offset (or the beginning). */
    private static void rewind(KafkaConsumer<byte[], byte[]> c) {
        Set<TopicPartition> assigned = c.assignment();
        Map<TopicPartition, OffsetAndMetadata> committed = c.committed(assigned);
        for (TopicPartition tp : assigned) {
            OffsetAndMetadata om = committed.get(tp);
            if (om == null) {
                c.seekToBeginning(List.of(tp));
            } else {
                c.seek(tp, om.offset());
            }
        }
    }

    /** Whether the group's committed offsets reached `ends` on every partition. */
    private static boolean reached(KafkaConsumer<byte[], byte[]> c, Map<TopicPartition, Long> ends) {
        Map<TopicPartition, OffsetAndMetadata> committed = c.committed(ends.keySet());
        for (var e : ends.entrySet()) {
            OffsetAndMetadata om = committed.get(e.getKey());
            long at = om == null ? 0 : om.offset();
            if (at < e.getValue()) {
                return false;
            }
        }
        return true;
    }

    // ------------------------------------------------------------------ txn-epochs

    /** The finalized level of transaction.version (0 when not finalized). */
    private static short finalizedTransactionVersion(Admin admin) throws Exception {
        var features = admin.describeFeatures().featureMetadata().get(DEADLINE.toMillis(), TimeUnit.MILLISECONDS);
        var range = features.finalizedFeatures().get("transaction.version");
        return range == null ? 0 : range.maxVersionLevel();
    }

    /** The coordinator's producer id and epoch for `txnId` (DescribeTransactions). */
    private static org.apache.kafka.clients.admin.TransactionDescription describeTxn(Admin admin, String txnId) throws Exception {
        return admin.describeTransactions(List.of(txnId)).description(txnId).get(DEADLINE.toMillis(), TimeUnit.MILLISECONDS);
    }

    /** The epoch `tp`'s producer state holds for `producerId` (DescribeProducers). */
    private static int partitionEpoch(Admin admin, TopicPartition tp, long producerId) throws Exception {
        var producers = admin.describeProducers(List.of(tp)).partitionResult(tp).get(DEADLINE.toMillis(), TimeUnit.MILLISECONDS);
        return producers.activeProducers().stream().filter(p -> p.producerId() == producerId)
                .mapToInt(org.apache.kafka.clients.admin.ProducerState::producerEpoch).findFirst()
                .orElseThrow(() -> new Main.Mismatch(tp + " has no state for producer " + producerId));
    }

    private static void epochs(Map<String, String> opts) throws Exception {
        String bootstrap = Main.req(opts, "bootstrap");
        String topic = Main.req(opts, "topic");
        int expectVersion = Integer.parseInt(Main.req(opts, "expect-version"));
        int rounds = Integer.parseInt(opts.getOrDefault("rounds", "6"));
        createTopics(bootstrap, List.of(topic), 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        String txnId = topic + "-tx";
        try (Admin admin = admin(bootstrap)) {
            short level = finalizedTransactionVersion(admin);
            System.out.println("finalized transaction.version=" + level);
            if (level != expectVersion) {
                throw new Main.Mismatch("transaction.version is finalized at " + level + ", want " + expectVersion);
            }
            boolean bumps = level >= 2;
            List<String> committed = new ArrayList<>();
            try (KafkaProducer<byte[], byte[]> producer = txnProducer(bootstrap, txnId, 60_000)) {
                producer.initTransactions();
                var initial = describeTxn(admin, txnId);
                long producerId = initial.producerId();
                int epoch = initial.producerEpoch();
                System.out.println("initialised producer " + producerId + " at epoch " + epoch);
                for (int round = 0; round < rounds; round++) {
                    boolean commit = round % 2 == 0;
                    producer.beginTransaction();
                    for (int i = 0; i < 5; i++) {
                        String v = "r" + round + "-" + i;
                        producer.send(new ProducerRecord<>(topic, 0, null, bytes(v)));
                        if (commit) {
                            committed.add(v);
                        }
                    }
                    producer.flush();
                    var open = describeTxn(admin, txnId);
                    if (open.producerEpoch() != epoch || open.producerId() != producerId) {
                        throw new Main.Mismatch("round " + round + ": the open transaction runs at " + open.producerId() + "/"
                                + open.producerEpoch() + ", want " + producerId + "/" + epoch);
                    }
                    if (commit) {
                        producer.commitTransaction();
                    } else {
                        producer.abortTransaction();
                    }
                    stableEnds(admin, List.of(tp));
                    var ended = describeTxn(admin, txnId);
                    int want = bumps ? epoch + 1 : epoch;
                    if (ended.producerId() != producerId || ended.producerEpoch() != want) {
                        throw new Main.Mismatch("round " + round + " (" + (commit ? "commit" : "abort") + "): coordinator at "
                                + ended.producerId() + "/" + ended.producerEpoch() + ", want " + producerId + "/" + want);
                    }
                    int marker = partitionEpoch(admin, tp, producerId);
                    if (marker != want) {
                        throw new Main.Mismatch("round " + round + ": the partition's last epoch of producer " + producerId + " is "
                                + marker + ", want " + want + " (the marker's)");
                    }
                    System.out.println("round " + round + " " + (commit ? "commit" : "abort") + ": epoch " + epoch + " -> "
                            + ended.producerEpoch() + " (" + ended.state() + "), partition epoch " + marker);
                    epoch = want;
                }
            }
            Map<TopicPartition, Long> ends = stableEnds(admin, List.of(tp));
            List<String> got = readToEnd(bootstrap, "read_committed", List.of(tp), ends).get(tp).stream().map(r -> text(r.value())).toList();
            if (!got.equals(committed)) {
                throw new Main.Mismatch("read_committed saw " + got.size() + " records, want the " + committed.size() + " committed");
            }
            System.out.println("ok epochs version=" + level + " rounds=" + rounds);
        }
    }

    // ------------------------------------------------------------------ helpers for the harness

    private static void open(Map<String, String> opts) throws Exception {
        String bootstrap = Main.req(opts, "bootstrap");
        String topic = Main.req(opts, "topic");
        int timeoutMs = Integer.parseInt(opts.getOrDefault("timeout-ms", "60000"));
        createTopics(bootstrap, List.of(topic), 1);
        KafkaProducer<byte[], byte[]> p = txnProducer(bootstrap, topic + "-tx", timeoutMs);
        p.initTransactions();
        p.beginTransaction();
        for (int i = 0; i < 20; i++) {
            p.send(new ProducerRecord<>(topic, 0, null, bytes("open-" + i)));
        }
        p.flush();
        System.out.println("OPEN");
        System.out.flush();
        try {
            while (System.in.read() >= 0) {
                // Held open until stdin closes or the process is killed.
            }
        } catch (IOException e) {
            // stdin gone: same as EOF
        }
        p.close(Duration.ZERO);
    }

    private static void printOffsets(Map<String, String> opts) throws Exception {
        String bootstrap = Main.req(opts, "bootstrap");
        String topic = Main.req(opts, "topic");
        int parts = Integer.parseInt(opts.getOrDefault("partitions", "1"));
        List<TopicPartition> tps = partitions(List.of(topic), parts);
        try (Admin admin = admin(bootstrap)) {
            Map<TopicPartition, Long> lso = latest(admin, tps, IsolationLevel.READ_COMMITTED);
            Map<TopicPartition, Long> hw = latest(admin, tps, IsolationLevel.READ_UNCOMMITTED);
            for (TopicPartition tp : tps) {
                System.out.println(tp.partition() + " lso=" + lso.get(tp) + " hw=" + hw.get(tp));
            }
        }
    }

    private static void count(Map<String, String> opts) throws Exception {
        String bootstrap = Main.req(opts, "bootstrap");
        String topic = Main.req(opts, "topic");
        String isolation = opts.getOrDefault("isolation", "read_committed");
        int parts = Integer.parseInt(opts.getOrDefault("partitions", "1"));
        List<TopicPartition> tps = partitions(List.of(topic), parts);
        try (Admin admin = admin(bootstrap)) {
            IsolationLevel level = isolation.equals("read_committed") ? IsolationLevel.READ_COMMITTED : IsolationLevel.READ_UNCOMMITTED;
            Map<TopicPartition, Long> ends = latest(admin, tps, level);
            var records = readToEnd(bootstrap, isolation, tps, ends);
            System.out.println("count=" + records.values().stream().mapToInt(List::size).sum());
        }
    }
}
