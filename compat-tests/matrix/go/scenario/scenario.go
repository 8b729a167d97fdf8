// Package scenario holds what every Go client of the matrix shares: the command line,
// the record layout, the consume-side bookkeeping and the summary line
// (compat-tests/matrix/SCENARIO.md is the contract).
package scenario

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Codecs every client is asked to produce, in the scenario's order.
var Codecs = []string{"none", "gzip", "snappy", "lz4", "zstd"}

// PhaseTimeout bounds one phase; the driver allows a little more.
const PhaseTimeout = 90 * time.Second

// ResumeQuiet is how long the resume phase keeps consuming after it has everything,
// so that a re-read of older records would show.
const ResumeQuiet = 3 * time.Second

// Args is one invocation: `<program> <phase> --bootstrap ... --topic ... --group ...
// --records N --batch B`.
type Args struct {
	Phase     string
	Bootstrap string
	Topic     string
	Group     string
	Records   int
	Batch     int
}

// ParseArgs reads the command line (or exits non-zero) and arms the phase's time bound.
func ParseArgs() Args {
	if len(os.Args) < 2 {
		Fail("usage: %s <admin|produce|group|resume> --bootstrap H:P --topic T --group G --records N --batch B", os.Args[0])
	}
	a := Args{Phase: os.Args[1]}
	fs := flag.NewFlagSet(a.Phase, flag.ExitOnError)
	fs.StringVar(&a.Bootstrap, "bootstrap", "", "HOST:PORT")
	fs.StringVar(&a.Topic, "topic", "", "topic")
	fs.StringVar(&a.Group, "group", "", "consumer group")
	fs.IntVar(&a.Records, "records", 0, "records per codec (produce) or records to expect")
	fs.IntVar(&a.Batch, "batch", 0, "batch number")
	if err := fs.Parse(os.Args[2:]); err != nil {
		Fail("arguments: %v", err)
	}
	if a.Bootstrap == "" || a.Topic == "" {
		Fail("--bootstrap and --topic are required")
	}
	// Whatever a client library blocks on, the phase ends within its bound.
	time.AfterFunc(PhaseTimeout, func() { Fail("phase %s did not finish within %v", a.Phase, PhaseTimeout) })
	return a
}

// Fail prints the reason on stderr and exits non-zero.
func Fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// Logf writes progress to stderr (stdout is reserved for the summary).
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().UTC().Format("15:04:05.000 ")+format+"\n", args...)
}

// Summary prints the phase's summary as the last line of stdout.
func Summary(v map[string]any) {
	b, err := json.Marshal(v)
	if err != nil {
		Fail("summary: %v", err)
	}
	fmt.Println(string(b))
}

// Record i of codec c in batch b: key, value and the value of header "h".
func Key(b int, c string, i int) string    { return fmt.Sprintf("k-%d-%s-%d", b, c, i) }
func Value(b int, c string, i int) string  { return fmt.Sprintf("v-%d-%s-%d", b, c, i) }
func Header(b int, c string, i int) string { return fmt.Sprintf("%d-%s-%d", b, c, i) }

// Header is one record header as a client hands it over.
type RecordHeader struct {
	Key   string
	Value []byte
}

// Tracker is the consume side's bookkeeping, shared by the members of one phase.
type Tracker struct {
	mu         sync.Mutex
	batch      int
	seen       map[string]bool
	duplicates int
	mismatched int
	reread     int
	perMember  map[string]int
}

// NewTracker expects records of batch `batch`; older batches count as re-read.
func NewTracker(batch int) *Tracker {
	return &Tracker{batch: batch, seen: map[string]bool{}, perMember: map[string]int{}}
}

// Add checks one consumed record and counts it for `member`.
func (t *Tracker) Add(member string, key, value []byte, headers []RecordHeader) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.perMember[member]++
	k := string(key)
	parts := strings.Split(k, "-")
	if len(parts) != 4 || parts[0] != "k" {
		t.mismatched++
		Logf("%s: unexpected key %q", member, k)
		return
	}
	b, err := strconv.Atoi(parts[1])
	if err != nil {
		t.mismatched++
		Logf("%s: unexpected key %q", member, k)
		return
	}
	if b < t.batch {
		t.reread++
		Logf("%s: re-read %q of an earlier batch", member, k)
		return
	}
	rest := strings.Join(parts[1:], "-")
	if b != t.batch || string(value) != "v-"+rest || len(headers) != 1 ||
		headers[0].Key != "h" || string(headers[0].Value) != rest {
		t.mismatched++
		Logf("%s: record %q does not match: value %q headers %v", member, k, value, headers)
		return
	}
	if t.seen[k] {
		t.duplicates++
		Logf("%s: duplicate %q", member, k)
		return
	}
	t.seen[k] = true
}

// Consumed is the number of distinct valid records of the batch seen so far.
func (t *Tracker) Consumed() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.seen)
}

// Of is the number of records `member` has been handed (valid or not).
func (t *Tracker) Of(member string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.perMember[member]
}

// Counts returns duplicates, mismatched and re-read records.
func (t *Tracker) Counts() (duplicates, mismatched, reread int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.duplicates, t.mismatched, t.reread
}

// WaitFor polls `cond` every 50 ms until it holds or `deadline` passes.
func WaitFor(deadline time.Time, cond func() bool) bool {
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// Caps returns, per partition, how far member a may read before b joins: the first
// half (rounded up) of what the partition holds. Every partition then keeps records for
// whichever member gets it in the rebalance, and a still reads at least N/2.
func Caps(ends map[int32]int64) map[int32]int64 {
	caps := make(map[int32]int64, len(ends))
	for p, end := range ends {
		caps[p] = (end + 1) / 2
	}
	return caps
}

// Sum adds up per-partition counts.
func Sum(m map[int32]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

// FinishGroup ends the group and resume phases the same way for every client: it waits
// until all expected records are read (the members then get 9 s each to commit and
// leave), closes both members and prints the phase's summary. `aLost` reports whether
// member a lost a partition when b joined.
func FinishGroup(args Args, deadline time.Time, tracker *Tracker, resume bool,
	closeA, closeB func() error, aLost func() bool) {
	got := WaitFor(deadline.Add(-20*time.Second), func() bool { return tracker.Consumed() >= args.Records })
	if got && resume {
		time.Sleep(ResumeQuiet)
	}
	if !got {
		Fail("consumed %d of %d records (a %d, b %d)", tracker.Consumed(), args.Records, tracker.Of("a"), tracker.Of("b"))
	}
	errA, errB := closeA(), closeB()
	if errA != nil || errB != nil {
		Fail("closing members: a: %v, b: %v", errA, errB)
	}
	dups, mism, reread := tracker.Counts()
	if resume {
		Summary(map[string]any{"phase": "resume", "consumed": tracker.Consumed(), "duplicates": dups, "mismatched": mism, "reread": reread})
		return
	}
	rebalanced := aLost() && tracker.Of("b") > 0
	Summary(map[string]any{"phase": "group", "consumed": tracker.Consumed(), "duplicates": dups, "mismatched": mism + reread,
		"a": tracker.Of("a"), "b": tracker.Of("b"), "rebalanced": rebalanced})
}
