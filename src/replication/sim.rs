//! A deterministic simulator of one replicated partition: N brokers (3–5), a controller
//! (one linearizable service holding the partition's metadata), a producer sending
//! acks=all records, a network with random delay, loss and partitions between any sets
//! of nodes, crashes and restarts, preferred-leader elections while the old leader is
//! live, all on a simulated clock and one seeded RNG.
//!
//! The harness only moves messages and keeps logs as vectors: every decision is made by
//! the production code, `replication::leader`, `replication::follower`,
//! `metadata::partition_change` and `metadata::apply_batch`. A crash keeps the log and
//! its epoch history (a process crash: the page cache survives) and loses everything in
//! memory (role, high watermark, metadata view); a restarted broker registers again and
//! the controller fences it as an unclean shutdown, as Kafka's does.
//!
//! Checked at every step: at most one leader per leader epoch; a leader's high
//! watermark never moves back within its epoch (per incarnation: a restart forgets it);
//! the committed prefix (every record below any published high watermark, leader's or
//! follower's) never changes; no two acknowledgements for one offset differ. At the end,
//! after healing every fault and a quiet period: every acknowledged record is committed
//! at its offset, and, if the partition has a leader, every replica's log equals the
//! leader's and is fully committed.
//!
//! `cargo test --lib replication::sim` runs `MILLRACE_SIM_SEEDS` seeds (default 2000);
//! `MILLRACE_SIM_SEED=<n>` replays one seed with a trace of every step.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use uuid::Uuid;

use crate::log::epochs::{assign_epoch, end_offset_for, EpochEntry};
use crate::metadata::partition_change::{
    self, AlterPartitionRequest, ChangeContext, PartitionChange, NO_LEADER,
};
use crate::metadata::{apply_batch, MetadataImage, MetadataRecord, PartitionRecord, TopicImage};
use crate::replication::follower::{truncate_history, FollowerAction, FollowerPartition};
use crate::replication::leader::{
    AckDecision, AlterPartitionAccepted, FetchError, LeaderConfig, PartitionLeader,
};

/// splitmix64: small, seedable, good enough to pick faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    /// True with probability `per_million` / 1e6.
    fn chance(&mut self, per_million: u64) -> bool {
        self.below(1_000_000) < per_million
    }
}

const CONTROLLER: usize = 0;
const TICK_MS: i64 = 5;
const HEARTBEAT_MS: i64 = 50;
const SESSION_TIMEOUT_MS: i64 = 450;
const REPLICA_LAG_TIME_MAX_MS: i64 = 300;
const RESEND_MS: i64 = 200;
const FETCH_MAX_RECORDS: usize = 4;
const FAULT_PHASE_MS: i64 = 12_000;
const QUIET_PHASE_MS: i64 = 12_000;

/// Deliberately broken rules, to show the invariants catch them.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sabotage {
    /// Acknowledge acks=all on the leader's append, not on the high watermark.
    pub ack_on_leader_append: bool,
    /// `unclean.leader.election.enable=true`: a live replica out of the ISR may lead.
    pub unclean_leader_election: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    epoch: i32,
    value: u64,
}

#[derive(Debug, Clone)]
enum Msg {
    Heartbeat,
    Register,
    AlterPartition(AlterPartitionRequest),
    Metadata(PartitionRecord, BTreeSet<i32>),
    AlterPartitionResult(AlterPartitionRequest, Result<AlterPartitionAccepted, i16>),
    Fetch {
        leader_epoch: i32,
        offset: i64,
    },
    FetchResult {
        leader_epoch: i32,
        offset: i64,
        result: Result<(Vec<Record>, i64), FetchError>,
    },
    EndOffset {
        leader_epoch: i32,
        epoch: i32,
    },
    EndOffsetResult {
        leader_epoch: i32,
        epoch: i32,
        answer: Option<(i32, i64)>,
    },
    Produce(u64),
    ProduceResult(u64, Option<i64>),
}

struct Envelope {
    at: i64,
    from: usize,
    to: usize,
    /// To the controller: the sender's incarnation. To a broker: the incarnation it is
    /// for (a reply goes to the one that asked; 0: any).
    incarnation: u64,
    msg: Msg,
}

enum Role {
    None,
    Leader {
        leader: PartitionLeader,
        /// (value, offset, producer's incarnation-free id)
        waiting: Vec<(u64, i64)>,
        alter_sent_ms: i64,
        next_shrink_ms: i64,
    },
    Follower {
        follower: FollowerPartition,
        sent_ms: Option<i64>,
    },
}

struct Broker {
    id: i32,
    alive: bool,
    restart_at: i64,
    incarnation: u64,
    log: Vec<Record>,
    history: Vec<EpochEntry>,
    hw: i64,
    meta: Option<PartitionRecord>,
    role: Role,
    next_heartbeat_ms: i64,
    /// The committed check of this broker's log covers offsets below this.
    checked: usize,
}

impl Broker {
    fn leo(&self) -> i64 {
        self.log.len() as i64
    }
}

struct CtlBroker {
    fenced: bool,
    last_heartbeat_ms: i64,
    incarnation: u64,
}

