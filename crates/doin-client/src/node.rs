//! The node's HTTP API as typed calls (see `docs/api.md`). Only the fields a client needs are
//! read; a newer node's extra fields are ignored.

use std::time::Duration;

use doin_core::amount::Amount;
use doin_core::channel::Voucher;
use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use doin_core::params::DomainId;
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
            Err(ureq::Error::Status(status, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                Err(match serde_json::from_str::<ErrorBody>(&text) {
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
                })
            }
            Err(e) => Err(ClientError::Transport {
                url: url.to_string(),
                reason: e.to_string(),
            }),
        }
    }
}
