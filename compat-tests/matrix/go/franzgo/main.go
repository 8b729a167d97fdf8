// The client-matrix program for franz-go (pkg/kgo + pkg/kadm); one phase per run, see
// compat-tests/matrix/SCENARIO.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	sc "millrace.dev/compat-tests/matrix/go/scenario"
)

func main() {
	args := sc.ParseArgs()
	ctx, cancel := context.WithTimeout(context.Background(), sc.PhaseTimeout)
	defer cancel()
	switch args.Phase {
	case "admin":
		admin(ctx, args)
	case "produce":
		produce(ctx, args)
	case "group":
		consume(ctx, args, false)
	case "resume":
		consume(ctx, args, true)
	default:
		sc.Fail("unknown phase %q", args.Phase)
	}
}

func logger() kgo.Opt {
	return kgo.WithLogger(kgo.BasicLogger(logWriter{}, kgo.LogLevelInfo, nil))
}

type logWriter struct{}

func (logWriter) Write(p []byte) (int, error) {
	sc.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newAdmin(args sc.Args) (*kgo.Client, *kadm.Client) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(args.Bootstrap), logger())
	if err != nil {
		sc.Fail("client: %v", err)
	}
	return cl, kadm.NewClient(cl)
}

func admin(ctx context.Context, args sc.Args) {
	cl, adm := newAdmin(args)
	defer cl.Close()
	resp, err := adm.CreateTopic(ctx, 3, 1, nil, args.Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		sc.Fail("create topic %s: %v", args.Topic, err)
	}
	// The topic is usable once Metadata describes it with a leader per partition.
	var all, one kadm.TopicDetails
	ok := sc.WaitFor(time.Now().Add(30*time.Second), func() bool {
		all, err = adm.ListTopics(ctx)
		if err != nil {
			sc.Logf("list topics: %v", err)
			return false
		}
		one, err = adm.ListTopics(ctx, args.Topic)
		if err != nil {
			sc.Logf("describe %s: %v", args.Topic, err)
			return false
		}
		d, found := one[args.Topic]
		if !found || d.Err != nil || len(d.Partitions) != 3 {
			sc.Logf("describe %s: %+v", args.Topic, d)
			return false
		}
		for _, p := range d.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false
			}
		}
		return all.Has(args.Topic)
	})
	if !ok {
		sc.Fail("topic %s not listed and described with 3 partitions within 30 s (last error %v)", args.Topic, err)
	}
	sc.Summary(map[string]any{"phase": "admin", "listed": all.Has(args.Topic), "partitions": len(one[args.Topic].Partitions)})
}

func codec(name string) kgo.CompressionCodec {
	switch name {
	case "none":
		return kgo.NoCompression()
	case "gzip":
		return kgo.GzipCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	}
	sc.Fail("unknown codec %q", name)
	return kgo.NoCompression()
}

// produce sends every codec's records. franz-go sets compression per client, so each
// codec gets its own idempotent producer (idempotence is franz-go's default; acks=all is
// what it requires).
func produce(ctx context.Context, args sc.Args) {
	acked := 0
	for _, c := range sc.Codecs {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(args.Bootstrap),
			kgo.DefaultProduceTopic(args.Topic),
			kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.ProducerBatchCompression(codec(c)),
			kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
			logger(),
		)
		if err != nil {
			sc.Fail("producer: %v", err)
		}
		recs := make([]*kgo.Record, args.Records)
		for i := range recs {
			recs[i] = &kgo.Record{
				Key:     []byte(sc.Key(args.Batch, c, i)),
				Value:   []byte(sc.Value(args.Batch, c, i)),
				Headers: []kgo.RecordHeader{{Key: "h", Value: []byte(sc.Header(args.Batch, c, i))}},
			}
		}
		results := cl.ProduceSync(ctx, recs...)
		for _, r := range results {
			if r.Err != nil {
				sc.Fail("produce %s %q: %v", c, r.Record.Key, r.Err)
			}
			acked++
		}
		cl.Close()
		sc.Logf("codec %s: %d acked", c, len(results))
	}
	sc.Summary(map[string]any{"phase": "produce", "acked": acked, "codecs": sc.Codecs, "skipped_codecs": map[string]string{}})
}

// member is one group consumer running its poll loop in a goroutine.
type member struct {
	name    string
	cl      *kgo.Client
	tracker *sc.Tracker
	topic   string

	// caps (group phase, member a only): offsets a may not read past until it has lost a
	// partition to b. Records at or past the cap are dropped unmarked and the partition
	// is paused; it is rewound to the cap when the caps are lifted.
	capMu  sync.Mutex
	caps   map[int32]int64
	capped map[int32]bool

	lost      atomic.Bool
	stop      atomic.Bool
	done      chan error
	processed atomic.Int64

	// offsets: the next offset to commit per partition, from processed records only (a
	// capped member polls records it does not process, so franz-go's own "uncommitted"
	// offsets would skip them).
	offMu   sync.Mutex
	offsets map[int32]kgo.EpochOffset
}

// commit synchronously commits the processed offsets; with `revoked` set, only those
// partitions, which are then forgotten (their next owner commits them from now on).
func (m *member) commit(ctx context.Context, revoked []int32) error {
	m.offMu.Lock()
	set := map[int32]kgo.EpochOffset{}
	for p, o := range m.offsets {
		if revoked == nil || slices.Contains(revoked, p) {
			set[p] = o
		}
	}
	m.offMu.Unlock()
	if len(set) > 0 {
		var cerr error
		m.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{m.topic: set},
			func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
				if err != nil {
					cerr = err
					return
				}
				for _, t := range resp.Topics {
					for _, p := range t.Partitions {
						if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
							cerr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, e)
						}
					}
				}
			})
		if cerr != nil {
			return cerr
		}
	}
	m.forget(revoked)
	return nil
}

