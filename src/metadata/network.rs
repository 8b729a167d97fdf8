//! Raft transport between voters.
//!
//! Today the quorum has a single voter, so openraft never needs to reach a peer; every RPC
//! reports the target `Unreachable` (openraft then backs off and retries). A later issue
//! adds the TCP transport and more voters by replacing [`NoPeers`] with a factory that
//! connects to `BasicNode::addr`: storage, state machine and controller stay as they are.

use std::io;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};

use super::TypeConfig;

/// Builds clients for peers that cannot be reached (there is no transport yet).
pub(crate) struct NoPeers;

pub(crate) struct UnreachablePeer {
    target: u64,
}

impl UnreachablePeer {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<u64, BasicNode, E> {
        let cause = io::Error::new(
            io::ErrorKind::NotConnected,
            format!("no metadata transport to node {} yet", self.target),
        );
        RPCError::Unreachable(Unreachable::new(&cause))
    }
}

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = UnreachablePeer;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
        UnreachablePeer { target }
    }
}

impl RaftNetwork<TypeConfig> for UnreachablePeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(self.unreachable())
    }
}
