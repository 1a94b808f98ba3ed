package main

// group-consume: one member of a classic consumer group (franz-go's default protocol and its
// default cooperative-sticky balancer), reporting on stdout in the line protocol of
// compat-tests/harness/groups.py until its stdin closes; then it commits, leaves and exits 0.
//
//	OWNED 0,3,5          partitions owned after every rebalance callback (full set, may be empty)
//	R 3 117              record at partition 3, offset 117 was processed
//	COMMITTED 3:118,5:40 a synchronous commit of these next-offsets succeeded
//	COMMIT-FAILED why    a commit failed (the records may be delivered again elsewhere)
//	LOST 0,3             partitions lost without a chance to commit
//	CLOSED               client closed cleanly
//
// Records are printed before they are committed. BlockRebalanceOnPoll keeps a revocation from
// running between a poll and its commit, and the revocation callback commits what was processed,
// so a clean hand-over is exactly-once.

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type groupMember struct {
	topic string
	mu    sync.Mutex // guards out and owned: callbacks run on the client's goroutines
	out   *os.File
	owned map[int32]bool
}

func (m *groupMember) println(line string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintln(m.out, line)
}

func joinPartitions(ps []int32) string {
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = strconv.Itoa(int(p))
	}
	return strings.Join(parts, ",")
}

func (m *groupMember) update(add bool, parts map[string][]int32) {
	m.mu.Lock()
	for _, p := range parts[m.topic] {
		if add {
			m.owned[p] = true
		} else {
			delete(m.owned, p)
		}
	}
	var ps []int32
	for p := range m.owned {
		ps = append(ps, p)
	}
	m.mu.Unlock()
	m.println("OWNED " + joinPartitions(ps))
}

// commit synchronously commits everything polled so far and reports what the broker accepted.
func (m *groupMember) commit(ctx context.Context, cl *kgo.Client) {
	offsets := cl.UncommittedOffsets()
	if len(offsets) == 0 {
		return
	}
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest,
		resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			m.println("COMMIT-FAILED " + err.Error())
			return
		}
		var ok, failed []string
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					failed = append(failed, fmt.Sprintf("%d:error%d", p.Partition, p.ErrorCode))
					continue
				}
				ok = append(ok, fmt.Sprintf("%d:%d", p.Partition, offsets[t.Topic][p.Partition].Offset))
			}
		}
		if len(ok) > 0 {
			m.println("COMMITTED " + strings.Join(ok, ","))
		}
		if len(failed) > 0 {
			m.println("COMMIT-FAILED " + strings.Join(failed, ","))
		}
	})
}

func groupConsume(bootstrap, topic, group, clientID string, session time.Duration) error {
	m := &groupMember{topic: topic, out: os.Stdout, owned: map[int32]bool{}}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // the test closes stdin to ask for a clean leave
		stop()
	}()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap), kgo.ClientID(clientID),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(session), kgo.HeartbeatInterval(max(100*time.Millisecond, session/12)),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			m.update(true, a)
		}),
		kgo.OnPartitionsRevoked(func(cctx context.Context, c *kgo.Client, r map[string][]int32) {
			m.commit(context.WithoutCancel(cctx), c)
			m.update(false, r)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) {
			m.println("LOST " + joinPartitions(append([]int32(nil), l[topic]...)))
			m.update(false, l)
		}),
	)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		fetches := cl.PollRecords(ctx, 200)
		for _, fe := range fetches.Errors() {
			if fe.Err != context.Canceled {
				m.println(fmt.Sprintf("FETCH-ERROR %s/%d %v", fe.Topic, fe.Partition, fe.Err))
			}
		}
		var sb strings.Builder
		fetches.EachRecord(func(r *kgo.Record) {
			fmt.Fprintf(&sb, "R %d %d\n", r.Partition, r.Offset)
		})
		if sb.Len() > 0 {
			m.mu.Lock()
			fmt.Fprint(m.out, sb.String())
			m.mu.Unlock()
			m.commit(context.Background(), cl)
		}
		cl.AllowRebalance()
	}
	m.commit(context.Background(), cl)
	cl.Close() // leaves the group; the revocation callback commits nothing new
	m.println("CLOSED")
	return nil
}
