//! DescribeCluster: this cluster's id, its controller and its brokers.

use kafka_protocol::messages::{
    describe_cluster_response::DescribeClusterBroker, BrokerId, DescribeClusterRequest,
    DescribeClusterResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::RequestContext;

pub fn handle(ctx: &RequestContext, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let image = ctx.broker.metadata.image();
    // The unfenced brokers, with their advertised client endpoints.
    let brokers = image
        .live_brokers()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(StrBytes::from_string))
        })
        .collect();
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(image.cluster_id.clone()))
        .with_controller_id(BrokerId(
            image.client_controller_id(ctx.broker.config.node_id),
        ))
        .with_brokers(brokers);
    if ctx.version() >= 1 {
        response = response.with_endpoint_type(request.endpoint_type);
    }
    response
}
