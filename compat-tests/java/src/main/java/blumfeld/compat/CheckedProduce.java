package blumfeld.compat;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The Java producer of the replication fault checker (compat-tests/tests/test_replication.py):
 * idempotent, acks=all, values "j0", "j1", ... (keyed by the same string), sent until stdin
 * closes. Every outcome is one line on stdout, for the checker to record:
 *
 *   ack VALUE PARTITION OFFSET
 *   err VALUE MESSAGE
 *   done SENT
 *
 * At most --max-in-flight records are outstanding at a time, so a broker that stops answering
 * slows the producer down instead of filling its buffer.
 */
final class CheckedProduce {
    private CheckedProduce() {}

    static void run(Map<String, String> opts) throws Exception {
        String bootstrap = Main.req(opts, "bootstrap");
        String topic = Main.req(opts, "topic");
        int maxInFlight = Integer.parseInt(opts.getOrDefault("max-in-flight", "20000"));
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        PrintStream out = new PrintStream(new BufferedOutputStream(System.out, 1 << 16), false, StandardCharsets.UTF_8);
        AtomicBoolean stop = new AtomicBoolean();
        Thread stdin = new Thread(() -> {
            try {
                while (System.in.read() >= 0) {
                    // Anything on stdin is ignored: its end is the signal.
                }
            } catch (IOException e) {
                // The end of stdin either way.
            }
            stop.set(true);
        }, "stdin-watch");
        stdin.setDaemon(true);
        stdin.start();
        java.util.concurrent.Semaphore window = new java.util.concurrent.Semaphore(maxInFlight);
        long sent = 0;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            while (!stop.get()) {
                if (!window.tryAcquire(50, java.util.concurrent.TimeUnit.MILLISECONDS)) {
                    synchronized (out) {
                        out.flush();
                    }
                    continue;
                }
                String value = "j" + sent;
                byte[] bytes = value.getBytes(StandardCharsets.UTF_8);
                producer.send(new ProducerRecord<>(topic, bytes, bytes), (md, e) -> {
                    synchronized (out) {
                        if (e != null) {
                            out.println("err " + value + " " + e.toString().replace('\n', ' '));
                        } else {
                            out.println("ack " + value + " " + md.partition() + " " + md.offset());
                        }
                    }
                    window.release();
                });
                sent++;
                if (sent % 1000 == 0 || window.availablePermits() == 0) {
                    synchronized (out) {
                        out.flush();
                    }
                }
            }
            producer.flush();
        }
        synchronized (out) {
            out.println("done " + sent);
            out.flush();
        }
    }
}
