'use strict'
// The parts of the matrix scenario (../SCENARIO.md) every Node.js client shares:
// arguments, the records of a batch, the checks on what members read, the member
// bookkeeping of the `group` and `resume` phases, and the summary line.

const CODECS = ['none', 'gzip', 'snappy', 'lz4', 'zstd']

// SCENARIO.md: each phase finishes within 90 s or fails.
const PHASE_DEADLINE_MS = 90_000
// `resume`: how long to go on reading after the expected records, looking for re-reads.
const RESUME_LINGER_MS = 3_000

function parseArgs (argv) {
  const [phase, ...rest] = argv
  const opts = { phase }
  for (let i = 0; i < rest.length; i += 2) {
    const name = rest[i]
    const value = rest[i + 1]
    if (!name.startsWith('--') || value === undefined) {
      throw new Error(`bad argument ${name}`)
    }
    opts[name.slice(2)] = value
  }
  for (const k of ['bootstrap', 'topic', 'group', 'records', 'batch']) {
    if (opts[k] === undefined) throw new Error(`missing --${k}`)
  }
  opts.records = Number(opts.records)
  opts.batch = Number(opts.batch)
  if (!['admin', 'produce', 'group', 'resume'].includes(phase)) {
    throw new Error(`unknown phase ${phase}`)
  }
  return opts
}

/** Records `i < n` of batch `batch` and codec `codec`. */
function records (batch, codec, n) {
  const out = []
  for (let i = 0; i < n; i++) {
    const id = `${batch}-${codec}-${i}`
    out.push({ key: `k-${id}`, value: `v-${id}`, header: id })
  }
  return out
}

function log (...args) {
  console.error(new Date().toISOString(), ...args)
}

/** Prints the summary as the last stdout line. */
function summary (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

/**
 * Runs `main(opts)`; exits 0 after it resolves, 1 (reason on stderr) when it throws or
 * the phase deadline passes. Clients leave sockets and timers behind, so exit explicitly.
 */
function runPhase (main) {
  let opts
  try {
    opts = parseArgs(process.argv.slice(2))
  } catch (e) {
    log(`usage: <phase> --bootstrap H:P --topic T --group G --records N --batch B (${e.message})`)
    process.exit(2)
  }
  const timer = setTimeout(() => {
    log(`phase ${opts.phase}: not done after ${PHASE_DEADLINE_MS} ms`)
    process.exit(1)
  }, PHASE_DEADLINE_MS)
  main(opts).then(
    () => {
      clearTimeout(timer)
      process.exit(0)
    },
    (e) => {
      log(`phase ${opts.phase} failed:`, e && e.stack ? e.stack : e)
      process.exit(1)
    }
  )
}

/** Waits until `cond()` holds, polling every 50 ms; throws `what` after `timeoutMs`. */
async function waitFor (what, timeoutMs, cond) {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/**
 * What the members of one phase read, checked against the scenario's rules. One
 * instance is shared by both members of a phase (they run in this one process), so a
 * record read by both counts as a duplicate.
 */
class Reads {
  constructor (batch) {
    this.batch = batch
    this.seen = new Set()
    this.consumed = 0
    this.duplicates = 0
    this.mismatched = 0
    this.reread = 0
    // Next offset to read per partition: where this process's last commit points (or
    // the log start, when known). Clients that prefetch can hand a member records
    // around a rebalance that are not the next ones (see `inOrder`).
    this.next = new Map()
    this.skipped = 0
  }

  /**
   * Whether the record at `offset` of `partition` is to be read now. Records ahead of
   * the position were fetched before a rebalance moved the fetch position back to the
   * commit, and come again: skipped (never counted or committed). A member has at most
   * one commit in flight, so a rebalance can make a stream (its own or the new owner's)
   * fetch again from one record behind the position: that record is skipped too. A
   * record further behind means the broker handed out a committed offset older than an
   * acknowledged commit: it is read, and shows as a duplicate. A partition whose
   * position is not known yet starts at its first record (so a fresh process shows an
   * old committed offset as `reread`); a committed offset ahead of the position loses
   * records, and the phase fails on its deadline.
   */
  inOrder (member, partition, offset) {
    const next = this.next.get(partition)
    if (next === undefined || offset === next || offset < next - 1) return true
    if (this.skipped++ < 20) log(`${member}: skipping ${partition}@${offset}, next is ${next}`)
    return false
  }

  /** The record at `offset` of `partition` was read and its commit succeeded. */
  advance (partition, offset) {
    this.next.set(partition, offset + 1)
  }

  /** Checks one record (strings; `header` null when missing) and counts it. */
  add (key, value, header) {
    const m = /^k-(\d+)-([a-z0-9]+)-(\d+)$/.exec(key ?? '')
    if (!m) {
      log(`mismatched: unexpected key ${JSON.stringify(key)}`)
      this.mismatched++
      return
    }
    const id = `${m[1]}-${m[2]}-${m[3]}`
    if (value !== `v-${id}` || header !== id) {
      log(`mismatched: ${key} value ${JSON.stringify(value)} header ${JSON.stringify(header)}`)
      this.mismatched++
      return
    }
    const batch = Number(m[1])
    if (batch < this.batch) {
      log(`reread: ${key} (batch ${batch}, already committed)`)
      this.reread++
      return
    }
    if (batch !== this.batch) {
      log(`mismatched: ${key} is not of batch ${this.batch}`)
      this.mismatched++
      return
    }
    if (this.seen.has(key)) {
      log(`duplicate: ${key}`)
      this.duplicates++
      return
    }
    this.seen.add(key)
    this.consumed++
  }
}

/** Set of "partition" numbers from a list of {topic, partitions} of `topic`. */
function partitionsOf (topic, assignment) {
  const out = new Set()
  for (const a of assignment ?? []) {
    if (a.topic === topic) for (const p of a.partitions) out.add(Number(p))
  }
  return out
}

function lostAny (before, after) {
  for (const p of before) if (!after.has(p)) return true
  return false
}

module.exports = {
  CODECS,
  RESUME_LINGER_MS,
  Reads,
  log,
  lostAny,
  partitionsOf,
  records,
  runPhase,
  summary,
  waitFor
}
