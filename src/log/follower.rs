//! What a follower replica does to its log (Kafka's UnifiedLog.appendAsFollower,
//! truncateTo and truncateFullyAndStartAt): append the leader's batches as the leader
//! stored them, and cut the log back where it diverged from the leader's.
//!
//! Crash safety of a truncation: later segments go first, highest base first, each
//! removal made durable before the next, so a crash leaves a prefix of the log; then the
//! segment holding the cut is shortened and fsynced (it becomes the active segment, which
//! recovery scans at open); the epoch checkpoint is rewritten last (entries at or past the
//! recovered log end are dropped at open anyway).

use std::ops::Bound;

use super::batch::{self, BatchHeader, HEADER_SIZE};
use super::{sync_dir, Log, LogError};

/// What [`Log::append_as_follower`] appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendedAsFollower {
    /// The appended batches' headers, in log order (producer state is updated from them
    /// with `ProducerStateTable::record`, as on the leader).
    pub headers: Vec<BatchHeader>,
    /// Bytes of the input appended: whole batches from its start. A partial batch at the
    /// end (a fetch response cut at its byte limit) is not appended and not an error.
    pub appended_bytes: usize,
    pub log_end_offset: i64,
    /// The last appended batch's partitionLeaderEpoch; None when nothing was appended.
    pub last_epoch: Option<i32>,
}

/// Splits a fetched record set into its whole batches, validating each (length, magic,
/// CRC, counts, uncompressed record framing) and their offsets. Returns the headers and
/// the bytes they cover.
fn parse_fetched(
    batches: &[u8],
    log_end_offset: i64,
) -> Result<(Vec<BatchHeader>, usize), LogError> {
    let mut headers: Vec<BatchHeader> = Vec::new();
    let mut position = 0;
    let mut next_offset = log_end_offset;
    while batches.len() - position >= HEADER_SIZE {
        let rest = &batches[position..];
        let corrupt = |error| LogError::CorruptRecords { position, error };
        let header = BatchHeader::parse(rest).map_err(corrupt)?;
        let size_bytes = header.total_size();
        if size_bytes > rest.len() {
            // The leader cuts a fetch at its byte limit, possibly inside a batch.
            break;
        }
        // Stored form: the leader's log may hold compacted batches.
        let header = batch::validate_stored(&rest[..size_bytes]).map_err(corrupt)?;
        if header.base_offset < next_offset {
            return Err(match headers.last() {
                None => LogError::UnexpectedAppendOffset {
                    first_offset: header.base_offset,
                    log_end: log_end_offset,
                },
                Some(previous) => LogError::OffsetsOutOfOrder {
                    base_offset: header.base_offset,
                    previous_last_offset: previous.last_offset(),
                },
            });
        }
        // validate_stored checked lastOffsetDelta >= 0; a base offset near i64::MAX must
        // not overflow.
        let Some(last_offset) = header
            .base_offset
            .checked_add(header.last_offset_delta as i64)
            .filter(|&last| last < i64::MAX)
        else {
            return Err(corrupt(batch::BatchError::Invalid(
                "last offset overflows an offset",
            )));
        };
        next_offset = last_offset + 1;
        headers.push(header);
        position += size_bytes;
    }
    Ok((headers, position))
}

