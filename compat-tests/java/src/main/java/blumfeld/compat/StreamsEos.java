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
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ListConsumerGroupOffsetsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * Kafka Streams with {@code processing.guarantee=exactly_once_v2} (issue 11): a stateful
 * topology with a repartition step and a changelogged KTable, checked for exactly-once output.
 *
 * <pre>
 *   streams-setup   creates the input and output topics and writes records 0..count-1
 *                   (key "r{i}", value "{i}", partition i % partitions)
 *   streams-app     the application: input -> groupBy("g{i % groups}") (repartition topic
 *                   by-group) -> aggregate into the KTable "totals" (value "count:sum:lastId",
 *                   changelogged) -> output, caching off so every input yields one update.
 *                   Prints RUNNING on each move to RUNNING, PROCESSED n every 200 inputs,
 *                   TASKS a,b,... whenever the instance's active tasks change, and
 *                   CAUGHT-UP once the application's committed offsets (require_stable) reach
 *                   the input's end and then the repartition topic's; then closes cleanly and
 *                   exits 0. Stdin EOF closes too.
 *   streams-verify  reads the output read_committed and checks each input's effect is in it
 *                   exactly once, the final totals per key, the committed offsets and the
 *                   internal topics (changelog compacted, repartition purged by DeleteRecords)
 * </pre>
 */
final class StreamsEos {
    private static final Duration DEADLINE = Duration.ofSeconds(120);
    private static final String REPARTITION = "by-group";
    private static final String STORE = "totals";

    private StreamsEos() {}

    static void run(String cmd, Map<String, String> opts) throws Exception {
        switch (cmd) {
            case "streams-setup" -> setup(opts);
            case "streams-app" -> app(opts);
            case "streams-verify" -> verify(opts);
            default -> throw new Main.Mismatch("unknown command " + cmd);
        }
    }

