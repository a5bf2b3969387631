//! The network service: one libp2p swarm driven by one task, talked to through a bounded
//! command channel ([`NetHandle`]) and heard from through a bounded event channel
//! ([`NetEvent`]).
//!
//! Small behaviours composed into one swarm, in the style of rust-libp2p's examples:
//! gossipsub (validated, content-addressed gossip), identify, kademlia (peer exchange), mDNS
//! (LAN discovery, optional) and request-response (sync and parameter blobs).
//!
//! **Nothing is forwarded before it is checked.** Gossipsub runs with `validate_messages`:
//! a received message waits until the application reports a verdict
//! ([`NetHandle::validate`]). Messages that do not even decode are rejected here. A rejected
//! message counts against its sender's peer score; a peer whose score falls below the
//! graylist threshold is disconnected.
//!
//! **Metrics** ([`start_with_metrics`]): libp2p's own metrics (`libp2p-metrics`) go into the
//! caller's `prometheus_client` registry under the prefix `libp2p`: the swarm's connection
//! and listener events, gossipsub, identify and kademlia events (recorded by the swarm task
//! as it handles them) and the bytes sent and received per transport protocol stack.
//! `libp2p-metrics` has no recorder for request-response, so sync requests are not among
//! them (their connections are).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use doin_core::identity::Keypair;
use doin_core::wire::{GossipMessage, SyncRequest, SyncResponse, Topic, MAX_GOSSIP_BLOCK_BYTES};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId};
use libp2p::metrics::{Metrics, Recorder, Registry};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, kad, mdns, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::codec::SyncCodec;

/// Commands waiting for the swarm task; senders wait for room beyond this.
const COMMAND_QUEUE: usize = 1024;
/// Events waiting for the application; beyond this gossip is dropped (reported `Ignore`)
/// and requests are answered with an error, never buffered without bound.
pub const EVENT_QUEUE: usize = 4096;
/// How often peer scores are checked for peers to disconnect.
const SCORE_CHECK: Duration = Duration::from_secs(1);
/// Peer score below which a peer's messages are ignored and the peer disconnected.
pub const GRAYLIST_THRESHOLD: f64 = -80.0;

/// Settings of the network service.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Network name: namespaces topics and protocols, so two networks never mix.
    pub chain_id: String,
    /// Addresses to listen on, e.g. `/ip4/127.0.0.1/tcp/0`.
    pub listen: Vec<Multiaddr>,
    /// Peers dialed at start (`/ip4/…/tcp/…`, optionally with `/p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Zero-configuration discovery on the LAN.
    pub mdns: bool,
    /// Most connected peers; further connections are closed.
    pub max_peers: usize,
    /// Gossipsub heartbeat.
    pub heartbeat: Duration,
    /// How long a sync request may take.
    pub request_timeout: Duration,
}

impl NetConfig {
    /// Loopback defaults for `chain_id`: an ephemeral port, no mDNS.
    pub fn loopback(chain_id: &str) -> Self {
        NetConfig {
            chain_id: chain_id.to_string(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")],
            bootstrap: Vec::new(),
            mdns: false,
            max_peers: 64,
            heartbeat: Duration::from_millis(500),
            request_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Error)]
pub enum NetError {
    #[error("network identity: {0}")]
    Identity(String),
    #[error("network transport: {0}")]
    Transport(String),
    #[error("listening on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("gossip: {0}")]
    Gossip(String),
    #[error("request to {peer}: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("the network service stopped")]
    Stopped,
}

/// What the application decided about a gossiped message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// Valid: forward it.
    Accept,
    /// Invalid: drop it and penalize the peer that sent it.
    Reject,
    /// Not invalid, but not worth forwarding (a duplicate, too old): drop it quietly.
    Ignore,
}

/// Identifies an inbound request to answer with [`NetHandle::respond`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyId(u64);

/// What the network tells the application.
#[derive(Debug)]
pub enum NetEvent {
    /// A decoded gossip message waiting for [`NetHandle::validate`].
    Gossip {
        source: PeerId,
        id: MessageId,
        topic: String,
        message: GossipMessage,
    },
    /// A peer's request, to answer with [`NetHandle::respond`].
    Request {
        peer: PeerId,
        request: SyncRequest,
        reply: ReplyId,
    },
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    Listening(Multiaddr),
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    pub peer_id: PeerId,
    pub address: Option<Multiaddr>,
    /// Its gossipsub score as seen by this node.
    pub score: f64,
    /// Topics it subscribed to.
    pub topics: Vec<String>,
}

enum Command {
    Subscribe(String),
    Publish(String, Vec<u8>, oneshot::Sender<Result<(), NetError>>),
    Validate(MessageId, PeerId, Acceptance),
    Request(
        PeerId,
        SyncRequest,
        oneshot::Sender<Result<SyncResponse, NetError>>,
    ),
    Respond(ReplyId, SyncResponse),
    Dial(Multiaddr),
    Disconnect(PeerId),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
}

/// The composed behaviour.
#[derive(NetworkBehaviour)]
struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    mdns: Toggle<mdns::tokio::Behaviour>,
    sync: request_response::Behaviour<SyncCodec>,
}

