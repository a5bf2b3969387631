//! A key plus a node: builds, signs and submits transactions, and pays for queries.

use std::time::Duration;

use doin_core::amount::Amount;
use doin_core::channel::channel_id;
use doin_core::fee::{suggested_bid, FeeBid};
use doin_core::hash::Hash32;
use doin_core::identity::{AccountId, Keypair};
use doin_core::params::DomainId;
use doin_core::tx::{TxBody, TxId, TxKind};
use serde_json::Value;

use crate::book::{ChannelBook, ChannelEntry};
use crate::error::{ClientError, ClientResult};
use crate::node::{Answer, NodeClient};

/// Tip added to the wallet's transactions, in base units.
const WALLET_TIP: Amount = Amount(100);
/// How long the wallet waits for its transactions to be included.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);

/// A transaction the wallet submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentTx {
    pub id: TxId,
    pub nonce: u64,
    /// The fee bid it carries: with the base fee of its block, `doin_core::fee::charge` says
    /// what it paid.
    pub fee: FeeBid,
}

/// Signs with `key` and talks to one node.
#[derive(Debug)]
pub struct Wallet {
    node: NodeClient,
    key: Keypair,
    chain_id: String,
}

impl Wallet {
    /// Connects to the node to learn the chain id (bound into every signature).
    pub fn connect(node: NodeClient, key: Keypair) -> ClientResult<Wallet> {
        let chain_id = node.status()?.chain_id;
        Ok(Wallet {
            node,
            key,
            chain_id,
        })
    }

    pub fn node(&self) -> &NodeClient {
        &self.node
    }

    pub fn account(&self) -> AccountId {
        self.key.account()
    }

    pub fn balance(&self) -> ClientResult<Amount> {
        Ok(self.node.account(&self.account())?.balance)
    }

    /// The chain id the wallet signs for (the node's).
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// Signs `kind` with the next free nonce and a fee bid with headroom over the base fee,
    /// submits it and returns its id (without waiting for a block).
    pub fn send(&self, kind: TxKind) -> ClientResult<(TxId, u64)> {
        let sent = self.send_detailed(kind)?;
        Ok((sent.id, sent.nonce))
    }

    /// [`Wallet::send`], also returning the fee bid (to account for what it paid).
    pub fn send_detailed(&self, kind: TxKind) -> ClientResult<SentTx> {
        let account = self.node.account(&self.account())?;
        let base_fee = self.node.status()?.base_fee;
        let nonce = account.pending_nonce;
        let fee = suggested_bid(base_fee, WALLET_TIP);
        let tx = TxBody {
            chain_id: self.chain_id.clone(),
            sender: self.account(),
            nonce,
            fee,
            kind,
        }
        .sign(&self.key);
        Ok(SentTx {
            id: self.node.submit(&tx)?,
            nonce,
            fee,
        })
    }

    /// The most one transaction of this wallet pays in fees at the current base fee.
    pub fn max_fee(&self) -> ClientResult<Amount> {
        Ok(suggested_bid(self.node.status()?.base_fee, WALLET_TIP).max_fee)
    }

    /// Sends `kind` and waits for its block; returns the transaction id and block height.
    pub fn send_confirmed(&self, kind: TxKind) -> ClientResult<(TxId, u64)> {
        let (id, _) = self.send(kind)?;
        let height = self.node.wait_confirmed(&id, CONFIRM_TIMEOUT)?;
        Ok((id, height))
    }

    pub fn transfer(&self, to: AccountId, amount: Amount) -> ClientResult<(TxId, u64)> {
        self.send_confirmed(TxKind::Transfer { to, amount })
    }

    /// Opens a channel to `provider`, waits for it to be on chain and records it in `book`.
    pub fn open_channel(
        &self,
        provider: AccountId,
        deposit: Amount,
        lifetime: u64,
        book: &mut ChannelBook,
    ) -> ClientResult<Hash32> {
        let (tx, nonce) = self.send(TxKind::ChannelOpen {
            provider,
            deposit,
            lifetime,
        })?;
        let height = self.node.wait_confirmed(&tx, CONFIRM_TIMEOUT)?;
        let id = channel_id(&self.account(), nonce);
        let on_chain = self.node.channel(&id)?;
        book.insert(
            id,
            ChannelEntry {
                provider,
                deposit,
                spent: Amount::ZERO,
                opened_at: height,
                expires_at: on_chain.expires_at,
            },
        )?;
        Ok(id)
    }

    /// Asks the provider to settle: it then has the settle window to submit its best voucher.
    pub fn close_channel(&self, channel: &Hash32) -> ClientResult<(TxId, u64)> {
        self.send_confirmed(TxKind::ChannelClose { channel: *channel })
    }

    /// Pays out a channel whose settle window has passed (or that expired).
    pub fn collect(&self, channel: &Hash32, book: &mut ChannelBook) -> ClientResult<(TxId, u64)> {
        let done = self.send_confirmed(TxKind::ChannelCollect { channel: *channel })?;
        book.remove(channel)?;
        Ok(done)
    }

    /// One paid query: signs a voucher for `price` more than the channel's last one and asks.
    /// If the provider holds a higher amount than the book (another process used the
    /// channel, or an answer was lost), the book is raised to it and the query retried once.
    pub fn infer(
        &self,
        book: &mut ChannelBook,
        channel: &Hash32,
        domain: &DomainId,
        input: &Value,
        price: Amount,
    ) -> ClientResult<Answer> {
        for attempt in 0..2 {
            let voucher = book.next_voucher(&self.key, channel, price)?;
            match self.node.infer(domain, input, Some(&voucher)) {
                Err(ClientError::PaymentRequired {
                    payment: Some(info),
                    ..
                }) if attempt == 0
                    && info.channel == Some(*channel)
                    && info.price <= price
                    && info
                        .paid
                        .is_some_and(|paid| book.resync(channel, paid).unwrap_or(false)) =>
                {
                    continue
                }
                other => return other,
            }
        }
        Err(ClientError::Api {
            status: 402,
            code: "voucher_stale".into(),
            message: "the provider refused the voucher twice".into(),
        })
    }

    /// [`Wallet::infer`] after checking the node's price against `max_price`.
    pub fn infer_at_most(
        &self,
        book: &mut ChannelBook,
        channel: &Hash32,
        domain: &DomainId,
        input: &Value,
        max_price: Amount,
    ) -> ClientResult<Answer> {
        let price = self.node.offer(domain)?.price;
        if price > max_price {
            return Err(ClientError::PriceTooHigh { price, max_price });
        }
        self.infer(book, channel, domain, input, price)
    }
}