    private static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) DEADLINE.toMillis());
        return Admin.create(p);
    }

    private static List<TopicPartition> partitions(String topic, int n) {
        List<TopicPartition> out = new ArrayList<>();
        for (int p = 0; p < n; p++) {
            out.add(new TopicPartition(topic, p));
        }
        return out;
    }

    private static Map<TopicPartition, Long> ends(Admin admin, List<TopicPartition> tps, IsolationLevel level,
            boolean earliest) throws Exception {
        return ends(admin, tps, level, earliest, DEADLINE);
    }

    private static Map<TopicPartition, Long> ends(Admin admin, List<TopicPartition> tps, IsolationLevel level,
            boolean earliest, Duration wait) throws Exception {
        Map<TopicPartition, OffsetSpec> spec = new HashMap<>();
        tps.forEach(tp -> spec.put(tp, earliest ? OffsetSpec.earliest() : OffsetSpec.latest()));
        var result = admin.listOffsets(spec, new org.apache.kafka.clients.admin.ListOffsetsOptions(level)).all()
                .get(wait.toMillis(), TimeUnit.MILLISECONDS);
        Map<TopicPartition, Long> out = new HashMap<>();
        result.forEach((tp, info) -> out.put(tp, info.offset()));
        return out;
    }

    // ------------------------------------------------------------------ streams-setup

    private static void setup(Map<String, String> opts) throws Exception {
        String bootstrap = Main.req(opts, "bootstrap");
        String input = Main.req(opts, "input");
        String output = Main.req(opts, "output");
        int parts = Integer.parseInt(opts.getOrDefault("partitions", "3"));
        int count = Integer.parseInt(Main.req(opts, "count"));
        try (Admin admin = admin(bootstrap)) {
            try {
                admin.createTopics(List.of(new NewTopic(input, parts, (short) 1), new NewTopic(output, parts, (short) 1)))
                        .all().get(DEADLINE.toMillis(), TimeUnit.MILLISECONDS);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
        }
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            for (int i = 0; i < count; i++) {
                producer.send(new ProducerRecord<>(input, i % parts, "r" + i, Integer.toString(i)));
            }
            producer.flush();
        }
        System.out.println("produced " + count + " to " + input);
    }

    // ------------------------------------------------------------------ streams-app

    /** "count:sum:lastId" plus one input id; a value the topology did not write is a bug. */
    static String add(String agg, long id) {
        String[] f = agg.split(":");
        if (f.length != 3) {
            throw new IllegalStateException("aggregate " + agg + " is not count:sum:lastId");
        }
        return (Long.parseLong(f[0]) + 1) + ":" + (Long.parseLong(f[1]) + id) + ":" + id;
    }

    private static void app(Map<String, String> opts) throws Exception {
        String bootstrap = Main.req(opts, "bootstrap");
        String appId = Main.req(opts, "app-id");
        String input = Main.req(opts, "input");
        String output = Main.req(opts, "output");
        String stateDir = Main.req(opts, "state-dir");
        int parts = Integer.parseInt(opts.getOrDefault("partitions", "3"));
        int groups = Integer.parseInt(opts.getOrDefault("groups", "7"));
        int threads = Integer.parseInt(opts.getOrDefault("threads", "2"));
        // Inputs per second through the topology (0: unthrottled), so a run lasts long enough
        // for the test to kill things in the middle of it.
        int rate = Integer.parseInt(opts.getOrDefault("rate", "0"));
        int txnTimeoutMs = Integer.parseInt(opts.getOrDefault("txn-timeout-ms", "10000"));

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 1000);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 6000);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1000);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), 100);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG), txnTimeoutMs);

        StreamsBuilder builder = new StreamsBuilder();
        AtomicLong processed = new AtomicLong();
        // The pace counts from the first input, not from the start (rebalance and restore).
        AtomicLong firstNanos = new AtomicLong();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .peek((k, v) -> {
                    long n = processed.incrementAndGet();
                    if (n % 200 == 0) {
                        System.out.println("PROCESSED " + n);
                        System.out.flush();
                    }
                    if (rate > 0) {
                        firstNanos.compareAndSet(0, System.nanoTime());
                        long waitNanos = firstNanos.get() + n * 1_000_000_000L / rate - System.nanoTime();
                        if (waitNanos > 0) {
                            try {
                                Thread.sleep(waitNanos / 1_000_000, (int) (waitNanos % 1_000_000));
                            } catch (InterruptedException e) {
                                Thread.currentThread().interrupt();
                            }
                        }
                    }
                })
                .groupBy((k, v) -> "g" + (Long.parseLong(v) % groups), Grouped.with(REPARTITION, Serdes.String(), Serdes.String()))
                .aggregate(() -> "0:0:-1", (k, v, agg) -> add(agg, Long.parseLong(v)),
                        Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as(STORE)
                                .withKeySerde(Serdes.String()).withValueSerde(Serdes.String()))
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.String()));

        Map<TopicPartition, Long> inputEnds;
        try (Admin admin = admin(bootstrap)) {
            inputEnds = ends(admin, partitions(input, parts), IsolationLevel.READ_UNCOMMITTED, false);
        }
        CountDownLatch done = new CountDownLatch(1);
        try (KafkaStreams streams = new KafkaStreams(builder.build(), p)) {
            streams.setStateListener((now, before) -> {
                System.out.println("STATE " + before + " -> " + now);
                if (now == KafkaStreams.State.RUNNING) {
                    System.out.println("RUNNING");
                }
                if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.PENDING_ERROR) {
                    done.countDown();
                }
                System.out.flush();
            });
            streams.setUncaughtExceptionHandler(e -> {
                System.out.println("THREAD-FAILED " + e);
                e.printStackTrace();
                System.out.flush();
                return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
            });
            Thread stdin = new Thread(() -> {
                try {
                    while (System.in.read() >= 0) {
                        // Runs until stdin closes (or the caught-up check ends it).
                    }
                } catch (IOException e) {
                    // stdin gone: same as EOF
                }
                done.countDown();
            }, "stdin-eof");
            stdin.setDaemon(true);
            stdin.start();
            streams.start();
            try (Admin admin = admin(bootstrap)) {
                String tasks = "";
                long nextCheck = 0;
                while (!done.await(100, TimeUnit.MILLISECONDS)) {
                    String now = activeTasks(streams);
                    if (!now.equals(tasks)) {
                        tasks = now;
                        System.out.println("TASKS " + tasks);
                        System.out.flush();
                    }
                    if (System.nanoTime() < nextCheck) {
                        continue;
                    }
                    nextCheck = System.nanoTime() + 500_000_000L;
                    if (caughtUp(admin, appId, inputEnds, parts)) {
                        System.out.println("CAUGHT-UP processed=" + processed.get());
                        break;
                    }
                }
            }
            KafkaStreams.State state = streams.state();
            boolean closed = streams.close(Duration.ofSeconds(60));
            System.out.println("CLOSED " + closed + " state=" + state + " processed=" + processed.get());
            if (state == KafkaStreams.State.ERROR || state == KafkaStreams.State.PENDING_ERROR) {
                throw new Main.Mismatch("the application failed: state " + state);
            }
        }
    }

    /** This instance's active tasks, sorted, comma-separated ("0_0,1_2"). */
    private static String activeTasks(KafkaStreams streams) {
        Set<String> out = new java.util.TreeSet<>();
        for (var thread : streams.metadataForLocalThreads()) {
            thread.activeTasks().forEach(t -> out.add(t.taskId().toString()));
        }
        return String.join(",", out);
    }

    /**
     * Whether the application is done: its committed (stable) offsets reached the input's end,
     * and after that the repartition topic's stable end too (the input's last transaction wrote
     * the last repartition records, so a repartition end read afterwards is final).
     */
    private static boolean caughtUp(Admin admin, String appId, Map<TopicPartition, Long> inputEnds, int parts) {
        try {
            if (!reached(admin, appId, inputEnds)) {
                return false;
            }
            List<TopicPartition> rp = partitions(appId + "-" + REPARTITION + "-repartition", parts);
            return reached(admin, appId, ends(admin, rp, IsolationLevel.READ_COMMITTED, false, Duration.ofSeconds(5)));
        } catch (Exception e) {
            // The broker restarting or the offsets not stable yet: not caught up so far.
            return false;
        }
    }

    private static boolean reached(Admin admin, String group, Map<TopicPartition, Long> ends) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group,
                new ListConsumerGroupOffsetsOptions().requireStable(true)).partitionsToOffsetAndMetadata()
                .get(5, TimeUnit.SECONDS);
        for (var e : ends.entrySet()) {
            OffsetAndMetadata om = committed.get(e.getKey());
            long at = om == null ? 0 : om.offset();
            if (at < e.getValue()) {
                return false;
            }
        }
        return true;
    }

    // ------------------------------------------------------------------ streams-verify

    private static void verify(Map<String, String> opts) throws Exception {
        String bootstrap = Main.req(opts, "bootstrap");
        String appId = Main.req(opts, "app-id");
        String input = Main.req(opts, "input");
        String output = Main.req(opts, "output");
        int parts = Integer.parseInt(opts.getOrDefault("partitions", "3"));
        int groups = Integer.parseInt(opts.getOrDefault("groups", "7"));
        int count = Integer.parseInt(Main.req(opts, "count"));
        String changelog = appId + "-" + STORE + "-changelog";
        String repartition = appId + "-" + REPARTITION + "-repartition";
        try (Admin admin = admin(bootstrap)) {
            List<TopicPartition> out = partitions(output, parts);
            Map<TopicPartition, Long> stable = ends(admin, out, IsolationLevel.READ_COMMITTED, false);
            List<ConsumerRecord<String, String>> records = readToEnd(bootstrap, out, stable);
            // Per key, in offset order: counts 1, 2, 3, ... with the sum growing by the input id.
            Map<String, long[]> last = new TreeMap<>();
            Set<Long> seen = new HashSet<>();
            for (ConsumerRecord<String, String> r : records) {
                String[] f = r.value().split(":");
                if (f.length != 3) {
                    throw new Main.Mismatch("output " + r.topic() + "-" + r.partition() + "@" + r.offset()
                            + " holds " + r.value());
                }
                long cnt = Long.parseLong(f[0]);
                long sum = Long.parseLong(f[1]);
                long id = Long.parseLong(f[2]);
                long[] prev = last.getOrDefault(r.key(), new long[] {0, 0});
                if (cnt != prev[0] + 1 || sum != prev[1] + id) {
                    throw new Main.Mismatch("key " + r.key() + " at offset " + r.offset() + ": " + r.value()
                            + " after count " + prev[0] + " sum " + prev[1] + " (an input counted twice or lost)");
                }
                if (!r.key().equals("g" + (id % groups)) || id < 0 || id >= count) {
                    throw new Main.Mismatch("input " + id + " under key " + r.key());
                }
                if (!seen.add(id)) {
                    throw new Main.Mismatch("input " + id + " has two output records");
                }
                last.put(r.key(), new long[] {cnt, sum});
            }
            if (seen.size() != count) {
                throw new Main.Mismatch("output holds " + seen.size() + " inputs' updates of " + count);
            }
            for (int g = 0; g < groups; g++) {
                long wantCount = 0;
                long wantSum = 0;
                for (long i = g; i < count; i += groups) {
                    wantCount++;
                    wantSum += i;
                }
                long[] got = last.getOrDefault("g" + g, new long[] {0, 0});
                if (got[0] != wantCount || got[1] != wantSum) {
                    throw new Main.Mismatch("g" + g + ": count " + got[0] + " sum " + got[1] + ", want " + wantCount
                            + " " + wantSum);
                }
                System.out.println("total g" + g + " count=" + got[0] + " sum=" + got[1]);
            }
            List<TopicPartition> in = partitions(input, parts);
            Map<TopicPartition, Long> inEnds = ends(admin, in, IsolationLevel.READ_UNCOMMITTED, false);
            var offsets = admin.listConsumerGroupOffsets(appId, new ListConsumerGroupOffsetsOptions().requireStable(true))
                    .partitionsToOffsetAndMetadata().get(DEADLINE.toMillis(), TimeUnit.MILLISECONDS);
            for (TopicPartition tp : in) {
                OffsetAndMetadata om = offsets.get(tp);
                if (om == null || om.offset() != inEnds.get(tp)) {
                    throw new Main.Mismatch(tp + " committed " + om + ", want the input's end " + inEnds.get(tp));
                }
            }
            System.out.println("committed offsets at the input's end " + new TreeMap<>(inEnds.entrySet().stream()
                    .collect(java.util.stream.Collectors.toMap(e -> e.getKey().toString(), Map.Entry::getValue))));
            ConfigResource cl = new ConfigResource(ConfigResource.Type.TOPIC, changelog);
            Config config = admin.describeConfigs(List.of(cl)).all().get(DEADLINE.toMillis(), TimeUnit.MILLISECONDS).get(cl);
            String policy = config.get("cleanup.policy") == null ? null : config.get("cleanup.policy").value();
            if (!"compact".equals(policy)) {
                throw new Main.Mismatch(changelog + " cleanup.policy=" + policy + ", want compact");
            }
            // The changelog's last committed value per key is the final total (what a restore loads).
            List<TopicPartition> clp = partitions(changelog, parts);
            Map<String, String> table = new TreeMap<>();
            readToEnd(bootstrap, clp, ends(admin, clp, IsolationLevel.READ_COMMITTED, false))
                    .forEach(r -> table.put(r.key(), r.value()));
            for (var e : last.entrySet()) {
                String want = e.getValue()[0] + ":" + e.getValue()[1] + ":";
                String got = table.get(e.getKey());
                if (got == null || !got.startsWith(want)) {
                    throw new Main.Mismatch(changelog + " holds " + e.getKey() + "=" + got + ", want " + want + "*");
                }
            }
            System.out.println(changelog + " holds the final totals of " + table.size() + " keys");
            List<TopicPartition> rp = partitions(repartition, parts);
            Map<TopicPartition, Long> starts = ends(admin, rp, IsolationLevel.READ_UNCOMMITTED, true);
            long purged = starts.values().stream().mapToLong(Long::longValue).sum();
            System.out.println(repartition + " log start offsets " + purged + " in all (DeleteRecords)");
            if (purged == 0) {
                throw new Main.Mismatch(repartition + " was never purged");
            }
        }
        System.out.println("ok streams records=" + count);
    }

    private static List<ConsumerRecord<String, String>> readToEnd(String bootstrap, List<TopicPartition> tps,
            Map<TopicPartition, Long> ends) throws Main.Mismatch {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, org.apache.kafka.common.serialization.StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, org.apache.kafka.common.serialization.StringDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        List<ConsumerRecord<String, String>> out = new ArrayList<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.nanoTime() + DEADLINE.toNanos();
            while (true) {
                boolean done = true;
                for (TopicPartition tp : tps) {
                    done &= c.position(tp) >= ends.get(tp);
                }
                if (done) {
                    break;
                }
                if (System.nanoTime() > deadline) {
                    throw new Main.Mismatch("output not read to its stable end " + ends);
                }
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    out.add(r);
                }
            }
        }
        return out;
    }
}
