//! Incremental fetch sessions (KIP-227), as Kafka's `FetchManager` and `FetchSessionCache`
//! keep them.
//!
//! A full fetch (epoch 0) may create a session: the broker caches the request's partitions
//! with their fetch parameters and the high watermark / log start offset last answered.
//! Later requests name the session and its epoch and carry only the partitions whose
//! parameters changed (added or updated) and those to forget; the answer leaves out every
//! partition with no records, no error and unchanged offsets.
//!
//! Bounds: at most `max.incremental.fetch.session.cache.slots` sessions, and at most
//! `millrace.incremental.fetch.session.cache.max.bytes` of cached partitions (each costs
//! [`PARTITION_ENTRY_BYTES`] plus its topic name), since incremental requests could
//! otherwise grow a session without end. A session that outgrows the byte bound is
//! dropped (the client's next request gets FETCH_SESSION_ID_NOT_FOUND and falls back to a
//! full fetch). New sessions take a slot by Kafka's eviction rules (see
//! [`Inner::try_evict`]). Unlike Kafka the cache is one shard: eviction considers every
//! session.
//!
//! Times are milliseconds of a monotonic clock owned by the cache.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use indexmap::IndexMap;
use uuid::Uuid;

use super::errors;

/// Session id 0: no session (Kafka's INVALID_SESSION_ID).
pub const NO_SESSION: i32 = 0;
const INITIAL_EPOCH: i32 = 0;
const FINAL_EPOCH: i32 = -1;

/// Estimated memory of one cached partition, topic name excluded (key, parameters,
/// offsets, the map's hash slot and index).
pub const PARTITION_ENTRY_BYTES: usize = 96;

/// Kafka's `FetchMetadata.nextEpoch`.
fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// A topic as the request names it: by id from Fetch v13, by name before.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicKey {
    Id(Uuid),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub topic: TopicKey,
    pub partition: i32,
}

impl PartitionKey {
    fn cost_bytes(&self) -> usize {
        PARTITION_ENTRY_BYTES
            + match &self.topic {
                TopicKey::Id(_) => 0,
                TopicKey::Name(name) => name.len(),
            }
    }
}

/// What a fetch asks of one partition (cached per session partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionParams {
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    pub current_leader_epoch: i32,
    /// A follower's epoch of its last fetched batch (-1: none or a consumer), KIP-320.
    pub last_fetched_epoch: i32,
}

/// What the broker answered for one partition, as far as a session cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOutcome {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub has_records: bool,
    pub has_error: bool,
}

#[derive(Debug, Clone, Copy)]
struct CachedPartition {
    params: PartitionParams,
    high_watermark: i64,
    log_start_offset: i64,
}

impl CachedPartition {
    /// Kafka's `maybeUpdateResponseData`: whether the answer must carry this partition;
    /// remembers the offsets answered.
    fn must_respond(&mut self, outcome: &PartitionOutcome) -> bool {
        let mut must = outcome.has_records;
        if self.high_watermark != outcome.high_watermark {
            must = true;
            self.high_watermark = outcome.high_watermark;
        }
        if self.log_start_offset != outcome.log_start_offset {
            must = true;
            self.log_start_offset = outcome.log_start_offset;
        }
        if outcome.has_error {
            // So that the partition is sent again once the error is gone.
            self.high_watermark = -1;
            must = true;
        }
        must
    }
}

struct Session {
    privileged: bool,
    uses_topic_ids: bool,
    creation_ms: i64,
    last_used_ms: i64,
    /// The epoch the next request must carry.
    epoch: i32,
    /// Cost counted in `Inner::total_bytes` and in the evictable keys.
    cached_bytes: usize,
    cached_size: usize,
    /// In the order partitions are read: those that returned records move to the end,
    /// so that each gets its turn at the response's byte limit.
    partitions: IndexMap<PartitionKey, CachedPartition>,
}

impl Session {
    fn cost_bytes(&self) -> usize {
        self.partitions.keys().map(PartitionKey::cost_bytes).sum()
    }
}

type EvictableKey = (bool, usize, i32);