impl Log {
    /// Appends record batches fetched from the leader, as the leader stored them: base
    /// offsets and partitionLeaderEpoch are kept, nothing is re-offset or re-validated
    /// record by record (control and transactional batches included: the leader
    /// validated them). Every whole batch is checked first (header, CRC, offsets
    /// increasing from the log end on: a gap is a compacted leader log's, as Kafka
    /// allows); a bad one appends nothing. Each batch's epoch goes into the epoch cache,
    /// the log rolls as on the leader (a new segment starts at the batch's base offset),
    /// and the batches of one segment are written with one write. The flush policy is the
    /// leader's. An `Io` error is fatal for the log, as for [`Log::append`] (the batches
    /// before a failed roll or write may be in the log: the log end tells).
    pub fn append_as_follower(
        &mut self,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<AppendedAsFollower, LogError> {
        let (headers, appended_bytes) = parse_fetched(batches, self.log_end_offset())?;
        let mut run_start_byte = 0;
        let mut run_first = 0;
        let mut position = 0;
        for (i, header) in headers.iter().enumerate() {
            let size_bytes = header.total_size();
            let pending_bytes = (position - run_start_byte) as u64;
            if self.should_roll(pending_bytes, size_bytes as u64, header, now_ms) {
                self.write_run(
                    &batches[run_start_byte..position],
                    &headers[run_first..i],
                    now_ms,
                )?;
                self.roll(header.base_offset)?;
                run_start_byte = position;
                run_first = i;
            }
            position += size_bytes;
        }
        self.write_run(
            &batches[run_start_byte..position],
            &headers[run_first..],
            now_ms,
        )?;
        debug_assert_eq!(position, appended_bytes);
        self.flush_if_many_unflushed()?;
        Ok(AppendedAsFollower {
            last_epoch: headers.last().map(|h| h.partition_leader_epoch),
            headers,
            appended_bytes,
            log_end_offset: self.log_end_offset(),
        })
    }

    /// Removes every batch at or above `offset` (Kafka's truncateTo, when this replica's
    /// log diverged from the leader's). Kafka truncates to batch boundaries: an offset
    /// inside a batch removes that whole batch, and the log end becomes its base offset.
    /// Later segments are deleted, the one holding the cut is shortened (and becomes the
    /// active segment), epochs from the new log end on are forgotten. The log start stays,
    /// unless `offset` is below it: then the log is emptied and starts at `offset`
    /// ([`Log::truncate_fully_and_start_at`]). Nothing happens past the log end; at it,
    /// only epochs announced there (with no batch yet) are forgotten.
    /// Producer state must be rebuilt by the caller afterwards
    /// (`partition::producer_state::rebuild_producer_state`). An `Io` error is fatal for
    /// the log; what is on disk then still opens (see the module comment).
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset(),
            });
        }
        if offset > self.log_end_offset() {
            return Ok(());
        }
        if offset == self.log_end_offset() {
            // No batch goes, but an epoch this replica announced at its log end while it
            // led (and never wrote in) would be its last fetched epoch forever: the leader
            // answers it as diverging at this very offset again and again.
            self.epochs.truncate_from_end(offset)?;
            return Ok(());
        }
        if offset < self.log_start_offset {
            return self.truncate_fully_and_start_at(offset);
        }
        // The batch holding `offset`, or the first after it (`offset` may fall in a gap).
        let cut = match self.locate(offset)? {
            Some((base, position)) => {
                let header = self.segments[&base].header_at(position)?;
                header.base_offset.min(offset)
            }
            None => offset,
        };
        if cut < self.log_start_offset {
            // The batch holding `offset` straddles the log start: nothing is left.
            return self.truncate_fully_and_start_at(self.log_start_offset);
        }
        let (&holder, _) = self
            .segments
            .range(..=cut)
            .next_back()
            .expect("the log start is in a segment");
        self.note_truncation(cut);
        self.remove_segments_above(holder)?;
        let index_interval_bytes = self.config.index_interval_bytes;
        let segment = self.active_mut();
        let position = match segment.find_batch(cut)? {
            Some((position, _)) => position,
            None => segment.size_bytes(),
        };
        segment.truncate_at(position, cut, index_interval_bytes)?;
        // truncate_at fsynced the whole active segment.
        self.unflushed_messages = 0;
        self.oldest_unflushed_append_ms = None;
        self.epochs.truncate_from_end(cut)?;
        debug_assert_eq!(self.log_end_offset(), cut);
        Ok(())
    }

    /// Empties the log and starts it at `offset` (Kafka's truncateFullyAndStartAt: the
    /// follower's log is wholly below the leader's log start, or diverged below its own):
    /// every segment goes, one empty segment at `offset` remains, the log start and end
    /// are `offset`, no epoch is left. Producer state must be rebuilt (it is empty).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        if offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset(),
            });
        }
        self.note_truncation(offset);
        let first = *self.segments.keys().next().expect("a log is never empty");
        self.remove_segments_above(first)?;
        // Emptied in place first: a crash from here on leaves an empty log.
        let index_interval_bytes = self.config.index_interval_bytes;
        self.active_mut()
            .truncate_at(0, first, index_interval_bytes)?;
        self.unflushed_messages = 0;
        self.oldest_unflushed_append_ms = None;
        if offset != first {
            let segment = super::segment::Segment::create(&self.dir, offset)?;
            self.segments.insert(offset, segment);
            sync_dir(&self.dir)?;
            if let Some(old) = self.segments.remove(&first) {
                old.delete_files(&self.dir)?;
                sync_dir(&self.dir)?;
            }
        }
        debug_assert_eq!(self.segments.len(), 1);
        self.log_start_offset = offset;
        self.epochs.clear()?;
        Ok(())
    }

    /// Deletes every segment whose base is above `base`, highest first, each removal
    /// durable before the next, so that a crash leaves a prefix of the log.
    fn remove_segments_above(&mut self, base: i64) -> Result<(), LogError> {
        while let Some((&last, _)) = self
            .segments
            .range((Bound::Excluded(base), Bound::Unbounded))
            .next_back()
        {
            if let Some(segment) = self.segments.remove(&last) {
                segment.delete_files(&self.dir)?;
                sync_dir(&self.dir)?;
            }
        }
        Ok(())
    }

    /// Tells the cleaner (see the fields) that the log is cut back to `offset`.
    fn note_truncation(&mut self, offset: i64) {
        self.truncations += 1;
        self.truncated_to_for_cleaner = Some(
            self.truncated_to_for_cleaner
                .map_or(offset, |t| t.min(offset)),
        );
    }

    /// The lowest offset the log was truncated to since the last call (the cleaner clamps
    /// its checkpoint to it).
    pub(super) fn take_truncation_for_cleaner(&mut self) -> Option<i64> {
        self.truncated_to_for_cleaner.take()
    }

    /// How many truncations the log has seen (a clean planned before one is abandoned).
    pub(super) fn truncations(&self) -> u64 {
        self.truncations
    }
}