/// Talks to the network task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NetHandle {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    chain_id: String,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Subscribe(_) => "Subscribe",
            Command::Publish(..) => "Publish",
            Command::Validate(..) => "Validate",
            Command::Request(..) => "Request",
            Command::Respond(..) => "Respond",
            Command::Dial(_) => "Dial",
            Command::Disconnect(_) => "Disconnect",
            Command::Peers(_) => "Peers",
            Command::ListenAddrs(_) => "ListenAddrs",
        })
    }
}

impl NetHandle {
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn send(&self, command: Command) -> Result<(), NetError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Receives `topic`'s messages from now on.
    pub async fn subscribe(&self, topic: &Topic) -> Result<(), NetError> {
        self.send(Command::Subscribe(topic.name(&self.chain_id)))
            .await
    }

    /// Gossips a message on `topic`.
    pub async fn publish(&self, topic: &Topic, message: &GossipMessage) -> Result<(), NetError> {
        self.publish_bytes(topic, message.to_wire()).await
    }

    /// Gossips raw bytes on `topic`: [`NetHandle::publish`] without the encoding. Honest
    /// nodes never need it; adversarial tests do.
    pub async fn publish_bytes(&self, topic: &Topic, bytes: Vec<u8>) -> Result<(), NetError> {
        let (done, wait) = oneshot::channel();
        self.send(Command::Publish(topic.name(&self.chain_id), bytes, done))
            .await?;
        wait.await.map_err(|_| NetError::Stopped)?
    }

    /// Reports the application's verdict on a gossiped message.
    pub async fn validate(
        &self,
        id: MessageId,
        source: PeerId,
        acceptance: Acceptance,
    ) -> Result<(), NetError> {
        self.send(Command::Validate(id, source, acceptance)).await
    }

    /// Asks `peer` and waits for its answer (bounded by the request timeout).
    pub async fn request(
        &self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<SyncResponse, NetError> {
        let (done, wait) = oneshot::channel();
        self.send(Command::Request(peer, request, done)).await?;
        wait.await.map_err(|_| NetError::Stopped)?
    }

    /// Answers an inbound request.
    pub async fn respond(&self, reply: ReplyId, response: SyncResponse) -> Result<(), NetError> {
        self.send(Command::Respond(reply, response)).await
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.send(Command::Dial(addr)).await
    }

    /// Closes every connection to `peer` (a partition, in tests; a ban, in operation).
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), NetError> {
        self.send(Command::Disconnect(peer)).await
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        let (done, wait) = oneshot::channel();
        self.send(Command::Peers(done)).await?;
        wait.await.map_err(|_| NetError::Stopped)
    }

    /// The addresses the node listens on (with their actual ports).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        let (done, wait) = oneshot::channel();
        self.send(Command::ListenAddrs(done)).await?;
        wait.await.map_err(|_| NetError::Stopped)
    }
}

/// The libp2p identity of a node: its chain key (ed25519), so its peer id and its account are
/// the same public key.
pub fn libp2p_keypair(key: &Keypair) -> Result<libp2p::identity::Keypair, NetError> {
    libp2p::identity::Keypair::ed25519_from_bytes(key.secret_bytes())
        .map_err(|e| NetError::Identity(e.to_string()))
}

