// The client-matrix program for IBM sarama; one phase per run, see
// compat-tests/matrix/SCENARIO.md. Speaks Kafka 4.3.1's protocol versions
// (sarama.V4_3_1_0, its newest 4.x constant).
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	sc "millrace.dev/compat-tests/matrix/go/scenario"
)

func main() {
	args := sc.ParseArgs()
	sarama.Logger = log.New(logWriter{}, "[sarama] ", 0)
	switch args.Phase {
	case "admin":
		admin(args)
	case "produce":
		produce(args)
	case "group":
		consume(args, false)
	case "resume":
		consume(args, true)
	default:
		sc.Fail("unknown phase %q", args.Phase)
	}
}

type logWriter struct{}

func (logWriter) Write(p []byte) (int, error) {
	sc.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func config(clientID string) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_3_1_0
	cfg.ClientID = clientID
	cfg.Metadata.AllowAutoTopicCreation = false
	return cfg
}

func admin(args sc.Args) {
	adm, err := sarama.NewClusterAdmin([]string{args.Bootstrap}, config("matrix-admin"))
	if err != nil {
		sc.Fail("admin: %v", err)
	}
	defer adm.Close()
	if err := adm.CreateTopic(args.Topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
		sc.Fail("create topic %s: %v", args.Topic, err)
	}
	// The topic is usable once Metadata describes it with a leader per partition.
	listed, partitions := false, 0
	ok := sc.WaitFor(time.Now().Add(30*time.Second), func() bool {
		all, err := adm.ListTopics()
		if err != nil {
			sc.Logf("list topics: %v", err)
			return false
		}
		_, listed = all[args.Topic]
		md, err := adm.DescribeTopics([]string{args.Topic})
		if err != nil || len(md) != 1 {
			sc.Logf("describe %s: %v %v", args.Topic, md, err)
			return false
		}
		if md[0].Err != sarama.ErrNoError || md[0].Name != args.Topic {
			sc.Logf("describe %s: %v", args.Topic, md[0].Err)
			return false
		}
		partitions = len(md[0].Partitions)
		for _, p := range md[0].Partitions {
			if p.Err != sarama.ErrNoError || p.Leader < 0 {
				return false
			}
		}
		return listed && partitions == 3
	})
	if !ok {
		sc.Fail("topic %s not listed (%v) and described with 3 partitions (%d) within 30 s", args.Topic, listed, partitions)
	}
	sc.Summary(map[string]any{"phase": "admin", "listed": listed, "partitions": partitions})
}

var codecs = map[string]sarama.CompressionCodec{
	"none":   sarama.CompressionNone,
	"gzip":   sarama.CompressionGZIP,
	"snappy": sarama.CompressionSnappy,
	"lz4":    sarama.CompressionLZ4,
	"zstd":   sarama.CompressionZSTD,
}

// produce sends every codec's records. Sarama sets compression per producer, so each
// codec gets its own idempotent producer (which sarama allows only with acks=all,
// retries and one request in flight).
func produce(args sc.Args) {
	acked := 0
	for _, c := range sc.Codecs {
		cfg := config("matrix-producer")
		cfg.Producer.Idempotent = true
		cfg.Producer.RequiredAcks = sarama.WaitForAll
		cfg.Producer.Retry.Max = 5
		cfg.Net.MaxOpenRequests = 1
		cfg.Producer.Return.Successes = true
		cfg.Producer.Compression = codecs[c]
		cfg.Producer.Partitioner = sarama.NewHashPartitioner
		cfg.Producer.Timeout = 30 * time.Second
		p, err := sarama.NewSyncProducer([]string{args.Bootstrap}, cfg)
		if err != nil {
			sc.Fail("producer (%s): %v", c, err)
		}
		msgs := make([]*sarama.ProducerMessage, args.Records)
		for i := range msgs {
			msgs[i] = &sarama.ProducerMessage{
				Topic:   args.Topic,
				Key:     sarama.StringEncoder(sc.Key(args.Batch, c, i)),
				Value:   sarama.StringEncoder(sc.Value(args.Batch, c, i)),
				Headers: []sarama.RecordHeader{{Key: []byte("h"), Value: []byte(sc.Header(args.Batch, c, i))}},
			}
		}
		if err := p.SendMessages(msgs); err != nil {
			var perrs sarama.ProducerErrors
			if errors.As(err, &perrs) && len(perrs) > 0 {
				sc.Fail("produce %s: %d failed, first: %v", c, len(perrs), perrs[0].Err)
			}
			sc.Fail("produce %s: %v", c, err)
		}
		for _, m := range msgs {
			if m.Offset < 0 {
				sc.Fail("produce %s: message without an offset", c)
			}
		}
		acked += len(msgs)
		if err := p.Close(); err != nil {
			sc.Fail("close producer: %v", err)
		}
		sc.Logf("codec %s: %d acked", c, len(msgs))
	}
	sc.Summary(map[string]any{"phase": "produce", "acked": acked, "codecs": sc.Codecs, "skipped_codecs": map[string]string{}})
}

