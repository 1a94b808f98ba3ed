package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// txnCTP is consume-transform-produce with franz-go's GroupTransactSession: the input's
// records (the numbers 0..count-1) become "out-N" in the output, one transaction per poll,
// every abortEvery-th transaction aborted (the session rewinds to the committed offsets). A
// read_committed read of the output must hold each "out-N" exactly once, and the group's
// committed offsets must be the input's end.
func txnCTP(bootstrap, input, output, group string, count, abortEvery int) error {
	for _, t := range []string{input, output} {
		if err := createTopic(bootstrap, t, 3); err != nil {
			return err
		}
	}
	plain, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), consumeDeadline)
	defer cancel()
	for i := 0; i < count; i++ {
		v := []byte(strconv.Itoa(i))
		plain.Produce(ctx, &kgo.Record{Topic: input, Partition: int32(i % 3), Value: v}, nil)
	}
	if err := plain.Flush(ctx); err != nil {
		return err
	}
	plain.Close()

	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(bootstrap),
		kgo.TransactionalID(group+"-tx"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.TransactionTimeout(60*time.Second),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(input),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
	)
	if err != nil {
		return err
	}
	defer sess.Close()
	done := map[string]bool{}
	batches, aborted := 0, 0
	for len(done) < count {
		if ctx.Err() != nil {
			return mismatchf("processed only %d of %d", len(done), count)
		}
		fetches := sess.PollRecords(ctx, 100)
		if errs := fetches.Errors(); len(errs) > 0 {
			return fmt.Errorf("fetch: %v", errs[0].Err)
		}
		if fetches.NumRecords() == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return err
		}
		var values []string
		fetches.EachRecord(func(r *kgo.Record) {
			values = append(values, string(r.Value))
			sess.Produce(ctx, &kgo.Record{Topic: output, Partition: r.Partition, Value: []byte("out-" + string(r.Value))}, nil)
		})
		batches++
		try := kgo.TryCommit
		if abortEvery > 0 && batches%abortEvery == 0 {
			try = kgo.TryAbort
		}
		committed, err := sess.End(ctx, try)
		if err != nil {
			return fmt.Errorf("end transaction: %w", err)
		}
		if !committed {
			aborted++
			continue
		}
		for _, v := range values {
			done[v] = true
		}
	}
	fmt.Printf("processed batches=%d aborted=%d\n", batches, aborted)
	return checkCTP(ctx, bootstrap, input, output, group, count)
}

func checkCTP(ctx context.Context, bootstrap, input, output, group string, count int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ConsumeTopics(output),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// Markers may follow EndTxn's answer: wait until the output's LSO reaches its end.
	var ends kadm.ListedOffsets
	for {
		hw, err := adm.ListEndOffsets(ctx, output)
		if err != nil {
			return err
		}
		lso, err := adm.ListCommittedOffsets(ctx, output)
		if err != nil {
			return err
		}
		same := true
		hw.Each(func(o kadm.ListedOffset) {
			if l, ok := lso.Lookup(o.Topic, o.Partition); !ok || l.Offset != o.Offset {
				same = false
			}
		})
		if same {
			ends = hw
			break
		}
		if ctx.Err() != nil {
			return mismatchf("output LSO never reached its end")
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a condition wait with a deadline
	}
	seen := map[string]int{}
	total := 0
	for total < count {
		if ctx.Err() != nil {
			return mismatchf("read %d of %d output records", total, count)
		}
		fetches := cl.PollFetches(ctx)
		fetches.EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)]++
			total++
		})
	}
	for i := 0; i < count; i++ {
		if n := seen["out-"+strconv.Itoa(i)]; n != 1 {
			return mismatchf("output holds out-%d %d times", i, n)
		}
	}
	_ = ends
	inEnds, err := adm.ListEndOffsets(ctx, input)
	if err != nil {
		return err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return err
	}
	var bad error
	inEnds.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(o.Topic, o.Partition)
		if !ok || c.At != o.Offset {
			bad = mismatchf("%s-%d committed %v, want the input's end %d", o.Topic, o.Partition, c.At, o.Offset)
		}
	})
	if bad != nil {
		return bad
	}
	fmt.Printf("ok ctp records=%d\n", count)
	return nil
}
