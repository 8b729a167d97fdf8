//! FindCoordinator: for a group the leader of its `__consumer_offsets` shard, for a
//! transactional id the leader of its `__transaction_state` shard (on one node, this
//! node). The first request creates the topic; this node loads a shard it leads before
//! naming itself. v4+ batches keys (KIP-699), each with its own error.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::metadata::internal_topics::{OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::protocol::{errors, RequestContext};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where a key's coordinator is: (node id, host, port), or Kafka's error and message.
type Located = Result<(i32, String, i32), (i16, &'static str)>;

/// The coordinator of `key`: the leader of its shard of `__consumer_offsets` (a group)
/// or `__transaction_state` (a transactional id); the topic is created on first use and
/// this node loads the shard before naming itself.
async fn locate(ctx: &RequestContext, key_type: i8, key: &str) -> Located {
    match key_type {
        KEY_TYPE_GROUP => {
            let groups = &ctx.broker.groups;
            let shard = groups.shard_of(key);
            locate_shard(ctx, OFFSETS_TOPIC, shard, || async {
                groups.ensure_ready(shard).await.is_ok()
            })
            .await
        }
        KEY_TYPE_TRANSACTION => {
            let txns = &ctx.broker.txns;
            let shard = txns.shard_of(key);
            locate_shard(ctx, TRANSACTION_STATE_TOPIC, shard, || async {
                txns.ensure_ready(shard).await.is_ok()
            })
            .await
        }
        _ => Err((errors::INVALID_REQUEST, "Unknown coordinator key type.")),
    }
}

/// The leader of `shard` of `topic`; `ensure_ready` creates the topic and loads what
/// this node leads, and says whether `shard` answers here.
async fn locate_shard<F, Fut>(
    ctx: &RequestContext,
    topic: &str,
    shard: i32,
    ensure_ready: F,
) -> Located
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let unavailable = (
        errors::COORDINATOR_NOT_AVAILABLE,
        "The coordinator is not available.",
    );
    let node_id = ctx.broker.config.node_id;
    let leader_of = || {
        let image = ctx.broker.metadata.image();
        let leader = image
            .topics
            .get(topic)?
            .partitions
            .iter()
            .find(|p| p.partition == shard)?
            .leader;
        let broker = image.brokers.get(&leader).filter(|b| !b.fenced)?;
        Some((leader, broker.host.clone(), broker.port))
    };
    let mut leader = leader_of();
    if leader.is_none() && !ctx.broker.metadata.image().topics.contains_key(topic) {
        // The first request creates the topic (and loads what this node leads); the
        // shard's leader is known after that.
        let _ = ensure_ready().await;
        leader = leader_of();
    }
    match leader {
        Some((leader, ..)) if leader == node_id => {
            if ensure_ready().await {
                Ok((
                    node_id,
                    ctx.broker.config.advertised_host.clone(),
                    i32::from(ctx.broker.config.advertised_port),
                ))
            } else {
                Err(unavailable)
            }
        }
        Some(elsewhere) => Ok(elsewhere),
        None => Err(unavailable),
    }
}

pub async fn handle(
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    if ctx.version() >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            let located = locate(ctx, request.key_type, &key).await;
            let entry = Coordinator::default().with_key(key);
            coordinators.push(match located {
                Ok((node, host, port)) => entry
                    .with_node_id(BrokerId(node))
                    .with_host(StrBytes::from_string(host))
                    .with_port(port),
                Err((code, message)) => entry
                    .with_error_code(code)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_message(Some(StrBytes::from_static_str(message))),
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let located = locate(ctx, request.key_type, &request.key).await;
    let (response, message) = match located {
        Ok((node, host, port)) => (
            FindCoordinatorResponse::default()
                .with_node_id(BrokerId(node))
                .with_host(StrBytes::from_string(host))
                .with_port(port),
            None,
        ),
        Err((code, message)) => (
            FindCoordinatorResponse::default()
                .with_error_code(code)
                .with_node_id(BrokerId(-1))
                .with_port(-1),
            Some(message),
        ),
    };
    if ctx.version() >= 1 {
        response.with_error_message(message.map(StrBytes::from_static_str))
    } else {
        response
    }
}
