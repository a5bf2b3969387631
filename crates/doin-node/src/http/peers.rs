//! `GET /peers`: the peers this node is connected to.

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use super::{json, ApiState};

/// One connected peer.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct PeerView {
    /// libp2p peer id (the peer's chain key).
    peer_id: String,
    /// The address of its connection.
    address: Option<String>,
    /// Its gossip score as this node sees it (below −80 it is disconnected).
    score: f64,
    /// The domains it gossips about (from its topic subscriptions).
    domains: Vec<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct PeersView {
    /// Whether this node runs the network (`p2p.listen` or `bootstrap_peers` set).
    networked: bool,
    peer_id: Option<String>,
    peers: Vec<PeerView>,
}

/// The connected peers, with address, domains and score.
pub(super) async fn peers(State(api): State<ApiState>) -> ApiResult<Response> {
    let Some(handle) = api.ctx.net.handle.get() else {
        return Ok(json(&PeersView {
            networked: false,
            peer_id: None,
            peers: Vec::new(),
        }));
    };
    let peers = handle
        .peers()
        .await
        .map_err(|e| ApiError::internal(&e))?
        .into_iter()
        .map(|p| PeerView {
            peer_id: p.peer_id.to_string(),
            address: p.address.map(|a| a.to_string()),
            score: p.score,
            domains: p
                .topics
                .iter()
                .filter_map(|t| t.split("/domain/").nth(1))
                .filter_map(|rest| rest.strip_suffix("/1"))
                .map(str::to_string)
                .collect(),
        })
        .collect();
    Ok(json(&PeersView {
        networked: true,
        peer_id: Some(handle.local_peer_id().to_string()),
        peers,
    }))
}
