//! The node's HTTP API as typed calls (see `docs/api.md`). Only the fields a client needs are
//! read; a newer node's extra fields are ignored.

use std::time::Duration;

use std::io::Read;

use doin_core::amount::Amount;
use doin_core::channel::Voucher;
use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use doin_core::params::DomainId;
use doin_core::plugin::params_hash;
use doin_core::state::{Champion, VerdictRecord};
use doin_core::tx::{SignedTx, TxId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ClientError, ClientResult, PaymentInfo};

/// How long one HTTP call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The node at a glance (`GET /status`).
#[derive(Debug, Clone, Deserialize)]
pub struct NodeStatus {
    pub chain_id: String,
    pub chain_height: u64,
    pub account: AccountId,
    pub base_fee: Amount,
    pub finalized_height: u64,
}

/// An account (`GET /account/{id}`).
#[derive(Debug, Clone, Deserialize)]
pub struct AccountInfo {
    pub account: AccountId,
    pub balance: Amount,
    pub nonce: u64,
    /// The nonce for a new transaction, after the account's pending ones.
    pub pending_nonce: u64,
}

/// A transaction's place (`GET /tx/{id}`).
#[derive(Debug, Clone, Deserialize)]
pub struct TxLookup {
    pub id: TxId,
    /// `"confirmed"` or `"pending"`.
    pub status: String,
    #[serde(default)]
    pub block_height: Option<u64>,
}

/// A payment channel as the chain holds it, with the provider's view when the node is its
/// provider (`GET /channel/{id}`).
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelInfo {
    pub id: Hash32,
    pub client: AccountId,
    pub provider: AccountId,
    pub deposit: Amount,
    pub expires_at: u64,
    pub settled: Amount,
    pub closes_at: Option<u64>,
    pub tip_height: u64,
    /// The highest voucher amount the node holds for this channel (when it is the provider).
    #[serde(default)]
    pub best_voucher: Option<Amount>,
}

/// The verified model a node serves for a domain.
#[derive(Debug, Clone, Deserialize)]
pub struct OfferChampion {
    pub optimae_id: Hash32,
    pub params_hash: Hash32,
    pub performance: f64,
    pub height: u64,
}

/// One domain a node serves (`GET /inference`).
#[derive(Debug, Clone, Deserialize)]
pub struct Offer {
    pub domain_id: DomainId,
    pub price: Amount,
    pub champion: Option<OfferChampion>,
    /// Whether the champion's model is loaded and answering.
    pub ready: bool,
    /// The account to pay (the node's).
    pub provider: AccountId,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Offers {
    /// `"paid"` or `"free"`.
    pub mode: String,
    pub provider: AccountId,
    pub offers: Vec<Offer>,
}

/// A query's answer (`POST /inference`).
#[derive(Debug, Clone, Deserialize)]
pub struct Answer {
    pub domain_id: DomainId,
    pub prediction: Value,
    /// The accepted optimae whose model answered.
    pub optimae_id: Hash32,
    pub params_hash: Hash32,
    /// Its verified performance (the quorum's median, not the optimizer's claim).
    pub performance: f64,
    /// What this query cost.
    pub price: Amount,
    /// The cumulative amount the provider now holds for the channel (paid mode).
    #[serde(default)]
    pub paid: Option<Amount>,
}

/// The rules of the chain a client needs (`GET /chain/params`; the rest is ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct ChainRules {
    pub chain_id: String,
    pub target_block_time_ms: u64,
    pub max_block_interval_ms: u64,
    /// Blocks after a commit's block within which its reveal must be included.
    pub reveal_window: u64,
    /// Blocks after a reveal within which the quorum votes.
    pub vote_window: u64,
}

/// A domain's consensus rules (`params` of `GET /domains`; the fields a worker needs).
#[derive(Debug, Clone, Deserialize)]
pub struct DomainRules {
    /// Evaluators drawn for each optimae.
    pub quorum_size: u32,
    /// ε: the least improvement over the champion that counts.
    pub min_improvement: f64,
    /// The performance before any champion.
    pub baseline_performance: f64,
    /// Smallest stake a commit must lock.
    pub min_stake: Amount,
    pub limits: DomainLimits,
}

/// A domain's resource limits (the one a client checks).
#[derive(Debug, Clone, Deserialize)]
pub struct DomainLimits {
    /// Largest parameter blob a reveal may point to.
    pub max_params_bytes: u64,
}

/// A domain of the chain with its champion (`GET /domains`).
#[derive(Debug, Clone, Deserialize)]
pub struct DomainInfo {
    pub domain_id: DomainId,
    pub params: DomainRules,
    pub champion: Option<Champion>,
    /// Optimae committed and not yet decided.
    #[serde(default)]
    pub pending_optimae: usize,
}