/// Message ids are the content's hash: the same block gossiped by two peers is one message.
fn content_id(message: &gossipsub::Message) -> MessageId {
    MessageId::from(blake3::hash(&message.data).as_bytes().to_vec())
}

fn topic_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        // Good behaviour earns a little (at most 1 for staying in the mesh, 5 for first
        // deliveries, per topic before its weight): the defaults (a 1 ms quantum, a cap of
        // 3,600) let a peer bank thousands of points and then misbehave for minutes.
        time_in_mesh_weight: 0.1,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 10.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_cap: 10.0,
        // Blocks and optimae messages are rare: not delivering "enough" of them is no fault.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // One invalid message costs 20 points; four graylist the sender (weights multiply
        // by the topic weight 0.5 and the count squared).
        invalid_message_deliveries_weight: -40.0,
        invalid_message_deliveries_decay: 0.5,
        ..Default::default()
    }
}

fn build_behaviour(
    key: &libp2p::identity::Keypair,
    config: &NetConfig,
) -> Result<Behaviour, NetError> {
    let peer_id = key.public().to_peer_id();
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(content_id)
        .max_transmit_size(MAX_GOSSIP_BLOCK_BYTES + 4096)
        .heartbeat_interval(config.heartbeat)
        .build()
        .map_err(|e| NetError::Gossip(e.to_string()))?;
    let mut gossipsub =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)
            .map_err(|e| NetError::Gossip(e.to_string()))?;
    let score = gossipsub::PeerScoreParams {
        // Every test peer shares 127.0.0.1; colocation is no evidence of a Sybil there.
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: GRAYLIST_THRESHOLD,
        ..Default::default()
    };
    gossipsub
        .with_peer_score(score, thresholds)
        .map_err(NetError::Gossip)?;
    let protocol = |what: &str| format!("/doin/{}/{what}/1", config.chain_id);
    let identify = identify::Behaviour::new(identify::Config::new(protocol("id"), key.public()));
    let kad_protocol = StreamProtocol::try_from_owned(protocol("kad"))
        .map_err(|e| NetError::Transport(e.to_string()))?;
    let mut kad = kad::Behaviour::with_config(
        peer_id,
        kad::store::MemoryStore::new(peer_id),
        kad::Config::new(kad_protocol),
    );
    kad.set_mode(Some(kad::Mode::Server));
    let mdns = if config.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|e| NetError::Transport(format!("mDNS: {e}")))?,
        )
    } else {
        None
    };
    let sync_protocol = StreamProtocol::try_from_owned(protocol("sync"))
        .map_err(|e| NetError::Transport(e.to_string()))?;
    let sync = request_response::Behaviour::with_codec(
        SyncCodec,
        [(sync_protocol, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(64),
    );
    Ok(Behaviour {
        gossipsub,
        identify,
        kad,
        mdns: mdns.into(),
        sync,
    })
}

/// Starts the network: builds the swarm, listens, dials the bootstrap peers and spawns the
/// task that drives it (on the current tokio runtime).
pub fn start(
    key: &Keypair,
    config: NetConfig,
) -> Result<(NetHandle, mpsc::Receiver<NetEvent>), NetError> {
    start_inner(key, config, None)
}

/// [`start`], recording libp2p's metrics into `registry` (under the prefix `libp2p`, below
/// the registry's own prefix): the registry is borrowed only to register the metric families;
/// the swarm task keeps the metrics and records its events into them from then on.
pub fn start_with_metrics(
    key: &Keypair,
    config: NetConfig,
    registry: &mut Registry,
) -> Result<(NetHandle, mpsc::Receiver<NetEvent>), NetError> {
    start_inner(key, config, Some(registry))
}

fn start_inner(
    key: &Keypair,
    config: NetConfig,
    registry: Option<&mut Registry>,
) -> Result<(NetHandle, mpsc::Receiver<NetEvent>), NetError> {
    let identity = libp2p_keypair(key)?;
    let local_peer_id = identity.public().to_peer_id();
    let behaviour = build_behaviour(&identity, &config)?;
    let transport = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Transport(e.to_string()))?;
    let swarm_config =
        |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(60));
    // The two branches differ in the transport's type (counting bytes wraps it), not in the
    // swarm's.
    let (mut swarm, metrics) = match registry {
        Some(registry) => {
            let metrics = Metrics::new(registry);
            let swarm = transport
                .with_bandwidth_metrics(registry)
                .with_behaviour(|_| behaviour)
                .map_err(|e| NetError::Transport(e.to_string()))?
                .with_swarm_config(swarm_config)
                .build();
            (swarm, Some(metrics))
        }
        None => {
            let swarm = transport
                .with_behaviour(|_| behaviour)
                .map_err(|e| NetError::Transport(e.to_string()))?
                .with_swarm_config(swarm_config)
                .build();
            (swarm, None)
        }
    };
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    for addr in &config.bootstrap {
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!("network: dialing bootstrap peer {addr}: {e}");
        }
    }
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (events, event_rx) = mpsc::channel(EVENT_QUEUE);
    let task = Task {
        swarm,
        metrics,
        events,
        max_peers: config.max_peers,
        replies: HashMap::new(),
        next_reply: 0,
        pending: HashMap::new(),
        addresses: HashMap::new(),
    };
    tokio::spawn(task.run(command_rx));
    Ok((
        NetHandle {
            commands,
            local_peer_id,
            chain_id: config.chain_id,
        },
        event_rx,
    ))
}