struct Sim {
    rng: Rng,
    now: i64,
    trace: Option<String>,
    sabotage: Sabotage,
    min_isr: usize,
    loss_per_million: u64,
    max_delay_ms: i64,
    topic_id: Uuid,
    image: MetadataImage,
    ctl: BTreeMap<i32, CtlBroker>,
    brokers: Vec<Broker>,
    /// Node indexes: 0 controller, 1..=n brokers, n+1 the producer.
    producer: usize,
    producer_meta: Option<PartitionRecord>,
    next_value: u64,
    net: Vec<Envelope>,
    /// Pairs of nodes that cannot talk, with the time they heal.
    cuts: Vec<(BTreeSet<usize>, i64)>,
    // Invariant state.
    leaders_by_epoch: BTreeMap<i32, i32>,
    leader_hw: BTreeMap<(i32, u64, i32), i64>,
    committed: Vec<Record>,
    acked: BTreeMap<i64, u64>,
    failure: Option<String>,
    stats: Stats,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    acked: u64,
    leader_changes: u64,
    crashes: u64,
    offline_at_end: bool,
}

fn partition_of(image: &MetadataImage) -> &PartitionRecord {
    &image.topics["t"].partitions[0]
}

impl Sim {
    fn new(seed: u64, sabotage: Sabotage, trace: bool) -> Sim {
        let mut rng = Rng(seed);
        let n = 3 + rng.below(3) as i32;
        let min_isr = 1 + rng.below(2) as usize;
        let loss_per_million = rng.below(80_000);
        let max_delay_ms = rng.range(2, 60);
        let topic_id = Uuid::from_u128(0x5eed);
        let replicas: Vec<i32> = (1..=n).collect();
        // The assignment order (the preferred leader first) differs by seed.
        let mut assignment = replicas.clone();
        for k in (1..assignment.len()).rev() {
            assignment.swap(k, rng.below(k as u64 + 1) as usize);
        }
        let topic = TopicImage {
            name: "t".into(),
            topic_id,
            partitions: vec![PartitionRecord {
                partition: 0,
                replicas: assignment.clone(),
                isr: assignment.clone(),
                leader: assignment[0],
                leader_epoch: 0,
                partition_epoch: 0,
                elr: Vec::new(),
                last_known_elr: Vec::new(),
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            }],
            configs: BTreeMap::new(),
        };
        let (image, _) = apply_batch(
            &MetadataImage::default(),
            0,
            &[MetadataRecord::CreateTopic(topic)],
        );
        let brokers = replicas
            .iter()
            .map(|&id| Broker {
                id,
                alive: true,
                restart_at: 0,
                incarnation: 1,
                log: Vec::new(),
                history: Vec::new(),
                hw: 0,
                meta: None,
                role: Role::None,
                next_heartbeat_ms: 0,
                checked: 0,
            })
            .collect();
        let ctl = replicas
            .iter()
            .map(|&id| {
                (
                    id,
                    CtlBroker {
                        fenced: false,
                        last_heartbeat_ms: 0,
                        incarnation: 1,
                    },
                )
            })
            .collect();
        let mut sim = Sim {
            rng,
            now: 0,
            trace: trace.then(String::new),
            sabotage,
            min_isr,
            loss_per_million,
            max_delay_ms,
            topic_id,
            image,
            ctl,
            brokers,
            producer: n as usize + 1,
            producer_meta: None,
            next_value: 1,
            net: Vec::new(),
            cuts: Vec::new(),
            leaders_by_epoch: BTreeMap::new(),
            leader_hw: BTreeMap::new(),
            committed: Vec::new(),
            acked: BTreeMap::new(),
            failure: None,
            stats: Stats::default(),
        };
        sim.log(format!(
            "seed {seed}: {n} brokers, min.insync.replicas={min_isr}, loss={}ppm, delay<={}ms",
            loss_per_million, max_delay_ms
        ));
        sim.broadcast_metadata();
        sim
    }

    fn log(&mut self, line: String) {
        if let Some(trace) = &mut self.trace {
            let _ = writeln!(trace, "{:>6} {line}", self.now);
        }
    }

    fn fail(&mut self, what: String) {
        self.log(format!("VIOLATION: {what}"));
        if self.failure.is_none() {
            self.failure = Some(format!("t={}ms: {what}", self.now));
        }
    }

    fn cut(&self, a: usize, b: usize) -> bool {
        self.cuts
            .iter()
            .any(|(side, _)| side.contains(&a) != side.contains(&b))
    }

    fn send(&mut self, from: usize, to: usize, incarnation: u64, msg: Msg) {
        if self.cut(from, to) || self.rng.chance(self.loss_per_million) {
            return;
        }
        let at = self.now + self.rng.range(1, self.max_delay_ms);
        self.net.push(Envelope {
            at,
            from,
            to,
            incarnation,
            msg,
        });
    }

