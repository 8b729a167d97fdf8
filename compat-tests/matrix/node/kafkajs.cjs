'use strict'
// kafkajs running the matrix scenario (../SCENARIO.md), one phase per run.
// kafkajs has gzip built in; snappy, lz4 and zstd come from codec packages (package.json).
// zstd: the kafkajs project's own @kafkajs/zstd 0.1.1 does not build on Node 20 (its
// cppzst 2.0.6 addon predates the C++17 the Node 20 headers need), so the codec is
// @sensejs/kafkajs-zstd-support 0.11.0, which registers itself on import (zstd-napi
// inside). Its CommonJS build is broken (calls a TypeScript helper it never defines),
// so its ES module build is imported, by path: ES modules ignore NODE_PATH.

const { pathToFileURL } = require('node:url')
const { Kafka, CompressionTypes, CompressionCodecs, Partitioners, logLevel } = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const LZ4Codec = require('kafkajs-lz4')
const {
  CODECS, RESUME_LINGER_MS, Reads, log, lostAny, partitionsOf, records, runPhase, summary, waitFor
} = require('./common.cjs')

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec

const COMPRESSION = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD
}

// kafkajs's default logger writes to stdout, which carries only the summary.
const stderrLogger = () => ({ namespace, level, log: entry }) => {
  const { message, ...rest } = entry
  log(`kafkajs ${logLevel[level] ?? level} [${namespace}] ${message} ${JSON.stringify(rest)}`)
}

function client (opts, id) {
  return new Kafka({
    clientId: `matrix-kafkajs-${id}`,
    brokers: [opts.bootstrap],
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
    retry: { retries: 10, initialRetryTime: 200, maxRetryTime: 2000 }
  })
}

async function admin (opts) {
  const a = client(opts, 'admin').admin()
  await a.connect()
  const created = await a.createTopics({
    topics: [{ topic: opts.topic, numPartitions: 3, replicationFactor: 1 }],
    waitForLeaders: true
  })
  if (!created) throw new Error(`topic ${opts.topic} already existed`)
  const listed = (await a.listTopics()).includes(opts.topic)
  const md = await a.fetchTopicMetadata({ topics: [opts.topic] })
  await a.disconnect()
  summary({ phase: 'admin', listed, partitions: md.topics[0].partitions.length })
}

async function produce (opts) {
  const producer = client(opts, 'producer').producer({
    idempotent: true,
    maxInFlightRequests: 1,
    // kafkajs warns that a bounded retry count weakens idempotence; the phase deadline
    // bounds the run instead.
    retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 200, maxRetryTime: 2000 },
    createPartitioner: Partitioners.DefaultPartitioner
  })
  await producer.connect()
  let acked = 0
  const codecs = []
  for (const codec of CODECS) {
    const messages = records(opts.batch, codec, opts.records).map((r) => ({
      key: r.key, value: r.value, headers: { h: r.header }
    }))
    // Resolves once every partition's batch is acknowledged (acks=all), rejects otherwise.
    await producer.send({ topic: opts.topic, acks: -1, compression: COMPRESSION[codec], messages })
    acked += messages.length
    codecs.push(codec)
  }
  await producer.disconnect()
  summary({ phase: 'produce', acked, codecs, skipped_codecs: {} })
}

/** One group member: reads, commits each record synchronously, counts it once committed. */
function member (opts, name, reads) {
  const consumer = client(opts, name).consumer({
    groupId: opts.group,
    sessionTimeout: 10_000,
    rebalanceTimeout: 10_000,
    heartbeatInterval: 500,
    maxWaitTimeInMs: 500
  })
  const m = { name, consumer, count: 0, joins: 0, assignment: new Set(), limit: null, progress: new Map() }
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    m.joins++
    m.assignment = partitionsOf(opts.topic, Object.entries(e.payload.memberAssignment)
      .map(([topic, partitions]) => ({ topic, partitions })))
    log(`${name}: joined (leader: ${e.payload.isLeader}), partitions [${[...m.assignment]}]`)
  })
  m.start = async () => {
    await consumer.connect()
    await consumer.subscribe({ topics: [opts.topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic, partition, message, pause }) => {
        const offset = Number(message.offset)
        // A failed commit (e.g. a rebalance) throws: kafkajs then rejoins and the
        // record is read again by its new owner, so it is only counted once committed.
        await consumer.commitOffsets([{ topic, partition, offset: String(offset + 1) }])
        m.count++
        m.progress.set(partition, offset + 1)
        reads.add(message.key?.toString(), message.value?.toString(), message.headers?.h?.toString() ?? null)
        // Before `b` joins, `a` reads only the first half of each partition, so every
        // partition still has records for whoever owns it after the rebalance.
        if (m.limit && offset + 1 >= m.limit.get(partition)) pause()
      }
    })
  }
  return m
}

/** Per partition: the offset halfway between the log start and end. */
async function halfway (opts) {
  const a = client(opts, 'offsets').admin()
  await a.connect()
  const offsets = await a.fetchTopicOffsets(opts.topic)
  await a.disconnect()
  const half = new Map()
  for (const o of offsets) {
    const low = Number(o.low)
    const high = Number(o.high)
    if (high > low) half.set(o.partition, low + Math.ceil((high - low) / 2))
  }
  return half
}

async function group (opts) {
  const reads = new Reads(opts.batch)
  const a = member(opts, 'a', reads)
  const b = member(opts, 'b', reads)
  a.limit = await halfway(opts)
  await a.start()
  await waitFor('a to read the first half of every partition', 60_000, () =>
    [...a.limit].every(([p, half]) => (a.progress.get(p) ?? 0) >= half))
  const before = a.assignment
  const joinsBefore = a.joins
  log(`a read ${a.count} records (partitions [${[...before]}]); b joins`)
  await b.start()
  await waitFor('the rebalance (a and b joined)', 30_000, () => b.joins > 0 && a.joins > joinsBefore)
  a.limit = null
  a.consumer.resume([{ topic: opts.topic }])
  await waitFor(`all ${opts.records} records`, 60_000, () => reads.consumed >= opts.records)
  await Promise.all([a.consumer.disconnect(), b.consumer.disconnect()])
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
  const a = member(opts, 'a', reads)
  const b = member(opts, 'b', reads)
  await Promise.all([a.start(), b.start()])
  await waitFor(`all ${opts.records} records`, 60_000, () => reads.consumed >= opts.records)
  await new Promise((resolve) => setTimeout(resolve, RESUME_LINGER_MS))
  await Promise.all([a.consumer.disconnect(), b.consumer.disconnect()])
  summary({
    phase: 'resume',
    consumed: reads.consumed,
    duplicates: reads.duplicates,
    mismatched: reads.mismatched,
    reread: reads.reread
  })
}

async function registerZstd () {
  const cjs = require.resolve('@sensejs/kafkajs-zstd-support')
  await import(pathToFileURL(cjs.replace('/dist-cjs/', '/dist-esm/')).href)
}

runPhase(async (opts) => {
  await registerZstd()
  await ({ admin, produce, group, resume })[opts.phase](opts)
})