#[derive(Default)]
struct Inner {
    sessions: HashMap<i32, Session>,
    /// (last used, id), oldest first.
    last_used: BTreeSet<(i64, i32)>,
    /// Sessions any new session may evict, least valuable first (unprivileged, then
    /// fewer partitions).
    evictable_by_all: BTreeSet<EvictableKey>,
    /// Sessions a privileged (follower) session may evict.
    evictable_by_privileged: BTreeSet<EvictableKey>,
    total_bytes: usize,
}

/// The cache's bounds, from the broker config.
#[derive(Debug, Clone, Copy)]
pub struct SessionCacheConfig {
    /// `max.incremental.fetch.session.cache.slots`
    pub max_slots: usize,
    /// `min.incremental.fetch.session.eviction.ms`: a session unused this long may be
    /// evicted by any new one; a session younger than this is safe from smaller ones.
    pub eviction_ms: i64,
    /// `millrace.incremental.fetch.session.cache.max.bytes`
    pub max_bytes: usize,
}

/// How to serve one fetch request, decided before reading.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchContext {
    /// The request's session is unusable: answer this error alone, session id 0.
    SessionError(i16),
    /// No session: read these, answer all of them with session id 0.
    Sessionless(Vec<(PartitionKey, PartitionParams)>),
    /// A full request that may open a session once the answer is known
    /// ([`FetchSessionCache::finish_full`]).
    Full {
        partitions: Vec<(PartitionKey, PartitionParams)>,
        privileged: bool,
        uses_topic_ids: bool,
    },
    /// Every partition of the session, with its cached parameters; the answer is filtered
    /// by [`FetchSessionCache::finish_incremental`].
    Incremental {
        session_id: i32,
        epoch: i32,
        partitions: Vec<(PartitionKey, PartitionParams)>,
    },
}

pub struct FetchSessionCache {
    config: SessionCacheConfig,
    clock: Instant,
    inner: Mutex<Inner>,
}

/// The fields of a fetch request that concern sessions.
pub struct SessionRequest {
    pub version: i16,
    pub session_id: i32,
    pub epoch: i32,
    /// A follower's fetch (replica id >= 0): its sessions are privileged.
    pub privileged: bool,
}

