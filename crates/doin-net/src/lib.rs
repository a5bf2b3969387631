//! # doin-net
//!
//! DOIN's peer-to-peer layer on libp2p: TCP with noise and yamux, the node's chain key as its
//! libp2p identity, bootstrap peers plus kademlia peer exchange and optional mDNS, gossipsub
//! with application-level validation and peer scoring, and request-response for block sync
//! and parameter blobs (model weights never travel by gossip).
//!
//! The crate moves bytes and verdicts; it decides nothing. The node validates every message
//! against its chain (doin-core) and reports the verdict back, so nothing is forwarded
//! before it is checked.

mod codec;
mod service;

pub use codec::{SyncCodec, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
pub use libp2p::gossipsub::MessageId;
pub use libp2p::multiaddr::Protocol;
pub use libp2p::{Multiaddr, PeerId};
pub use service::{
    libp2p_keypair, start, start_with_metrics, Acceptance, NetConfig, NetError, NetEvent,
    NetHandle, PeerInfo, ReplyId, EVENT_QUEUE, GRAYLIST_THRESHOLD,
};