func (m *member) forget(parts []int32) {
	m.offMu.Lock()
	defer m.offMu.Unlock()
	for _, p := range parts {
		delete(m.offsets, p)
	}
}

func newMember(args sc.Args, name string, tracker *sc.Tracker, caps map[int32]int64) *member {
	m := &member{name: name, tracker: tracker, topic: args.Topic, caps: caps, capped: map[int32]bool{},
		done: make(chan error, 1), offsets: map[int32]kgo.EpochOffset{}}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(args.Bootstrap),
		kgo.ConsumerGroup(args.Group),
		kgo.ConsumeTopics(args.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.ClientID("matrix-"+name),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			sc.Logf("%s: assigned %v", name, a)
		}),
		// Commit what was processed before a partition moves, so its new owner starts
		// exactly after it.
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, r map[string][]int32) {
			sc.Logf("%s: revoked %v", name, r)
			if err := m.commit(ctx, r[m.topic]); err != nil {
				sc.Logf("%s: commit on revoke: %v", name, err)
			}
			if len(r[m.topic]) > 0 {
				m.lost.Store(true)
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) {
			sc.Logf("%s: lost %v", name, l)
			m.forget(l[m.topic])
		}),
		logger(),
	)
	if err != nil {
		sc.Fail("%s: client: %v", name, err)
	}
	m.cl = cl
	go m.run()
	return m
}

func (m *member) run() {
	for !m.stop.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		fs := m.cl.PollRecords(ctx, 64)
		cancel()
		if fs.IsClientClosed() {
			m.done <- errors.New("client closed while polling")
			return
		}
		var fatal error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				sc.Logf("%s: fetch error %s/%d: %v", m.name, t, p, err)
				if !kgo.IsRetryableBrokerErr(err) {
					fatal = fmt.Errorf("fetch %s/%d: %w", t, p, err)
				}
			}
		})
		if fatal != nil {
			m.cl.AllowRebalance()
			m.done <- fatal
			return
		}
		fs.EachRecord(m.handle)
		m.liftCaps()
		m.cl.AllowRebalance()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	err := m.commit(ctx, nil)
	if err != nil {
		err = fmt.Errorf("final commit: %w", err)
	}
	m.cl.CloseAllowingRebalance()
	m.done <- err
}

func (m *member) handle(r *kgo.Record) {
	m.capMu.Lock()
	if m.caps != nil {
		if capOff, ok := m.caps[r.Partition]; ok && r.Offset >= capOff {
			if !m.capped[r.Partition] {
				m.capped[r.Partition] = true
				m.cl.PauseFetchPartitions(map[string][]int32{m.topic: {r.Partition}})
			}
			m.capMu.Unlock()
			return
		}
	}
	m.capMu.Unlock()
	hs := make([]sc.RecordHeader, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = sc.RecordHeader{Key: h.Key, Value: h.Value}
	}
	m.tracker.Add(m.name, r.Key, r.Value, hs)
	m.offMu.Lock()
	m.offsets[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
	m.offMu.Unlock()
	m.processed.Add(1)
}

// liftCaps runs on the polling goroutine (as SetOffsets requires) once a partition went
// to b: the paused partitions are rewound to their caps and resumed.
func (m *member) liftCaps() {
	m.capMu.Lock()
	defer m.capMu.Unlock()
	if m.caps == nil || !m.lost.Load() {
		return
	}
	set := map[int32]kgo.EpochOffset{}
	var parts []int32
	for p := range m.capped {
		set[p] = kgo.EpochOffset{Epoch: -1, Offset: m.caps[p]}
		parts = append(parts, p)
	}
	slices.Sort(parts)
	if len(set) > 0 {
		m.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{m.topic: set})
		m.cl.ResumeFetchPartitions(map[string][]int32{m.topic: parts})
	}
	sc.Logf("%s: caps lifted, rewound %v", m.name, parts)
	m.caps = nil
	m.capped = map[int32]bool{}
}

func (m *member) close() error {
	m.stop.Store(true)
	select {
	case err := <-m.done:
		return err
	case <-time.After(9 * time.Second):
		return fmt.Errorf("%s did not close within 9 s", m.name)
	}
}

func consume(ctx context.Context, args sc.Args, resume bool) {
	deadline, _ := ctx.Deadline()
	tracker := sc.NewTracker(args.Batch)
	var a, b *member
	if resume {
		a = newMember(args, "a", tracker, nil)
		b = newMember(args, "b", tracker, nil)
	} else {
		cl, adm := newAdmin(args)
		ends, err := adm.ListEndOffsets(ctx, args.Topic)
		cl.Close()
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			sc.Fail("end offsets: %v", err)
		}
		endBy := map[int32]int64{}
		ends.Each(func(o kadm.ListedOffset) { endBy[o.Partition] = o.Offset })
		caps := sc.Caps(endBy)
		sc.Logf("end offsets %v, a reads up to %v first", endBy, caps)
		a = newMember(args, "a", tracker, caps)
		want := sc.Sum(caps)
		if !sc.WaitFor(deadline, func() bool { return a.processed.Load() >= want }) {
			sc.Fail("a consumed %d of its first %d records", a.processed.Load(), want)
		}
		if err := a.commit(ctx, nil); err != nil {
			sc.Fail("a: commit: %v", err)
		}
		sc.Logf("a consumed and committed %d; b joins", a.processed.Load())
		b = newMember(args, "b", tracker, nil)
	}
	sc.FinishGroup(args, deadline, tracker, resume, a.close, b.close, a.lost.Load)
}