/// The swarm and what it must remember between events.
struct Task {
    swarm: Swarm<Behaviour>,
    /// libp2p's metrics, when the caller gave a registry.
    metrics: Option<Metrics>,
    events: mpsc::Sender<NetEvent>,
    max_peers: usize,
    /// Inbound requests waiting for the application's answer.
    replies: HashMap<ReplyId, ResponseChannel<SyncResponse>>,
    next_reply: u64,
    /// Outbound requests waiting for the peer's answer.
    pending: HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<SyncResponse, NetError>>)>,
    /// The address of each connected peer (its first connection).
    addresses: HashMap<PeerId, Multiaddr>,
}

impl Task {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut score_check = tokio::time::interval(SCORE_CHECK);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    // Every handle dropped: the node is shutting down.
                    None => return,
                },
                _ = score_check.tick() => self.drop_graylisted(),
            }
        }
    }

    /// Hands an event to the application; `false` when its queue is full (or it is gone).
    fn emit(&self, event: NetEvent) -> bool {
        self.events.try_send(event).is_ok()
    }

    fn on_disconnected(&mut self, peer_id: PeerId) {
        if self.addresses.remove(&peer_id).is_some() {
            self.emit(NetEvent::PeerDisconnected(peer_id));
        }
    }

    fn drop_graylisted(&mut self) {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let bad: Vec<PeerId> = self
            .swarm
            .connected_peers()
            .filter(|p| {
                gossipsub
                    .peer_score(p)
                    .is_some_and(|s| s < GRAYLIST_THRESHOLD)
            })
            .copied()
            .collect();
        for peer in bad {
            tracing::warn!(
                "network: disconnecting {peer}: peer score below the graylist threshold"
            );
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn on_command(&mut self, command: Command) {
        let behaviour = self.swarm.behaviour_mut();
        match command {
            Command::Subscribe(name) => {
                let topic = IdentTopic::new(name);
                if let Err(e) = behaviour.gossipsub.subscribe(&topic) {
                    tracing::warn!("network: subscribing to {topic}: {e}");
                }
                if let Err(e) = behaviour.gossipsub.set_topic_params(topic, topic_params()) {
                    tracing::warn!("network: topic score parameters: {e}");
                }
            }
            Command::Publish(name, bytes, done) => {
                let result = behaviour
                    .gossipsub
                    .publish(IdentTopic::new(name), bytes)
                    .map(|_| ())
                    .or_else(|e| match e {
                        // Alone on the topic: nothing to send, nothing lost. Already
                        // published (ids are content hashes): it is on its way.
                        gossipsub::PublishError::NoPeersSubscribedToTopic
                        | gossipsub::PublishError::Duplicate => Ok(()),
                        e => Err(NetError::Gossip(e.to_string())),
                    });
                let _ = done.send(result);
            }
            Command::Validate(id, source, acceptance) => {
                let acceptance = match acceptance {
                    Acceptance::Accept => MessageAcceptance::Accept,
                    Acceptance::Reject => MessageAcceptance::Reject,
                    Acceptance::Ignore => MessageAcceptance::Ignore,
                };
                behaviour
                    .gossipsub
                    .report_message_validation_result(&id, &source, acceptance);
            }
            Command::Request(peer, request, done) => {
                let id = behaviour.sync.send_request(&peer, request);
                self.pending.insert(id, (peer, done));
            }
            Command::Respond(reply, response) => {
                if let Some(channel) = self.replies.remove(&reply) {
                    // The peer may have gone: nothing to do about it.
                    let _ = behaviour.sync.send_response(channel, response);
                }
            }
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::warn!("network: dialing {addr}: {e}");
                }
            }
            Command::Disconnect(peer) => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::Peers(done) => {
                let gossipsub = &self.swarm.behaviour().gossipsub;
                let mut topics: HashMap<PeerId, Vec<String>> = HashMap::new();
                for topic in gossipsub.topics() {
                    for peer in gossipsub.all_peers().filter(|(_, t)| t.contains(&topic)) {
                        topics.entry(*peer.0).or_default().push(topic.to_string());
                    }
                }
                let peers = self
                    .swarm
                    .connected_peers()
                    .map(|p| PeerInfo {
                        peer_id: *p,
                        address: self.addresses.get(p).cloned(),
                        score: gossipsub.peer_score(p).unwrap_or(0.0),
                        topics: topics.remove(p).unwrap_or_default(),
                    })
                    .collect();
                let _ = done.send(peers);
            }
            Command::ListenAddrs(done) => {
                let _ = done.send(self.swarm.listeners().cloned().collect());
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let Some(metrics) = &self.metrics {
            record(metrics, &event);
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                self.emit(NetEvent::Listening(address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                if self.addresses.len() >= self.max_peers && !self.addresses.contains_key(&peer_id)
                {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                let addr = endpoint.get_remote_address().clone();
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer_id, addr.clone());
                if self.addresses.insert(peer_id, addr).is_none() {
                    self.emit(NetEvent::PeerConnected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => self.on_disconnected(peer_id),
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                // Peer exchange: what a peer says it listens on feeds the DHT.
                let kad = &mut self.swarm.behaviour_mut().kad;
                for addr in info.listen_addrs {
                    kad.add_address(&peer_id, addr);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let known: HashSet<PeerId> = self.addresses.keys().copied().collect();
                for (peer, addr) in found {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    if !known.contains(&peer) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            BehaviourEvent::Sync(event) => self.on_sync_event(event),
            _ => {}
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: MessageId, message: gossipsub::Message) {
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        let decoded = match GossipMessage::from_wire(&message.data) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("network: undecodable gossip from {source}: {e}");
                gossipsub.report_message_validation_result(&id, &source, MessageAcceptance::Reject);
                return;
            }
        };
        let event = NetEvent::Gossip {
            source,
            id: id.clone(),
            topic: message.topic.to_string(),
            message: decoded,
        };
        if !self.emit(event) {
            // The application is behind: drop the message without blaming the sender.
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &source, MessageAcceptance::Ignore);
        }
    }

    fn on_sync_event(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let reply = ReplyId(self.next_reply);
                    self.next_reply += 1;
                    if self.emit(NetEvent::Request {
                        peer,
                        request,
                        reply,
                    }) {
                        self.replies.insert(reply, channel);
                    } else {
                        let busy = SyncResponse::Error("busy: try another peer".into());
                        let _ = self.swarm.behaviour_mut().sync.send_response(channel, busy);
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((_, done)) = self.pending.remove(&request_id) {
                        let _ = done.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some((peer, done)) = self.pending.remove(&request_id) {
                    let _ = done.send(Err(NetError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            _ => {}
        }
    }
}

/// Records a swarm event, and the event of each behaviour `libp2p-metrics` knows, into
/// libp2p's metrics (mDNS and request-response have no recorder).
fn record(metrics: &Metrics, event: &SwarmEvent<BehaviourEvent>) {
    metrics.record(event);
    match event {
        SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => metrics.record(e),
        SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => metrics.record(e),
        SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => metrics.record(e),
        _ => {}
    }
}
