// Command compat-go is the franz-go compatibility driver of Blumfeld's compat-tests.
//
// Subcommands mirror the Java driver: roundtrip, create-topic, idempotent-produce, group-consume,
// txn-ctp (consume-transform-produce in a GroupTransactSession, txn.go).
// Each exits 0 on success and non-zero with a "MISMATCH:" or "ERROR:" line on stderr otherwise.
// The roundtrip consumer uses direct partition assignment; group-consume (group.go) is a member
// of a consumer group.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	adminDeadline   = 60 * time.Second
	consumeDeadline = 120 * time.Second
)

type mismatch struct{ msg string }

func (m mismatch) Error() string { return m.msg }

func mismatchf(format string, args ...any) error { return mismatch{fmt.Sprintf(format, args...)} }

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	bootstrap := fs.String("bootstrap", "", "HOST:PORT")
	topic := fs.String("topic", "", "topic")
	prefix := fs.String("topic-prefix", "go-roundtrip", "topic prefix for roundtrip")
	partitions := fs.Int("partitions", 6, "partitions")
	count := fs.Int("count", 10000, "messages")
	codecs := fs.String("codecs", "none,gzip,snappy,lz4,zstd", "codecs for roundtrip")
	rate := fs.Int("rate", 0, "idempotent-produce: messages per second (0: unpaced)")
	group := fs.String("group", "", "group-consume: group id")
	clientID := fs.String("client-id", "compat-go-group", "group-consume: client id")
	sessionMs := fs.Int("session-timeout-ms", 6000, "group-consume: session timeout")
	input := fs.String("input", "", "txn-ctp: input topic")
	output := fs.String("output", "", "txn-ctp: output topic")
	abortEvery := fs.Int("abort-every", 4, "txn-ctp: abort every Nth transaction (0: never)")
	_ = fs.Parse(os.Args[2:])
	if *bootstrap == "" {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "roundtrip":
		err = roundtrip(*bootstrap, *prefix, int32(*partitions), *count, strings.Split(*codecs, ","))
	case "create-topic":
		err = createTopic(*bootstrap, *topic, int32(*partitions))
	case "idempotent-produce":
		err = idempotentProduce(*bootstrap, *topic, int32(*partitions), *count, *rate)
	case "group-consume":
		err = groupConsume(*bootstrap, *topic, *group, *clientID, time.Duration(*sessionMs)*time.Millisecond)
	case "txn-ctp":
		err = txnCTP(*bootstrap, *input, *output, *group, *count, *abortEvery)
	default:
		usage()
	}
	var mm mismatch
	switch {
	case errors.As(err, &mm):
		fmt.Fprintln(os.Stderr, "MISMATCH:", mm.msg)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "ERROR:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: compat-go roundtrip|create-topic|idempotent-produce|group-consume|txn-ctp --bootstrap HOST:PORT "+
		"[--topic T] [--topic-prefix P] [--partitions N] [--count N] [--codecs none,gzip,snappy,lz4,zstd] "+
		"[--group G] [--client-id ID] [--session-timeout-ms N] [--input I --output O --abort-every N]")
	os.Exit(64)
}

func codecOf(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("unknown codec %q", name)
}

func createTopic(bootstrap, topic string, partitions int32) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), adminDeadline)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, 1, nil, topic)
	if err != nil {
		return err
	}
	for _, r := range resp {
		// A retried CreateTopics through a flaky connection can find its own earlier success.
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create %s: %w", r.Topic, r.Err)
		}
	}
	fmt.Printf("created %s partitions=%d\n", topic, partitions)
	return nil
}

// message returns the deterministic message i: the same bytes on produce and on verification.
func message(i int) *kgo.Record {
	key := []byte(fmt.Sprintf("key-%d-%d", i%1009, i))
	n := 20 + int(mix(uint64(i))%300)
	value := make([]byte, n)
	s := mix(uint64(i)*31 + 7)
	for j := range value {
		s = s*6364136223846793005 + 1442695040888963407
		if j%2 == 0 {
			value[j] = byte(s >> 56)
		} else {
			value[j] = byte('a' + (i+j)%26)
		}
	}
	return &kgo.Record{Key: key, Value: value, Headers: []kgo.RecordHeader{
		{Key: "idx", Value: []byte(strconv.Itoa(i))},
		{Key: "bin", Value: []byte{0, 0xff, byte(i), byte(i >> 8)}},
		{Key: "empty", Value: []byte{}},
	}}
}

func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	return x & (1<<63 - 1)
}

func roundtrip(bootstrap, prefix string, partitions int32, count int, codecs []string) error {
	for _, codec := range codecs {
		topic := prefix + "-" + codec
		t0 := time.Now()
		if err := createTopic(bootstrap, topic, partitions); err != nil {
			return err
		}
		placed, err := produce(bootstrap, topic, codec, count)
		if err != nil {
			return err
		}
		if err := consumeAndCheck(bootstrap, topic, partitions, count, placed); err != nil {
			return err
		}
		if err := checkOffsets(bootstrap, topic, partitions, placed); err != nil {
			return err
		}
		if err := deleteTopic(bootstrap, topic); err != nil {
			return err
		}
		fmt.Printf("ok codec=%s topic=%s messages=%d ms=%d\n", codec, topic, count, time.Since(t0).Milliseconds())
	}
	return nil
}