// member is one group consumer; sarama's Consume runs one session per generation.
type member struct {
	name    string
	group   sarama.ConsumerGroup
	tracker *sc.Tracker
	topic   string

	// caps (group phase, member a only): offsets a may not process before it has lost a
	// partition to b; a claim that reaches its cap holds the message until then (or
	// until its session ends, and the message stays uncommitted).
	caps    map[int32]int64
	lift    chan struct{}
	liftOne sync.Once

	mu        sync.Mutex
	session   sarama.ConsumerGroupSession
	firstGen  []int32 // partitions of the first generation
	lost      atomic.Bool
	processed atomic.Int64

	cancel context.CancelFunc
	done   chan error
}

func newMember(args sc.Args, name string, tracker *sc.Tracker, caps map[int32]int64) *member {
	cfg := config("matrix-" + name)
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.MaxWaitTime = 500 * time.Millisecond
	cfg.Consumer.Return.Errors = true
	g, err := sarama.NewConsumerGroup([]string{args.Bootstrap}, args.Group, cfg)
	if err != nil {
		sc.Fail("%s: consumer group: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{name: name, group: g, tracker: tracker, topic: args.Topic, caps: caps,
		lift: make(chan struct{}), cancel: cancel, done: make(chan error, 1)}
	if caps == nil {
		m.liftCaps()
	}
	go func() {
		for err := range g.Errors() {
			sc.Logf("%s: %v", name, err)
		}
	}()
	go func() {
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{args.Topic}, m); err != nil {
				if errors.Is(err, sarama.ErrClosedConsumerGroup) {
					break
				}
				sc.Logf("%s: consume: %v", name, err)
				select {
				case <-ctx.Done():
				case <-time.After(250 * time.Millisecond):
				}
			}
		}
		m.done <- nil
	}()
	return m
}

func (m *member) liftCaps() { m.liftOne.Do(func() { close(m.lift) }) }

func (m *member) Setup(s sarama.ConsumerGroupSession) error {
	parts := slices.Clone(s.Claims()[m.topic])
	slices.Sort(parts)
	sc.Logf("%s: generation %d, assigned %v", m.name, s.GenerationID(), parts)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.session = s
	if m.firstGen == nil {
		m.firstGen = parts
	} else if len(parts) < len(m.firstGen) {
		// b has joined and taken a partition: a may read past its caps now.
		m.lost.Store(true)
		m.liftCaps()
	}
	return nil
}

// Cleanup commits what was processed before the partitions move (sarama's rebalances
// are eager), so their next owner starts exactly after it.
func (m *member) Cleanup(s sarama.ConsumerGroupSession) error {
	s.Commit()
	sc.Logf("%s: generation %d ends, committed", m.name, s.GenerationID())
	return nil
}

func (m *member) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case <-s.Context().Done():
			return nil
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			if capOff, capped := m.caps[msg.Partition]; capped && msg.Offset >= capOff {
				select {
				case <-m.lift:
				case <-s.Context().Done():
					return nil // unprocessed, so uncommitted: the next owner reads it
				}
			}
			hs := make([]sc.RecordHeader, len(msg.Headers))
			for i, h := range msg.Headers {
				hs[i] = sc.RecordHeader{Key: string(h.Key), Value: h.Value}
			}
			m.tracker.Add(m.name, msg.Key, msg.Value, hs)
			s.MarkMessage(msg, "")
			m.processed.Add(1)
		}
	}
}

// commit synchronously commits the current session's marked offsets.
func (m *member) commit() error {
	m.mu.Lock()
	s := m.session
	m.mu.Unlock()
	if s == nil {
		return errors.New("no session")
	}
	s.Commit()
	return nil
}

// close ends the session (Cleanup commits), then leaves the group.
func (m *member) close() error {
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(9 * time.Second):
		return fmt.Errorf("%s: session did not end within 9 s", m.name)
	}
	return m.group.Close()
}

func consume(args sc.Args, resume bool) {
	deadline := time.Now().Add(sc.PhaseTimeout)
	tracker := sc.NewTracker(args.Batch)
	var a, b *member
	if resume {
		a = newMember(args, "a", tracker, nil)
		b = newMember(args, "b", tracker, nil)
	} else {
		caps := sc.Caps(endOffsets(args))
		sc.Logf("a reads up to %v first", caps)
		a = newMember(args, "a", tracker, caps)
		want := sc.Sum(caps)
		if !sc.WaitFor(deadline, func() bool { return a.processed.Load() >= want }) {
			sc.Fail("a consumed %d of its first %d records", a.processed.Load(), want)
		}
		if err := a.commit(); err != nil {
			sc.Fail("a: commit: %v", err)
		}
		sc.Logf("a consumed and committed %d; b joins", a.processed.Load())
		b = newMember(args, "b", tracker, nil)
	}
	sc.FinishGroup(args, deadline, tracker, resume, a.close, b.close, a.lost.Load)
}

func endOffsets(args sc.Args) map[int32]int64 {
	cl, err := sarama.NewClient([]string{args.Bootstrap}, config("matrix-offsets"))
	if err != nil {
		sc.Fail("client: %v", err)
	}
	defer cl.Close()
	parts, err := cl.Partitions(args.Topic)
	if err != nil {
		sc.Fail("partitions of %s: %v", args.Topic, err)
	}
	ends := map[int32]int64{}
	for _, p := range parts {
		off, err := cl.GetOffset(args.Topic, p, sarama.OffsetNewest)
		if err != nil {
			sc.Fail("end offset of %s/%d: %v", args.Topic, p, err)
		}
		ends[p] = off
	}
	sc.Logf("end offsets %v", ends)
	return ends
}