impl DomainInfo {
    /// The performance a new optimae must beat by `min_improvement`: the champion's, or the
    /// baseline before any.
    pub fn bar(&self) -> f64 {
        self.champion
            .as_ref()
            .map_or(self.params.baseline_performance, |c| c.performance)
    }
}

#[derive(Deserialize)]
struct DomainList {
    domains: Vec<DomainInfo>,
}

/// What `POST /params` answered.
#[derive(Debug, Clone, Deserialize)]
pub struct ParamsUpload {
    pub params_hash: Hash32,
    pub size: u64,
    /// Whether this upload wrote the blob (`false`: the node already held it).
    pub stored: bool,
    /// Height after which the node deletes the blob unless a reveal or champion names it
    /// (uploading again extends it); `None` when the node keeps it regardless.
    #[serde(default)]
    pub retained_until_height: Option<u64>,
}

/// One optimae (`GET /optimae/{id}`): pending (`committed`, `revealed`) or decided
/// (`decided`, `expired`).
#[derive(Debug, Clone, Deserialize)]
pub struct OptimaeInfo {
    pub id: Hash32,
    /// `committed`, `revealed`, `decided` or `expired`.
    pub status: String,
    /// Pending: the last height at which the reveal is accepted.
    #[serde(default)]
    pub reveal_deadline: Option<u64>,
    /// Pending and revealed: the reveal, with the last height at which votes count.
    #[serde(default)]
    pub reveal: Option<OptimaeReveal>,
    /// Decided: the block that took the verdict.
    #[serde(default)]
    pub height: Option<u64>,
    /// Decided: the verdict (`None` when expired).
    #[serde(default)]
    pub record: Option<VerdictRecord>,
    /// Decided: stake burned (rejections and expiries).
    #[serde(default)]
    pub burned: Option<Amount>,
}

impl OptimaeInfo {
    /// Whether the optimae left the state (a verdict, or expired unrevealed).
    pub fn is_decided(&self) -> bool {
        matches!(self.status.as_str(), "decided" | "expired")
    }
}

/// The reveal of a pending optimae (the fields a client follows).
#[derive(Debug, Clone, Deserialize)]
pub struct OptimaeReveal {
    pub reveal_height: u64,
    pub vote_deadline: u64,
    pub votes_cast: usize,
    pub votes_needed: usize,
}

#[derive(Deserialize)]
struct BlockHeaderInfo {
    base_fee: Amount,
}

#[derive(Deserialize)]
struct BlockSummaryInfo {
    header: BlockHeaderInfo,
}

#[derive(Deserialize)]
struct BlocksInfo {
    blocks: Vec<BlockSummaryInfo>,
}

#[derive(Serialize)]
struct InferRequest<'a> {
    domain_id: &'a DomainId,
    input_data: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    voucher: Option<&'a Voucher>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    message: String,
    #[serde(default)]
    payment: Option<Box<PaymentInfo>>,
}

#[derive(Deserialize)]
struct Submitted {
    id: TxId,
}

/// A node's HTTP API.
#[derive(Debug, Clone)]
pub struct NodeClient {
    base: String,
    agent: ureq::Agent,
}