// produce returns, per partition, the message indices in offset order (offset k holds list[k]).
func produce(bootstrap, topic, codecName string, count int) (map[int32][]int, error) {
	codec, err := codecOf(codecName)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	type placement struct {
		partition int32
		offset    int64
	}
	got := make([]placement, count)
	var mu sync.Mutex
	var firstErr error
	ctx := context.Background()
	for i := 0; i < count; i++ {
		i := i
		cl.Produce(ctx, message(i), func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			got[i] = placement{r.Partition, r.Offset}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return nil, err
	}
	if firstErr != nil {
		return nil, fmt.Errorf("produce: %w", firstErr)
	}
	byOffset := map[int32]map[int64]int{}
	for i, p := range got {
		if byOffset[p.partition] == nil {
			byOffset[p.partition] = map[int64]int{}
		}
		if prev, dup := byOffset[p.partition][p.offset]; dup {
			return nil, mismatchf("%s/%d offset %d acknowledged twice (%d, %d)", topic, p.partition, p.offset, prev, i)
		}
		byOffset[p.partition][p.offset] = i
	}
	placed := map[int32][]int{}
	for part, m := range byOffset {
		list := make([]int, 0, len(m))
		for off := int64(0); off < int64(len(m)); off++ {
			idx, ok := m[off]
			if !ok {
				return nil, mismatchf("%s/%d offsets are not contiguous from 0: missing %d", topic, part, off)
			}
			if len(list) > 0 && list[len(list)-1] > idx {
				return nil, mismatchf("%s/%d offsets do not follow send order at %d", topic, part, off)
			}
			list = append(list, idx)
		}
		placed[part] = list
	}
	return placed, nil
}

func consumeAndCheck(bootstrap, topic string, partitions int32, count int, placed map[int32][]int) error {
	assign := map[int32]kgo.Offset{}
	for p := int32(0); p < partitions; p++ {
		assign[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), consumeDeadline)
	defer cancel()
	next := map[int32]int64{}
	received := 0
	for received < count {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return mismatchf("%s: consumed only %d of %d", topic, received, count)
		}
		for _, fe := range fetches.Errors() {
			return fmt.Errorf("fetch %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		var bad error
		fetches.EachRecord(func(r *kgo.Record) {
			if bad != nil {
				return
			}
			bad = checkRecord(r, next, placed)
			received++
		})
		if bad != nil {
			return bad
		}
	}
	fmt.Printf("consumed %d from %s\n", received, topic)
	return nil
}

func checkRecord(r *kgo.Record, next map[int32]int64, placed map[int32][]int) error {
	where := fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset)
	if r.Offset != next[r.Partition] {
		return mismatchf("%s: expected offset %d", where, next[r.Partition])
	}
	next[r.Partition]++
	list := placed[r.Partition]
	if r.Offset >= int64(len(list)) {
		return mismatchf("%s: unexpected record", where)
	}
	want := message(list[r.Offset])
	if !bytes.Equal(r.Key, want.Key) {
		return mismatchf("%s: key differs", where)
	}
	if !bytes.Equal(r.Value, want.Value) {
		return mismatchf("%s: value differs", where)
	}
	if len(r.Headers) != len(want.Headers) {
		return mismatchf("%s: %d headers, expected %d", where, len(r.Headers), len(want.Headers))
	}
	for h := range r.Headers {
		if r.Headers[h].Key != want.Headers[h].Key || !bytes.Equal(r.Headers[h].Value, want.Headers[h].Value) {
			return mismatchf("%s: header %d differs (%s)", where, h, r.Headers[h].Key)
		}
	}
	return nil
}

func checkOffsets(bootstrap, topic string, partitions int32, placed map[int32][]int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), adminDeadline)
	defer cancel()
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return err
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	for p := int32(0); p < partitions; p++ {
		s, ok := starts.Lookup(topic, p)
		if !ok || s.Err != nil || s.Offset != 0 {
			return mismatchf("%s/%d: earliest offset %+v, expected 0", topic, p, s)
		}
		e, ok := ends.Lookup(topic, p)
		want := int64(len(placed[p]))
		if !ok || e.Err != nil || e.Offset != want {
			return mismatchf("%s/%d: latest offset %+v, expected %d", topic, p, e, want)
		}
	}
	fmt.Printf("offsets ok for %s\n", topic)
	return nil
}

func deleteTopic(bootstrap, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), adminDeadline)
	defer cancel()
	resp, err := adm.DeleteTopics(ctx, topic)
	if err != nil {
		return err
	}
	if r, ok := resp[topic]; !ok || r.Err != nil {
		return fmt.Errorf("delete %s: %+v", topic, r)
	}
	for {
		details, err := adm.ListTopics(ctx)
		if err == nil && !details.Has(topic) {
			break
		}
		if ctx.Err() != nil {
			return mismatchf("%s still listed after DeleteTopics", topic)
		}
		time.Sleep(100 * time.Millisecond) // polling interval of a condition wait
	}
	fmt.Printf("deleted %s\n", topic)
	return nil
}

// idempotentProduce writes numbers 0..count-1, number n to partition n % partitions, with the
// client's default producer settings (idempotent, acks=all).
// A non-zero rate (messages per second) spreads the stream over time so a fault injector gets to
// cut it often.
func idempotentProduce(bootstrap, topic string, partitions int32, count, rate int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordDeliveryTimeout(5*time.Minute),
		kgo.RequestTimeoutOverhead(10*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	var acked atomic.Int64
	var mu sync.Mutex
	var firstErr error
	ctx := context.Background()
	t0 := time.Now()
	for n := 0; n < count; n++ {
		if rate > 0 && n%100 == 0 {
			time.Sleep(time.Until(t0.Add(time.Duration(n) * time.Second / time.Duration(rate))))
		}
		v := []byte(strconv.Itoa(n))
		rec := &kgo.Record{Key: v, Value: v, Partition: int32(n) % partitions}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			acked.Add(1)
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if firstErr != nil {
		return mismatchf("a send failed: %v", firstErr)
	}
	if acked.Load() != int64(count) {
		return mismatchf("acknowledged %d of %d", acked.Load(), count)
	}
	fmt.Printf("acked %d\n", acked.Load())
	return nil
}