impl FetchSessionCache {
    pub fn new(config: SessionCacheConfig) -> FetchSessionCache {
        FetchSessionCache {
            config,
            clock: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.elapsed().as_millis() as i64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Kafka's `FetchManager.newContext`: closes, checks or updates the named session.
    /// `fetch_data` holds the request's partitions, each once, in request order.
    pub fn new_context(
        &self,
        request: &SessionRequest,
        fetch_data: IndexMap<PartitionKey, PartitionParams>,
        forgotten: &[PartitionKey],
        now_ms: i64,
    ) -> FetchContext {
        let as_list = |data: IndexMap<PartitionKey, PartitionParams>| data.into_iter().collect();
        if request.version < 7 {
            return FetchContext::Sessionless(as_list(fetch_data));
        }
        let mut inner = self.lock();
        if request.epoch == INITIAL_EPOCH || request.epoch == FINAL_EPOCH {
            // A full request closes the session it names.
            if request.session_id != NO_SESSION {
                inner.remove(request.session_id);
            }
            return if request.epoch == FINAL_EPOCH {
                FetchContext::Sessionless(as_list(fetch_data))
            } else {
                FetchContext::Full {
                    partitions: as_list(fetch_data),
                    privileged: request.privileged,
                    uses_topic_ids: request.version >= 13,
                }
            };
        }
        let session_id = request.session_id;
        let Some(session) = inner.sessions.get_mut(&session_id) else {
            return FetchContext::SessionError(errors::FETCH_SESSION_ID_NOT_FOUND);
        };
        if session.epoch != request.epoch {
            return FetchContext::SessionError(errors::INVALID_FETCH_SESSION_EPOCH);
        }
        if session.uses_topic_ids != (request.version >= 13) {
            return FetchContext::SessionError(errors::FETCH_SESSION_TOPIC_ID_ERROR);
        }
        for (key, params) in &fetch_data {
            match session.partitions.get_mut(key) {
                Some(cached) => cached.params = *params,
                None => {
                    session.partitions.insert(
                        key.clone(),
                        CachedPartition {
                            params: *params,
                            high_watermark: -1,
                            log_start_offset: -1,
                        },
                    );
                }
            }
        }
        for key in forgotten {
            session.partitions.shift_remove(key);
        }
        if session.partitions.is_empty() {
            inner.remove(session_id);
            return FetchContext::Sessionless(as_list(fetch_data));
        }
        let grown_bytes = session.cost_bytes();
        if inner.total_bytes - inner.sessions[&session_id].cached_bytes + grown_bytes
            > self.config.max_bytes
        {
            tracing::debug!(session_id, "fetch session outgrew the cache; closed");
            inner.remove(session_id);
            return FetchContext::SessionError(errors::FETCH_SESSION_ID_NOT_FOUND);
        }
        inner.touch(session_id, now_ms, self.config.eviction_ms);
        let session = inner
            .sessions
            .get_mut(&session_id)
            .expect("session present: touched above");
        session.epoch = next_epoch(session.epoch);
        FetchContext::Incremental {
            session_id,
            epoch: session.epoch,
            partitions: session
                .partitions
                .iter()
                .map(|(key, cached)| (key.clone(), cached.params))
                .collect(),
        }
    }

    /// After a full fetch was read: opens a session holding its partitions if there is
    /// room (Kafka's `maybeCreateSession`). Returns the session id, or 0.
    pub fn finish_full(
        &self,
        privileged: bool,
        uses_topic_ids: bool,
        answered: &[(PartitionKey, PartitionParams, PartitionOutcome)],
        now_ms: i64,
    ) -> i32 {
        let partitions: IndexMap<PartitionKey, CachedPartition> = answered
            .iter()
            .map(|(key, params, outcome)| {
                let mut cached = CachedPartition {
                    params: *params,
                    high_watermark: outcome.high_watermark,
                    log_start_offset: outcome.log_start_offset,
                };
                if outcome.has_error {
                    cached.high_watermark = -1;
                }
                (key.clone(), cached)
            })
            .collect();
        let cost_bytes: usize = partitions.keys().map(PartitionKey::cost_bytes).sum();
        if cost_bytes > self.config.max_bytes || self.config.max_slots == 0 {
            return NO_SESSION;
        }
        let size = partitions.len();
        let mut inner = self.lock();
        let has_slot = inner.sessions.len() < self.config.max_slots
            || inner.try_evict(privileged, size, now_ms, self.config.eviction_ms);
        if !has_slot {
            return NO_SESSION;
        }
        // Room for the bytes: only idle sessions give way to it.
        while inner.total_bytes + cost_bytes > self.config.max_bytes {
            if !inner.evict_stale(now_ms, self.config.eviction_ms) {
                return NO_SESSION;
            }
        }
        let id = inner.new_session_id();
        inner.sessions.insert(
            id,
            Session {
                privileged,
                uses_topic_ids,
                creation_ms: now_ms,
                last_used_ms: now_ms,
                epoch: next_epoch(INITIAL_EPOCH),
                cached_bytes: 0,
                cached_size: 0,
                partitions,
            },
        );
        inner.touch(id, now_ms, self.config.eviction_ms);
        id
    }

    /// After an incremental fetch was read: which partitions the answer carries (in
    /// `answered` order), or INVALID_FETCH_SESSION_EPOCH when another request of the
    /// session got in since this one's context was made (a duplicate request).
    pub fn finish_incremental(
        &self,
        session_id: i32,
        epoch: i32,
        answered: &[(PartitionKey, PartitionOutcome)],
    ) -> Result<Vec<bool>, i16> {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(&session_id) else {
            // Evicted meanwhile: answer everything; the next request learns it is gone.
            return Ok(vec![true; answered.len()]);
        };
        if session.epoch != epoch {
            return Err(errors::INVALID_FETCH_SESSION_EPOCH);
        }
        let mut include = Vec::with_capacity(answered.len());
        let mut with_records = Vec::new();
        for (key, outcome) in answered {
            let must = match session.partitions.get_mut(key) {
                Some(cached) => cached.must_respond(outcome),
                None => true,
            };
            if must && outcome.has_records {
                with_records.push(key);
            }
            include.push(must);
        }
        if !with_records.is_empty() {
            // Kafka moves each partition that returned records to the end.
            for key in with_records {
                if let Some(cached) = session.partitions.shift_remove(key) {
                    session.partitions.insert(key.clone(), cached);
                }
            }
        }
        Ok(include)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn new_session_id(&self) -> i32 {
        loop {
            let id = (Uuid::new_v4().as_u128() as u32 & 0x7fff_ffff) as i32;
            if id != NO_SESSION && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    fn evictable_key(id: i32, session: &Session) -> EvictableKey {
        (session.privileged, session.cached_size, id)
    }

    fn remove(&mut self, id: i32) {
        if let Some(session) = self.sessions.remove(&id) {
            self.last_used.remove(&(session.last_used_ms, id));
            let key = Self::evictable_key(id, &session);
            self.evictable_by_all.remove(&key);
            self.evictable_by_privileged.remove(&key);
            self.total_bytes -= session.cached_bytes;
        }
    }

    /// Kafka's `touch`: re-files the session under its new last-use time and size.
    fn touch(&mut self, id: i32, now_ms: i64, eviction_ms: i64) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        self.last_used.remove(&(session.last_used_ms, id));
        session.last_used_ms = now_ms;
        self.last_used.insert((now_ms, id));
        let old_key = Self::evictable_key(id, session);
        self.evictable_by_all.remove(&old_key);
        self.evictable_by_privileged.remove(&old_key);
        self.total_bytes -= session.cached_bytes;
        session.cached_size = session.partitions.len();
        session.cached_bytes = session.cost_bytes();
        self.total_bytes += session.cached_bytes;
        let key = Self::evictable_key(id, session);
        let old_enough = now_ms - session.creation_ms > eviction_ms;
        if !session.privileged || old_enough {
            self.evictable_by_privileged.insert(key);
        }
        if old_enough {
            self.evictable_by_all.insert(key);
        }
    }

    fn evict_stale(&mut self, now_ms: i64, eviction_ms: i64) -> bool {
        match self.last_used.first() {
            Some(&(last_used_ms, id)) if now_ms - last_used_ms > eviction_ms => {
                self.remove(id);
                true
            }
            _ => false,
        }
    }

    /// Kafka's `tryEvict`: a new session of `size` partitions may evict a session unused
    /// for longer than `eviction_ms`, else the least valuable evictable one (an
    /// unprivileged one before a privileged one, fewer partitions first) if that is
    /// worth no more than the new one.
    fn try_evict(&mut self, privileged: bool, size: usize, now_ms: i64, eviction_ms: i64) -> bool {
        if self.last_used.is_empty() {
            return false;
        }
        if self.evict_stale(now_ms, eviction_ms) {
            return true;
        }
        let candidates = if privileged {
            &self.evictable_by_privileged
        } else {
            &self.evictable_by_all
        };
        match candidates.first() {
            Some(&victim) if (privileged, size, 0) >= victim => {
                self.remove(victim.2);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVICTION_MS: i64 = 1_000;

    fn cache(max_slots: usize) -> FetchSessionCache {
        FetchSessionCache::new(SessionCacheConfig {
            max_slots,
            eviction_ms: EVICTION_MS,
            max_bytes: 1 << 20,
        })
    }

    fn key(topic: &str, partition: i32) -> PartitionKey {
        PartitionKey {
            topic: TopicKey::Name(topic.to_string()),
            partition,
        }
    }

    fn params(fetch_offset: i64) -> PartitionParams {
        PartitionParams {
            last_fetched_epoch: -1,
            fetch_offset,
            partition_max_bytes: 1024,
            current_leader_epoch: -1,
        }
    }

    fn quiet(high_watermark: i64) -> PartitionOutcome {
        PartitionOutcome {
            high_watermark,
            log_start_offset: 0,
            has_records: false,
            has_error: false,
        }
    }

    fn request(session_id: i32, epoch: i32) -> SessionRequest {
        SessionRequest {
            version: 12,
            session_id,
            epoch,
            privileged: false,
        }
    }

    fn data(keys: &[(&str, i32, i64)]) -> IndexMap<PartitionKey, PartitionParams> {
        keys.iter()
            .map(|&(t, p, offset)| (key(t, p), params(offset)))
            .collect()
    }

    /// A full fetch of `partitions` partitions of topic `t`, answered with high
    /// watermark 10: the new session's id (0 if none was created).
    fn open(cache: &FetchSessionCache, partitions: i32, privileged: bool, now_ms: i64) -> i32 {
        let fetch: Vec<_> = (0..partitions).map(|p| ("t", p, 0)).collect();
        let request = SessionRequest {
            privileged,
            ..request(0, 0)
        };
        let context = cache.new_context(&request, data(&fetch), &[], now_ms);
        let FetchContext::Full { partitions, .. } = context else {
            panic!("full fetch expected, got {context:?}");
        };
        let answered: Vec<_> = partitions
            .into_iter()
            .map(|(k, p)| (k, p, quiet(10)))
            .collect();
        cache.finish_full(privileged, false, &answered, now_ms)
    }

    #[test]
    fn epochs_advance_and_a_stale_or_unknown_session_is_refused() {
        let cache = cache(10);
        let id = open(&cache, 2, false, 0);
        assert_ne!(id, NO_SESSION);
        let FetchContext::Incremental {
            epoch, partitions, ..
        } = cache.new_context(&request(id, 1), data(&[]), &[], 1)
        else {
            panic!("incremental expected");
        };
        assert_eq!(epoch, 2);
        assert_eq!(partitions.len(), 2);
        // Epoch 1 again: a duplicate or reordered request.
        assert_eq!(
            cache.new_context(&request(id, 1), data(&[]), &[], 2),
            FetchContext::SessionError(errors::INVALID_FETCH_SESSION_EPOCH)
        );
        assert_eq!(
            cache.new_context(&request(id.wrapping_add(1).max(1), 1), data(&[]), &[], 2),
            FetchContext::SessionError(errors::FETCH_SESSION_ID_NOT_FOUND)
        );
        // The session does not change versions across the topic id boundary.
        let v13 = SessionRequest {
            version: 13,
            ..request(id, 2)
        };
        assert_eq!(
            cache.new_context(&v13, data(&[]), &[], 2),
            FetchContext::SessionError(errors::FETCH_SESSION_TOPIC_ID_ERROR)
        );
        // A full request naming the session closes it; epoch -1 opens none.
        assert!(matches!(
            cache.new_context(&request(id, FINAL_EPOCH), data(&[("t", 0, 0)]), &[], 3),
            FetchContext::Sessionless(_)
        ));
        assert!(cache.is_empty());
        assert_eq!(next_epoch(i32::MAX), 1);
    }

    #[test]
    fn a_response_started_before_a_newer_request_of_its_session_is_refused() {
        let cache = cache(10);
        let id = open(&cache, 1, false, 0);
        let FetchContext::Incremental { epoch, .. } =
            cache.new_context(&request(id, 1), data(&[]), &[], 1)
        else {
            panic!("incremental expected");
        };
        // The next request overtakes it.
        let FetchContext::Incremental { .. } =
            cache.new_context(&request(id, epoch), data(&[]), &[], 1)
        else {
            panic!("incremental expected");
        };
        assert_eq!(
            cache.finish_incremental(id, epoch, &[(key("t", 0), quiet(10))]),
            Err(errors::INVALID_FETCH_SESSION_EPOCH)
        );
    }

    #[test]
    fn partitions_are_added_updated_and_forgotten_and_unchanged_ones_omitted() {
        let cache = cache(10);
        let id = open(&cache, 2, false, 0);
        let context = cache.new_context(
            &request(id, 1),
            data(&[("t", 1, 7), ("u", 0, 3)]),
            &[key("t", 0)],
            1,
        );
        let FetchContext::Incremental {
            epoch, partitions, ..
        } = context
        else {
            panic!("incremental expected");
        };
        assert_eq!(
            partitions,
            vec![(key("t", 1), params(7)), (key("u", 0), params(3))]
        );
        // t-1 unchanged (hw 10 as cached), u-0 is new (hw unknown), so only u-0 is sent.
        let answered = [(key("t", 1), quiet(10)), (key("u", 0), quiet(10))];
        assert_eq!(
            cache.finish_incremental(id, epoch, &answered),
            Ok(vec![false, true])
        );
        // Then records on t-1, an error on u-0: both sent; records move t-1 to the end.
        let FetchContext::Incremental { epoch, .. } =
            cache.new_context(&request(id, epoch), data(&[]), &[], 2)
        else {
            panic!("incremental expected");
        };
        let records = PartitionOutcome {
            has_records: true,
            ..quiet(10)
        };
        let error = PartitionOutcome {
            has_error: true,
            ..quiet(10)
        };
        assert_eq!(
            cache.finish_incremental(id, epoch, &[(key("t", 1), records), (key("u", 0), error)]),
            Ok(vec![true, true])
        );
        let FetchContext::Incremental {
            epoch, partitions, ..
        } = cache.new_context(&request(id, epoch), data(&[]), &[], 3)
        else {
            panic!("incremental expected");
        };
        assert_eq!(partitions[0].0, key("u", 0));
        assert_eq!(partitions[1].0, key("t", 1));
        // After an error the partition is sent again even with the same offsets; a moved
        // log start offset is news too.
        let moved_start = PartitionOutcome {
            log_start_offset: 4,
            ..quiet(10)
        };
        assert_eq!(
            cache.finish_incremental(
                id,
                epoch,
                &[(key("u", 0), quiet(10)), (key("t", 1), moved_start)]
            ),
            Ok(vec![true, true])
        );
        // Forgetting every partition closes the session.
        let context = cache.new_context(
            &request(id, epoch),
            data(&[]),
            &[key("u", 0), key("t", 1)],
            4,
        );
        assert_eq!(context, FetchContext::Sessionless(Vec::new()));
        assert!(cache.is_empty());
    }

    #[test]
    fn eviction_follows_kafkas_rules() {
        let cache = cache(2);
        let small = open(&cache, 1, false, 0);
        let big = open(&cache, 5, false, 0);
        assert!(small != NO_SESSION && big != NO_SESSION);
        // Full, and both sessions are younger than the eviction time: nothing gives way.
        assert_eq!(open(&cache, 10, false, 10), NO_SESSION);
        // A follower's session evicts a consumer's at any age (the smallest first).
        let follower = open(&cache, 1, true, 20);
        assert_ne!(follower, NO_SESSION);
        assert!(matches!(
            cache.new_context(&request(small, 1), data(&[]), &[], 21),
            FetchContext::SessionError(errors::FETCH_SESSION_ID_NOT_FOUND)
        ));
        // Touch `big` once it is old enough to be evictable by size; a larger newcomer
        // then evicts it, a smaller one does not.
        let FetchContext::Incremental { .. } =
            cache.new_context(&request(big, 1), data(&[]), &[], EVICTION_MS + 1)
        else {
            panic!("incremental expected");
        };
        let now = EVICTION_MS + 2;
        let FetchContext::Incremental { .. } =
            cache.new_context(&request(follower, 1), data(&[]), &[], now)
        else {
            panic!("incremental expected");
        };
        assert_eq!(open(&cache, 4, false, now), NO_SESSION);
        let larger = open(&cache, 6, false, now);
        assert_ne!(larger, NO_SESSION);
        assert_eq!(cache.len(), 2);
        // An idle session goes to anyone.
        let late = now + EVICTION_MS + 1;
        let FetchContext::Incremental { .. } =
            cache.new_context(&request(larger, 1), data(&[]), &[], late)
        else {
            panic!("incremental expected");
        };
        assert_ne!(open(&cache, 1, false, late), NO_SESSION);
        assert!(matches!(
            cache.new_context(&request(follower, 2), data(&[]), &[], late),
            FetchContext::SessionError(errors::FETCH_SESSION_ID_NOT_FOUND)
        ));
    }

    #[test]
    fn cached_bytes_are_bounded() {
        let cache = FetchSessionCache::new(SessionCacheConfig {
            max_slots: 10,
            eviction_ms: EVICTION_MS,
            max_bytes: 4 * (PARTITION_ENTRY_BYTES + 1),
        });
        // Too big for the cache at all: no session.
        assert_eq!(open(&cache, 5, false, 0), NO_SESSION);
        let id = open(&cache, 3, false, 0);
        assert_ne!(id, NO_SESSION);
        // Another session would not fit beside it while it is in use.
        assert_eq!(open(&cache, 2, false, 1), NO_SESSION);
        // Growing past the bound closes the session.
        let context = cache.new_context(&request(id, 1), data(&[("t", 3, 0), ("t", 4, 0)]), &[], 2);
        assert_eq!(
            context,
            FetchContext::SessionError(errors::FETCH_SESSION_ID_NOT_FOUND)
        );
        assert!(cache.is_empty());
        assert_eq!(cache.lock().total_bytes, 0);
    }
}