impl NodeClient {
    /// `base` is the node's URL, e.g. `http://127.0.0.1:8470` (a trailing `/` is ignored).
    pub fn new(base: &str) -> NodeClient {
        NodeClient {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::AgentBuilder::new().timeout(CALL_TIMEOUT).build(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn status(&self) -> ClientResult<NodeStatus> {
        self.get("/status")
    }

    pub fn account(&self, id: &AccountId) -> ClientResult<AccountInfo> {
        self.get(&format!("/account/{id}?limit=0"))
    }

    pub fn tx(&self, id: &TxId) -> ClientResult<TxLookup> {
        self.get(&format!("/tx/{id}"))
    }

    pub fn channel(&self, id: &Hash32) -> ClientResult<ChannelInfo> {
        self.get(&format!("/channel/{id}"))
    }

    /// Every domain the node serves, with prices.
    pub fn offers(&self) -> ClientResult<Offers> {
        self.get("/inference")
    }

    /// The node's offer for one domain.
    pub fn offer(&self, domain: &DomainId) -> ClientResult<Offer> {
        let offers = self.offers()?;
        offers
            .offers
            .into_iter()
            .find(|o| &o.domain_id == domain)
            .ok_or_else(|| ClientError::Api {
                status: 404,
                code: "unknown_domain".into(),
                message: format!("the node at {} does not serve domain {domain}", self.base),
            })
    }

    /// The chain's rules (chain id, block times, reveal and vote windows).
    pub fn chain_rules(&self) -> ClientResult<ChainRules> {
        self.get("/chain/params")
    }

    /// Every domain of the chain, with its rules and champion.
    pub fn domains(&self) -> ClientResult<Vec<DomainInfo>> {
        Ok(self.get::<DomainList>("/domains")?.domains)
    }

    /// One domain of the chain; `Api { status: 404, code: "unknown_domain" }` when the chain
    /// has no such domain (the message lists those it has).
    pub fn domain(&self, id: &DomainId) -> ClientResult<DomainInfo> {
        let domains = self.domains()?;
        let names: Vec<String> = domains.iter().map(|d| d.domain_id.to_string()).collect();
        domains
            .into_iter()
            .find(|d| &d.domain_id == id)
            .ok_or_else(|| ClientError::Api {
                status: 404,
                code: "unknown_domain".into(),
                message: format!(
                    "the chain of the node at {} has no domain {id} (it has: {})",
                    self.base,
                    names.join(", ")
                ),
            })
    }

    /// One optimae by commitment: pending or decided.
    pub fn optimae(&self, commitment: &Hash32) -> ClientResult<OptimaeInfo> {
        self.get(&format!("/optimae/{commitment}"))
    }

    /// The base fee of the block at `height` (what each of its transactions burned).
    pub fn base_fee_at(&self, height: u64) -> ClientResult<Amount> {
        let path = format!("/chain/blocks?from={height}&to={height}");
        let page: BlocksInfo = self.get(&path)?;
        page.blocks
            .into_iter()
            .next()
            .map(|b| b.header.base_fee)
            .ok_or_else(|| ClientError::Api {
                status: 404,
                code: "not_found".into(),
                message: format!("the node at {} has no block {height}", self.base),
            })
    }

    /// Stores a parameter blob (model weights) on the node under its hash, so that a reveal
    /// can name it; `domain` bounds it by that domain's `max_params_bytes`. Returns the hash
    /// (checked against the local one). Uploading the same bytes again is harmless.
    pub fn upload_params(&self, bytes: &[u8], domain: Option<&DomainId>) -> ClientResult<Hash32> {
        Ok(self.upload_params_detailed(bytes, domain)?.params_hash)
    }

    /// [`NodeClient::upload_params`] with the node's whole answer (whether it was new, how
    /// long it is kept unreferenced).
    pub fn upload_params_detailed(
        &self,
        bytes: &[u8],
        domain: Option<&DomainId>,
    ) -> ClientResult<ParamsUpload> {
        let url = match domain {
            Some(d) => format!("{}/params?domain={d}", self.base),
            None => format!("{}/params", self.base),
        };
        // A large blob may take longer than one ordinary call: a second more per MiB.
        let timeout = CALL_TIMEOUT + Duration::from_secs((bytes.len() as u64) >> 20);
        let result = self
            .agent
            .post(&url)
            .timeout(timeout)
            .set("Content-Type", "application/octet-stream")
            .send_bytes(bytes);
        let answer: ParamsUpload = self.read(&url, result)?;
        let expected = params_hash(bytes);
        if answer.params_hash != expected {
            return Err(ClientError::Decode {
                url,
                reason: format!(
                    "the node stored the upload as {} but its hash is {expected}",
                    answer.params_hash
                ),
            });
        }
        Ok(answer)
    }

    /// The parameter blob with this hash, verified against it; refuses more than
    /// `max_bytes` (the domain's `max_params_bytes`).
    pub fn download_params(&self, hash: &Hash32, max_bytes: u64) -> ClientResult<Vec<u8>> {
        let url = format!("{}/params/{hash}", self.base);
        let timeout = CALL_TIMEOUT + Duration::from_secs(max_bytes >> 20);
        let resp = self
            .agent
            .get(&url)
            .timeout(timeout)
            .call()
            .map_err(|e| error_of(&url, e))?;
        let mut bytes = Vec::new();
        resp.into_reader()
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| ClientError::Transport {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if bytes.len() as u64 > max_bytes {
            return Err(ClientError::Decode {
                url,
                reason: format!("the blob is larger than {max_bytes} bytes"),
            });
        }
        if params_hash(&bytes) != *hash {
            return Err(ClientError::Decode {
                url,
                reason: "the bytes do not hash to the requested params hash".into(),
            });
        }
        Ok(bytes)
    }

    /// Submits a signed transaction; returns its id once the node queued it.
    pub fn submit(&self, tx: &SignedTx) -> ClientResult<TxId> {
        let submitted: Submitted = self.post("/tx", tx)?;
        Ok(submitted.id)
    }

    /// Waits until `id` is in a block, polling every 100 ms for at most `timeout`.
    pub fn wait_confirmed(&self, id: &TxId, timeout: Duration) -> ClientResult<u64> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let state = match self.tx(id) {
                Ok(lookup) => match lookup.block_height {
                    Some(height) if lookup.status == "confirmed" => return Ok(height),
                    _ => lookup.status,
                },
                // Dropped from the mempool (or never seen): report it as such.
                Err(ClientError::Api { status: 404, .. }) => "unknown to the node".into(),
                Err(e) => return Err(e),
            };
            if std::time::Instant::now() >= deadline {
                return Err(ClientError::NotConfirmed {
                    id: *id,
                    seconds: timeout.as_secs(),
                    state,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asks a query. `voucher` pays for it in paid mode; without one a paid node answers
    /// [`ClientError::PaymentRequired`] with its price.
    pub fn infer(
        &self,
        domain: &DomainId,
        input: &Value,
        voucher: Option<&Voucher>,
    ) -> ClientResult<Answer> {
        self.post(
            "/inference",
            &InferRequest {
                domain_id: domain,
                input_data: input,
                voucher,
            },
        )
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> ClientResult<T> {
        let url = format!("{}{path}", self.base);
        self.read(&url, self.agent.get(&url).call())
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> ClientResult<T> {
        let url = format!("{}{path}", self.base);
        let body = serde_json::to_value(body).map_err(|e| ClientError::Decode {
            url: url.clone(),
            reason: format!("encoding the request: {e}"),
        })?;
        self.read(&url, self.agent.post(&url).send_json(body))
    }

    fn read<T: DeserializeOwned>(
        &self,
        url: &str,
        result: Result<ureq::Response, ureq::Error>,
    ) -> ClientResult<T> {
        match result {
            Ok(resp) => resp.into_json::<T>().map_err(|e| ClientError::Decode {
                url: url.to_string(),
                reason: e.to_string(),
            }),
            Err(e) => Err(error_of(url, e)),
        }
    }
}

/// A failed call as a [`ClientError`]: the node's JSON error, or why it could not be reached.
fn error_of(url: &str, err: ureq::Error) -> ClientError {
    match err {
        ureq::Error::Status(status, resp) => {
            let text = resp.into_string().unwrap_or_default();
            match serde_json::from_str::<ErrorBody>(&text) {
                Ok(body) if status == 402 => ClientError::PaymentRequired {
                    code: body.error,
                    message: body.message,
                    payment: body.payment,
                },
                Ok(body) => ClientError::Api {
                    status,
                    code: body.error,
                    message: body.message,
                },
                Err(_) => ClientError::Api {
                    status,
                    code: "unknown".into(),
                    message: text.chars().take(300).collect(),
                },
            }
        }
        e => ClientError::Transport {
            url: url.to_string(),
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn domains_and_optimae_read_only_what_they_need() {
        let hex = |b: u8| Hash32([b; 32]).to_hex();
        let list: DomainList = serde_json::from_value(json!({"domains": [{
            "domain_id": "quadratic",
            "params": {"id": "quadratic", "quorum_size": 1, "tolerance_abs": 0.5,
                       "tolerance_rel": 0.05, "min_improvement": 0.25,
                       "baseline_performance": -10000.0, "work_per_unit": 1000,
                       "min_stake": 10000, "limits": {"max_params_bytes": 1024, "max_epochs": 5},
                       "a_newer_field": true},
            "champion": {"commitment": hex(1), "optimizer": hex(2), "performance": -3.5,
                         "params_hash": hex(3), "params_size": 32, "height": 7},
            "best_performance": -3.5, "evaluators": 1, "pending_optimae": 2, "local": null
        }]}))
        .unwrap();
        let d = &list.domains[0];
        assert_eq!(d.params.min_stake, Amount(10_000));
        assert_eq!(d.params.limits.max_params_bytes, 1024);
        assert_eq!(d.bar(), -3.5);
        assert_eq!(d.pending_optimae, 2);
        let mut fresh = d.clone();
        fresh.champion = None;
        assert_eq!(fresh.bar(), -10_000.0);

        let pending: OptimaeInfo = serde_json::from_value(json!({
            "id": hex(1), "status": "revealed", "domain": "quadratic", "reveal_deadline": 12,
            "reveal": {"reveal_height": 4, "vote_deadline": 14, "votes_cast": 0,
                       "votes_needed": 1, "quorum": []}
        }))
        .unwrap();
        assert!(!pending.is_decided());
        assert_eq!(pending.reveal.unwrap().vote_deadline, 14);
        let expired: OptimaeInfo = serde_json::from_value(json!({
            "id": hex(1), "status": "expired", "height": 20, "block_hash": hex(4),
            "timestamp_ms": 1, "record": null, "burned": 2000
        }))
        .unwrap();
        assert!(expired.is_decided());
        assert_eq!(expired.burned, Some(Amount(2_000)));
    }
}