    /// Registered and unfenced, as of now (owns its data: the controller writes after).
    fn ctx_active(&self) -> impl Fn(i32) -> bool {
        let active: BTreeSet<i32> = self
            .ctl
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(&id, _)| id)
            .collect();
        move |r| active.contains(&r)
    }

    // ---- controller ----

    fn fenced_set(&self) -> BTreeSet<i32> {
        self.ctl
            .iter()
            .filter(|(_, b)| b.fenced)
            .map(|(&id, _)| id)
            .collect()
    }

    fn broadcast_metadata(&mut self) {
        let partition = partition_of(&self.image).clone();
        let fenced = self.fenced_set();
        for node in 1..=self.producer {
            self.send(
                CONTROLLER,
                node,
                0,
                Msg::Metadata(partition.clone(), fenced.clone()),
            );
        }
    }

    fn write(&mut self, change: Option<PartitionChange>, why: &str) {
        let Some(change) = change else { return };
        let before = partition_of(&self.image).clone();
        let (image, outcome) =
            apply_batch(&self.image, 0, &[MetadataRecord::PartitionChange(change)]);
        assert_eq!(outcome.accepted, vec![true], "the controller's own change");
        self.image = image;
        let after = partition_of(&self.image).clone();
        if after.leader != before.leader {
            self.stats.leader_changes += 1;
        }
        self.log(format!(
            "controller ({why}): leader {} epoch {} isr {:?} elr {:?} partition epoch {}",
            after.leader, after.leader_epoch, after.isr, after.elr, after.partition_epoch
        ));
        self.broadcast_metadata();
    }

    fn change_context(&self) -> (usize, bool) {
        (self.min_isr, self.sabotage.unclean_leader_election)
    }

    fn fence(&mut self, broker: i32, unclean_shutdown: bool) {
        if let Some(b) = self.ctl.get_mut(&broker) {
            b.fenced = true;
        }
        let (min_isr, unclean) = self.change_context();
        let partition = partition_of(&self.image).clone();
        let active = self.ctx_active();
        let ctx = ChangeContext {
            is_active: &active,
            min_insync_replicas: min_isr,
            unclean_leader_election: unclean,
        };
        let change = partition_change::on_broker_fenced(
            self.topic_id,
            &partition,
            broker,
            unclean_shutdown,
            &ctx,
        );
        self.write(change, &format!("fenced {broker}"));
    }

    fn controller_tick(&mut self) {
        let expired: Vec<i32> = self
            .ctl
            .iter()
            .filter(|(_, b)| !b.fenced && self.now - b.last_heartbeat_ms > SESSION_TIMEOUT_MS)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            self.fence(id, false);
        }
    }

    fn controller_receive(&mut self, from: usize, incarnation: u64, msg: Msg) {
        let broker = from as i32;
        let (min_isr, unclean) = self.change_context();
        match msg {
            Msg::Register | Msg::Heartbeat => {
                // A new incarnation (the broker retries until it is heard: a heartbeat
                // of a new incarnation registers it) is fenced as an unclean shutdown.
                let b = self.ctl.get_mut(&broker).expect("a replica");
                if incarnation < b.incarnation {
                    return;
                }
                b.last_heartbeat_ms = self.now;
                if incarnation > b.incarnation {
                    b.incarnation = incarnation;
                    self.fence(broker, true);
                    return;
                }
                if !matches!(msg, Msg::Heartbeat) {
                    return;
                }
                let b = self.ctl.get_mut(&broker).expect("a replica");
                if b.fenced {
                    b.fenced = false;
                    let partition = partition_of(&self.image).clone();
                    let active = self.ctx_active();
                    let ctx = ChangeContext {
                        is_active: &active,
                        min_insync_replicas: min_isr,
                        unclean_leader_election: unclean,
                    };
                    let change = partition_change::on_broker_unfenced(
                        self.topic_id,
                        &partition,
                        broker,
                        &ctx,
                    );
                    self.write(change, &format!("unfenced {broker}"));
                }
                let partition = partition_of(&self.image).clone();
                let fenced = self.fenced_set();
                self.send(
                    CONTROLLER,
                    from,
                    incarnation,
                    Msg::Metadata(partition, fenced),
                );
            }
            Msg::AlterPartition(request) => {
                if self.ctl[&broker].incarnation != incarnation {
                    return; // Kafka: STALE_BROKER_EPOCH
                }
                let partition = partition_of(&self.image).clone();
                let active = self.ctx_active();
                let ctx = ChangeContext {
                    is_active: &active,
                    min_insync_replicas: min_isr,
                    unclean_leader_election: unclean,
                };
                let result =
                    partition_change::alter_partition(self.topic_id, &partition, &request, &ctx);
                let answer = match result {
                    Ok(change) => {
                        self.write(change, &format!("AlterPartition from {broker}"));
                        let p = partition_of(&self.image);
                        Ok(AlterPartitionAccepted {
                            leader_epoch: p.leader_epoch,
                            partition_epoch: p.partition_epoch,
                            isr: p.isr.clone(),
                        })
                    }
                    Err(code) => Err(code),
                };
                self.log(format!(
                    "controller: AlterPartition {request:?} -> {answer:?}"
                ));
                self.send(
                    CONTROLLER,
                    from,
                    incarnation,
                    Msg::AlterPartitionResult(request, answer),
                );
            }
            _ => {}
        }
    }

    // ---- brokers ----

    fn config(&self) -> LeaderConfig {
        LeaderConfig {
            replica_lag_time_max_ms: REPLICA_LAG_TIME_MAX_MS,
            min_insync_replicas: self.min_isr,
        }
    }

    /// Checks the broker's log below `hw` against the committed prefix and extends it.
    fn publish_hw(&mut self, i: usize, hw: i64) {
        let b = &mut self.brokers[i];
        b.hw = hw;
        let upto = (hw.max(0) as usize).min(b.log.len());
        let mut problem = None;
        for offset in b.checked..upto {
            let record = b.log[offset];
            match self.committed.get(offset) {
                Some(c) if *c != record => {
                    problem = Some(format!(
                        "broker {} has {record:?} at committed offset {offset}, committed {c:?}",
                        b.id
                    ));
                    break;
                }
                Some(_) => {}
                None => self.committed.push(record),
            }
        }
        b.checked = b.checked.max(upto);
        if let Some(problem) = problem {
            self.fail(problem);
        }
        if let Role::Leader { leader, .. } = &self.brokers[i].role {
            let key = (
                self.brokers[i].id,
                self.brokers[i].incarnation,
                leader.leader_epoch(),
            );
            let last = self.leader_hw.insert(key, hw).unwrap_or(hw);
            if hw < last {
                self.fail(format!(
                    "leader {key:?} high watermark went back {last} -> {hw}"
                ));
            }
        }
    }

    /// Every high watermark move must come back from the call that made it.
    fn check_reported_hw(&mut self, i: usize) {
        let b = &self.brokers[i];
        if let Role::Leader { leader, .. } = &b.role {
            if leader.high_watermark() != b.hw {
                let (id, hw, reported) = (b.id, leader.high_watermark(), b.hw);
                self.fail(format!(
                    "leader {id} moved its high watermark to {hw} unreported ({reported})"
                ));
            }
        }
    }

    fn truncate(&mut self, i: usize, offset: i64) {
        let b = &mut self.brokers[i];
        let offset = offset.max(0);
        truncate_history(&mut b.history, offset);
        if (offset as usize) < b.log.len() {
            b.log.truncate(offset as usize);
            b.checked = b.checked.min(offset as usize);
            b.hw = b.hw.min(offset);
        }
        let id = b.id;
        let history = self.brokers[i].history.clone();
        self.log(format!(
            "broker {id} truncated to {offset}, history {history:?}"
        ));
    }

    fn follower_act(&mut self, i: usize, mut action: FollowerAction) {
        loop {
            let b = &self.brokers[i];
            let Role::Follower { follower, .. } = &b.role else {
                return;
            };
            let leader = follower.leader_id() as usize;
            match action {
                FollowerAction::AskEndOffset {
                    epoch,
                    current_leader_epoch,
                } => {
                    self.send(
                        i + 1,
                        leader,
                        0,
                        Msg::EndOffset {
                            leader_epoch: current_leader_epoch,
                            epoch,
                        },
                    );
                    self.set_sent(i);
                    return;
                }
                FollowerAction::Fetch { offset } => {
                    let leader_epoch = follower.leader_epoch();
                    self.send(
                        i + 1,
                        leader,
                        0,
                        Msg::Fetch {
                            leader_epoch,
                            offset,
                        },
                    );
                    self.set_sent(i);
                    return;
                }
                FollowerAction::Truncate { offset } => {
                    self.truncate(i, offset);
                    let b = &mut self.brokers[i];
                    let leo = b.leo();
                    let Role::Follower { follower, .. } = &mut b.role else {
                        return;
                    };
                    action = follower.after_truncation(&b.history, leo);
                }
            }
        }
    }

    fn set_sent(&mut self, i: usize) {
        let now = self.now;
        if let Role::Follower { sent_ms, .. } = &mut self.brokers[i].role {
            *sent_ms = Some(now);
        }
    }

    fn step_down(&mut self, i: usize) {
        if let Role::Leader { waiting, .. } = &self.brokers[i].role {
            let waiting = waiting.clone();
            for (value, _) in waiting {
                self.send(i + 1, self.producer, 0, Msg::ProduceResult(value, None));
            }
        }
        self.brokers[i].role = Role::None;
    }

    fn on_metadata(&mut self, i: usize, p: PartitionRecord, fenced: BTreeSet<i32>) {
        let b = &self.brokers[i];
        let newer = b.meta.as_ref().is_none_or(|m| {
            (p.leader_epoch, p.partition_epoch) > (m.leader_epoch, m.partition_epoch)
        });
        let id = b.id;
        let now = self.now;
        if let Role::Leader { leader, .. } = &mut self.brokers[i].role {
            let mut hws = Vec::new();
            for &r in &p.replicas {
                if r != id {
                    hws.extend(leader.set_broker_eligible(r, !fenced.contains(&r), now));
                }
            }
            if let Some(&hw) = hws.last() {
                self.publish_hw(i, hw);
                self.check_acks(i);
            }
        }
        if !newer {
            return;
        }
        self.brokers[i].meta = Some(p.clone());
        if p.leader == id {
            let b = &mut self.brokers[i];
            let leo = b.leo();
            if let Role::Leader { leader, .. } = &mut b.role {
                let old_epoch = leader.leader_epoch();
                match leader.on_metadata(&p, now) {
                    Ok(hw) => {
                        if p.leader_epoch > old_epoch {
                            assign_epoch(
                                &mut b.history,
                                EpochEntry {
                                    epoch: p.leader_epoch,
                                    start_offset: leo,
                                },
                            );
                            self.became_leader(i, p.leader_epoch);
                        }
                        if let Some(hw) = hw {
                            self.publish_hw(i, hw);
                        }
                        self.check_acks(i);
                    }
                    Err(_) => unreachable!("the record names this broker"),
                }
                return;
            }
            self.step_down(i);
            let b = &mut self.brokers[i];
            assign_epoch(
                &mut b.history,
                EpochEntry {
                    epoch: p.leader_epoch,
                    start_offset: leo,
                },
            );
            let config = self.config();
            let b = &mut self.brokers[i];
            let mut leader =
                PartitionLeader::new(id, &p, leo, b.hw, config, now).expect("leads it");
            for &r in &p.replicas {
                if r != id && fenced.contains(&r) {
                    leader.set_broker_eligible(r, false, now);
                }
            }
            // The new leader's high watermark (a lone ISR commits at once).
            let hw = leader.high_watermark();
            b.role = Role::Leader {
                leader,
                waiting: Vec::new(),
                alter_sent_ms: now,
                next_shrink_ms: now + REPLICA_LAG_TIME_MAX_MS / 2,
            };
            self.log(format!("broker {id} leads epoch {}", p.leader_epoch));
            self.became_leader(i, p.leader_epoch);
            self.publish_hw(i, hw);
        } else if p.leader == NO_LEADER {
            self.step_down(i);
        } else {
            let same = matches!(&self.brokers[i].role, Role::Follower { follower, .. }
                if follower.leader_id() == p.leader && follower.leader_epoch() == p.leader_epoch);
            if same {
                return;
            }
            self.step_down(i);
            let b = &mut self.brokers[i];
            let (follower, action) =
                FollowerPartition::new(p.leader, p.leader_epoch, &b.history, b.leo(), b.hw);
            b.role = Role::Follower {
                follower,
                sent_ms: None,
            };
            self.log(format!(
                "broker {id} follows {} in epoch {}",
                p.leader, p.leader_epoch
            ));
            self.follower_act(i, action);
        }
    }

    fn became_leader(&mut self, i: usize, epoch: i32) {
        let id = self.brokers[i].id;
        match self.leaders_by_epoch.insert(epoch, id) {
            Some(other) if other != id => {
                self.fail(format!("epoch {epoch} led by both {other} and {id}"))
            }
            _ => {}
        }
    }

    fn check_acks(&mut self, i: usize) {
        let Role::Leader {
            leader, waiting, ..
        } = &mut self.brokers[i].role
        else {
            return;
        };
        let mut replies = Vec::new();
        waiting.retain(
            |&(value, offset)| match leader.can_acknowledge(offset + 1) {
                AckDecision::Wait => true,
                AckDecision::Acknowledged => {
                    replies.push((value, Some(offset)));
                    false
                }
                AckDecision::NotEnoughReplicasAfterAppend => {
                    replies.push((value, None));
                    false
                }
            },
        );
        for (value, offset) in replies {
            self.send(i + 1, self.producer, 0, Msg::ProduceResult(value, offset));
        }
    }

    fn broker_receive(&mut self, i: usize, from: usize, msg: Msg) {
        let now = self.now;
        let incarnation = self.brokers[i].incarnation;
        match msg {
            Msg::Metadata(p, fenced) => self.on_metadata(i, p, fenced),
            Msg::AlterPartitionResult(sent, result) => {
                let Role::Leader {
                    leader,
                    alter_sent_ms,
                    ..
                } = &mut self.brokers[i].role
                else {
                    return;
                };
                match leader.on_alter_partition_result(&sent, result, now) {
                    Ok(Some(hw)) => {
                        self.publish_hw(i, hw);
                        self.check_acks(i);
                    }
                    Ok(None) => self.check_acks(i),
                    Err(again) => {
                        *alter_sent_ms = now;
                        self.send(i + 1, CONTROLLER, incarnation, Msg::AlterPartition(again));
                    }
                }
            }
            Msg::Produce(value) => {
                let sabotage = self.sabotage.ack_on_leader_append;
                let b = &mut self.brokers[i];
                let leo = b.leo();
                let Role::Leader {
                    leader, waiting, ..
                } = &mut b.role
                else {
                    self.send(i + 1, from, 0, Msg::ProduceResult(value, None));
                    return;
                };
                if leader.check_acks_all_append().is_err() {
                    self.send(i + 1, from, 0, Msg::ProduceResult(value, None));
                    return;
                }
                let epoch = leader.leader_epoch();
                b.log.push(Record { epoch, value });
                let hw = leader.on_local_append(leo + 1, now);
                if sabotage {
                    self.send(i + 1, from, 0, Msg::ProduceResult(value, Some(leo)));
                } else {
                    waiting.push((value, leo));
                }
                if let Some(hw) = hw {
                    self.publish_hw(i, hw);
                }
                self.check_acks(i);
            }
            Msg::Fetch {
                leader_epoch,
                offset,
            } => {
                let replica = from as i32;
                let b = &mut self.brokers[i];
                let Role::Leader { leader, .. } = &mut b.role else {
                    return;
                };
                let outcome = leader.on_follower_fetch(replica, leader_epoch, offset, now);
                let hw_now = leader.high_watermark();
                let result = match outcome {
                    Ok(outcome) => {
                        if let Some(request) = outcome.alter_partition {
                            if let Role::Leader { alter_sent_ms, .. } = &mut b.role {
                                *alter_sent_ms = now;
                            }
                            self.send(i + 1, CONTROLLER, incarnation, Msg::AlterPartition(request));
                        }
                        if let Some(hw) = outcome.high_watermark {
                            self.publish_hw(i, hw);
                            self.check_acks(i);
                        }
                        let b = &self.brokers[i];
                        let start = offset as usize;
                        let end = (start + FETCH_MAX_RECORDS).min(b.log.len());
                        Ok((b.log[start..end].to_vec(), hw_now.max(b.hw)))
                    }
                    Err(e) => Err(e),
                };
                // The fetch's reply goes to the incarnation that sent it.
                self.send_reply(
                    i,
                    from,
                    Msg::FetchResult {
                        leader_epoch,
                        offset,
                        result,
                    },
                );
            }
            Msg::FetchResult {
                leader_epoch,
                offset,
                result,
            } => {
                let b = &mut self.brokers[i];
                let Role::Follower { follower, sent_ms } = &mut b.role else {
                    return;
                };
                if follower.leader_epoch() != leader_epoch
                    || follower.fetch_offset() != Some(offset)
                {
                    return;
                }
                *sent_ms = None;
                let id = b.id;
                if let Err(e) = &result {
                    self.log(format!("broker {id} fetch at {offset}: {e:?}"));
                }
                let b = &mut self.brokers[i];
                let Role::Follower { follower, .. } = &mut b.role else {
                    return;
                };
                match result {
                    Ok((records, leader_hw)) => {
                        for record in &records {
                            let offset = b.log.len() as i64;
                            assign_epoch(
                                &mut b.history,
                                EpochEntry {
                                    epoch: record.epoch,
                                    start_offset: offset,
                                },
                            );
                            b.log.push(*record);
                        }
                        let leo = b.log.len() as i64;
                        let hw = follower.on_fetched(leo, leader_hw);
                        let next = follower.fetch_offset().expect("fetching");
                        if hw != b.hw {
                            self.publish_hw(i, hw);
                        }
                        if !records.is_empty() {
                            self.follower_act(i, FollowerAction::Fetch { offset: next });
                        }
                    }
                    Err(FetchError::OffsetOutOfRange) => {
                        let leo = b.log.len() as i64;
                        let action = follower.on_offset_out_of_range(&b.history, leo);
                        self.follower_act(i, action);
                    }
                    Err(_) => {}
                }
            }
            Msg::EndOffset {
                leader_epoch,
                epoch,
            } => {
                let b = &self.brokers[i];
                let answer = match &b.role {
                    Role::Leader { leader, .. } if leader.leader_epoch() == leader_epoch => {
                        Some(end_offset_for(&b.history, epoch, b.leo()))
                    }
                    _ => None,
                };
                self.send_reply(
                    i,
                    from,
                    Msg::EndOffsetResult {
                        leader_epoch,
                        epoch,
                        answer,
                    },
                );
            }
            Msg::EndOffsetResult {
                leader_epoch,
                epoch,
                answer,
            } => {
                let b = &mut self.brokers[i];
                let leo = b.leo();
                let Role::Follower { follower, .. } = &mut b.role else {
                    return;
                };
                if follower.leader_epoch() != leader_epoch {
                    return;
                }
                let Some(answer) = answer else { return };
                let id = b.id;
                let got = follower.on_end_offset(epoch, answer, &b.history, leo);
                self.log(format!(
                    "broker {id} end offset of epoch {epoch}: {answer:?} -> {got:?}"
                ));
                let Role::Follower { sent_ms, .. } = &mut self.brokers[i].role else {
                    return;
                };
                if let Some(action) = got {
                    *sent_ms = None;
                    self.follower_act(i, action);
                }
            }
            _ => {}
        }
    }

    /// A reply to broker `to`'s request: addressed to the incarnation alive now (the
    /// request came from it, this instant).
    fn send_reply(&mut self, i: usize, to: usize, msg: Msg) {
        let incarnation = self.brokers[to - 1].incarnation;
        self.send(i + 1, to, incarnation, msg);
    }

    fn broker_tick(&mut self, i: usize) {
        let now = self.now;
        if !self.brokers[i].alive {
            if now >= self.brokers[i].restart_at {
                self.restart(i);
            }
            return;
        }
        let incarnation = self.brokers[i].incarnation;
        if now >= self.brokers[i].next_heartbeat_ms {
            self.brokers[i].next_heartbeat_ms = now + HEARTBEAT_MS;
            self.send(i + 1, CONTROLLER, incarnation, Msg::Heartbeat);
        }
        let b = &mut self.brokers[i];
        let leo = b.leo();
        match &mut b.role {
            Role::Leader {
                leader,
                alter_sent_ms,
                next_shrink_ms,
                ..
            } => {
                let mut request = None;
                if let Some(pending) = leader.pending_alter_partition() {
                    if now - *alter_sent_ms >= RESEND_MS {
                        *alter_sent_ms = now;
                        request = Some(pending.clone());
                    }
                } else if now >= *next_shrink_ms {
                    *next_shrink_ms = now + REPLICA_LAG_TIME_MAX_MS / 2;
                    request = leader.maybe_shrink_isr(now);
                    *alter_sent_ms = now;
                }
                if let Some(request) = request {
                    self.send(i + 1, CONTROLLER, incarnation, Msg::AlterPartition(request));
                }
            }
            Role::Follower { follower, sent_ms } => {
                let due = sent_ms.is_none_or(|t| now - t >= RESEND_MS)
                    && (sent_ms.is_some() || now % 20 == 0);
                if due {
                    let action = follower.awaited_end_offset().or(follower
                        .fetch_offset()
                        .map(|offset| FollowerAction::Fetch { offset }));
                    let _ = leo;
                    if let Some(action) = action {
                        self.follower_act(i, action);
                    }
                }
            }
            Role::None => {}
        }
    }

    fn crash(&mut self, i: usize) {
        let down_ms = self.rng.range(100, 3_000);
        let b = &mut self.brokers[i];
        b.alive = false;
        b.restart_at = self.now + down_ms;
        b.role = Role::None;
        b.meta = None;
        b.hw = 0;
        b.checked = 0;
        self.stats.crashes += 1;
        let id = b.id;
        self.log(format!("broker {id} crashed"));
    }

    fn restart(&mut self, i: usize) {
        let b = &mut self.brokers[i];
        b.alive = true;
        b.incarnation += 1;
        // Loading the log drops epochs announced at or past its end (epochs.rs `load`).
        let leo = b.leo();
        b.history.retain(|e| e.start_offset < leo);
        b.next_heartbeat_ms = self.now + HEARTBEAT_MS;
        let (id, incarnation) = (b.id, b.incarnation);
        self.log(format!("broker {id} restarted (incarnation {incarnation})"));
        self.send(i + 1, CONTROLLER, incarnation, Msg::Register);
    }

    // ---- producer ----

    fn producer_receive(&mut self, msg: Msg) {
        match msg {
            Msg::Metadata(p, _) => {
                let newer = self.producer_meta.as_ref().is_none_or(|m| {
                    (p.leader_epoch, p.partition_epoch) > (m.leader_epoch, m.partition_epoch)
                });
                if newer {
                    self.producer_meta = Some(p);
                }
            }
            Msg::ProduceResult(value, Some(offset)) => {
                self.log(format!("producer: {value} acknowledged at {offset}"));
                self.stats.acked += 1;
                if let Some(previous) = self.acked.insert(offset, value) {
                    self.fail(format!(
                        "offset {offset} acknowledged for {previous} and for {value}"
                    ));
                }
                if let Some(c) = self.committed.get(offset as usize) {
                    if c.value != value {
                        self.fail(format!("acknowledged {value} at {offset}, committed {c:?}"));
                    }
                }
            }
            _ => {}
        }
    }

    fn producer_tick(&mut self) {
        if !self.rng.chance(300_000) {
            return;
        }
        let brokers = self.brokers.len() as u64;
        let target = match &self.producer_meta {
            Some(p) if p.leader > 0 && !self.rng.chance(100_000) => p.leader as usize,
            _ => 1 + self.rng.below(brokers) as usize,
        };
        let value = self.next_value;
        self.next_value += 1;
        self.send(self.producer, target, 0, Msg::Produce(value));
    }

    // ---- the run ----

    fn faults(&mut self) {
        let n = self.brokers.len();
        if self.rng.chance(2_500) {
            let i = self.rng.below(n as u64) as usize;
            if self.brokers[i].alive {
                self.crash(i);
            }
        }
        if self.rng.chance(1_500) {
            // auto.leader.rebalance: leadership moves while the old leader is live.
            let (min_isr, unclean) = self.change_context();
            let partition = partition_of(&self.image).clone();
            let active = self.ctx_active();
            let ctx = ChangeContext {
                is_active: &active,
                min_insync_replicas: min_isr,
                unclean_leader_election: unclean,
            };
            let change = partition_change::elect_preferred(self.topic_id, &partition, &ctx);
            self.write(change, "preferred leader election");
        }
        if self.rng.chance(3_000) {
            let mut side = BTreeSet::new();
            for node in 0..=self.producer {
                if self.rng.chance(400_000) {
                    side.insert(node);
                }
            }
            if !side.is_empty() && side.len() <= self.producer {
                let heal = self.now + self.rng.range(100, 4_000);
                self.log(format!("network: {side:?} cut off until {heal}"));
                self.cuts.push((side, heal));
            }
        }
    }

    fn deliver(&mut self) {
        let now = self.now;
        let mut due: Vec<Envelope> = Vec::new();
        let mut rest = Vec::with_capacity(self.net.len());
        for e in self.net.drain(..) {
            if e.at <= now {
                due.push(e);
            } else {
                rest.push(e);
            }
        }
        self.net = rest;
        due.sort_by_key(|e| e.at);
        for e in due {
            if self.cut(e.from, e.to) {
                continue;
            }
            if e.to == CONTROLLER {
                self.controller_receive(e.from, e.incarnation, e.msg);
            } else if e.to == self.producer {
                self.producer_receive(e.msg);
            } else {
                let i = e.to - 1;
                let b = &self.brokers[i];
                if !b.alive || (e.incarnation != 0 && e.incarnation != b.incarnation) {
                    continue;
                }
                self.broker_receive(i, e.from, e.msg);
                self.check_reported_hw(i);
            }
        }
    }

    fn tick(&mut self, faults: bool) {
        self.now += TICK_MS;
        let now = self.now;
        self.cuts.retain(|(_, heal)| *heal > now);
        self.deliver();
        self.controller_tick();
        for i in 0..self.brokers.len() {
            self.broker_tick(i);
            self.check_reported_hw(i);
        }
        if faults {
            self.producer_tick();
            self.faults();
        }
    }

    fn run(&mut self) -> Result<Stats, String> {
        while self.now < FAULT_PHASE_MS && self.failure.is_none() {
            self.tick(true);
        }
        self.log("healing".into());
        self.cuts.clear();
        self.loss_per_million = 0;
        for i in 0..self.brokers.len() {
            if !self.brokers[i].alive {
                self.brokers[i].restart_at = self.now;
            }
        }
        let end = self.now + QUIET_PHASE_MS;
        while self.now < end && self.failure.is_none() {
            self.tick(false);
        }
        self.final_check();
        match self.failure.take() {
            Some(failure) => Err(failure),
            None => Ok(self.stats),
        }
    }

    fn final_check(&mut self) {
        let acked: Vec<(i64, u64)> = self.acked.iter().map(|(&o, &v)| (o, v)).collect();
        for (offset, value) in acked {
            match self.committed.get(offset as usize) {
                Some(c) if c.value == value => {}
                other => self.fail(format!(
                    "acknowledged {value} at {offset} is lost: committed {other:?}"
                )),
            }
        }
        let p = partition_of(&self.image).clone();
        if p.leader == NO_LEADER {
            // Every replica that could lead cleanly left after an unclean shutdown:
            // Kafka keeps the partition offline (only an unclean election brings it back).
            self.stats.offline_at_end = true;
            return;
        }
        let leader = &self.brokers[p.leader as usize - 1];
        let (leader_log, leader_hw) = (leader.log.clone(), leader.hw);
        if let Role::Leader { leader, .. } = &self.brokers[p.leader as usize - 1].role {
            let state = format!("{leader:?}");
            self.log(format!("final leader state {state}"));
        }
        let ends: Vec<(i32, usize, i64)> = self
            .brokers
            .iter()
            .map(|b| (b.id, b.log.len(), b.hw))
            .collect();
        self.log(format!("final (broker, log end, hw): {ends:?}"));
        if leader_hw != leader_log.len() as i64 {
            self.fail(format!(
                "not converged: leader {} hw {leader_hw} log end {}",
                p.leader,
                leader_log.len()
            ));
        }
        for i in 0..self.brokers.len() {
            if self.brokers[i].log != leader_log {
                let (id, len) = (self.brokers[i].id, self.brokers[i].log.len());
                self.fail(format!(
                    "not converged: broker {id} log of {len} differs from the leader's {}",
                    leader_log.len()
                ));
            }
        }
        if self.committed.len() > leader_log.len()
            || leader_log[..self.committed.len()] != self.committed[..]
        {
            self.fail("the leader's log lost committed records".into());
        }
    }
}

fn run_seed(seed: u64, sabotage: Sabotage, trace: bool) -> (Result<Stats, String>, Option<String>) {
    let mut sim = Sim::new(seed, sabotage, trace);
    let result = sim.run();
    (result, sim.trace.take())
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn simulated_clusters_keep_acknowledged_records() {
    if let Some(seed) = env_u64("MILLRACE_SIM_SEED") {
        let (result, trace) = run_seed(seed, Sabotage::default(), true);
        eprintln!("{}", trace.unwrap_or_default());
        assert!(result.is_ok(), "seed {seed}: {}", result.unwrap_err());
        return;
    }
    let seeds = env_u64("MILLRACE_SIM_SEEDS").unwrap_or(2000);
    let mut totals = Stats::default();
    let mut offline = 0;
    for seed in 0..seeds {
        match run_seed(seed, Sabotage::default(), false).0 {
            Ok(stats) => {
                totals.acked += stats.acked;
                totals.leader_changes += stats.leader_changes;
                totals.crashes += stats.crashes;
                offline += u64::from(stats.offline_at_end);
            }
            Err(failure) => panic!(
                "seed {seed} failed: {failure}\nreplay: MILLRACE_SIM_SEED={seed} cargo test --lib replication::sim -- --nocapture"
            ),
        }
    }
    eprintln!(
        "{seeds} seeds: {} records acknowledged, {} leader changes, {} crashes, {offline} offline at the end",
        totals.acked, totals.leader_changes, totals.crashes
    );
    // The runs must exercise something: acknowledgements and leader changes.
    assert!(totals.acked > seeds * 10 && totals.leader_changes > seeds);
}

/// The first seed below 200 whose run breaks an invariant.
fn first_caught(sabotage: Sabotage) -> Option<u64> {
    (0..200).find(|&seed| match run_seed(seed, sabotage, false).0 {
        Err(failure) => {
            eprintln!("{sabotage:?} caught by seed {seed}: {failure}");
            true
        }
        Ok(_) => false,
    })
}

#[test]
fn acknowledging_on_leader_append_is_caught() {
    let sabotage = Sabotage {
        ack_on_leader_append: true,
        ..Sabotage::default()
    };
    let caught = first_caught(sabotage);
    assert!(
        caught.is_some(),
        "no seed of 200 caught the broken acks=all rule"
    );
}

#[test]
fn electing_out_of_sync_replicas_is_caught() {
    let sabotage = Sabotage {
        unclean_leader_election: true,
        ..Sabotage::default()
    };
    let caught = first_caught(sabotage);
    assert!(
        caught.is_some(),
        "no seed of 200 caught an unclean election losing records"
    );
}
