//! The provider's cash desk: checks each query's voucher, keeps the best voucher per channel
//! (in memory and, before the answer leaves, on disk), and settles and collects on chain.
//!
//! A voucher pays for a query when it is the client's, names a channel on chain whose
//! provider is this node and which stays open for at least `settle_margin` more blocks, and
//! raises the channel's cumulative amount by at least the price (so a replayed or lower
//! voucher pays nothing) without exceeding the deposit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use doin_core::amount::Amount;
use doin_core::channel::{Channel, Voucher};
use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use doin_core::state::ChainState;
use doin_core::tx::{TxId, TxKind};
use thiserror::Error;
use tokio::sync::watch;

use super::voucher_store::{StoredVoucher, VoucherStore, VoucherStoreError};
use crate::context::{ChainEvent, NodeContext};

/// Blocks after which a settle or collect that did not make it into a block is sent again.
const RESUBMIT_AFTER_BLOCKS: u64 = 5;

/// Why a voucher does not pay for a query. Nothing was charged.
#[derive(Debug, Error)]
pub enum PaymentError {
    #[error(
        "this node charges {price} per query: send a voucher of a payment channel to {provider}"
    )]
    Missing { price: Amount, provider: AccountId },
    #[error("channel {0} is not on chain (not opened yet, or already paid out)")]
    UnknownChannel(Hash32),
    #[error("channel {channel} pays {provider}, not this node")]
    WrongProvider {
        channel: Hash32,
        provider: AccountId,
    },
    #[error("channel {channel} closes at height {closes_at} (tip {tip}); this node needs {margin} blocks to settle: open a new channel")]
    Closing {
        channel: Hash32,
        closes_at: u64,
        tip: u64,
        margin: u64,
    },
    #[error("voucher amount {amount} exceeds the channel's deposit {deposit}")]
    AboveDeposit { amount: Amount, deposit: Amount },
    #[error("voucher amount {amount} does not pay for this query: this node already holds {paid} for the channel and the price is {price}, so the voucher must be at least {needed} (a replayed or lower voucher pays nothing)")]
    TooLow {
        amount: Amount,
        paid: Amount,
        price: Amount,
        needed: Amount,
    },
    #[error("voucher signature is not the channel client's: {0}")]
    BadSignature(String),
    #[error("could not record the voucher: {0}")]
    Store(#[from] VoucherStoreError),
}

impl PaymentError {
    /// The error code of the HTTP answer.
    pub fn code(&self) -> &'static str {
        match self {
            PaymentError::Missing { .. } => "payment_required",
            PaymentError::UnknownChannel(_) => "channel_unknown",
            PaymentError::WrongProvider { .. } => "wrong_provider",
            PaymentError::Closing { .. } => "channel_closing",
            PaymentError::AboveDeposit { .. } => "voucher_above_deposit",
            PaymentError::TooLow { .. } => "voucher_too_low",
            PaymentError::BadSignature(_) => "bad_voucher_signature",
            PaymentError::Store(_) => "payments_unavailable",
        }
    }
}

/// What this node holds for one channel.
#[derive(Debug, Clone)]
struct Held {
    best: Voucher,
    queries: u64,
}

/// A settle or collect sent and not yet seen on chain.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    amount: Amount,
    sent_at: u64,
}

/// A voucher that passed every check except the final "still higher than what is held",
/// which [`PaymentDesk::commit`] repeats under the lock.
#[derive(Debug)]
pub struct CheckedVoucher {
    voucher: Voucher,
    client: AccountId,
}

impl CheckedVoucher {
    pub fn channel(&self) -> Hash32 {
        self.voucher.channel
    }
}

/// A voucher [`PaymentDesk::commit`] recorded.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    /// The channel's cumulative amount now held by this node.
    pub cumulative: Amount,
    /// What this voucher added to it: the query's price, or more if the client paid ahead.
    pub received: Amount,
}

/// The provider's view of its channels, for `GET /channel/{id}`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct HeldSummary {
    pub best_voucher: Amount,
    pub queries: u64,
}

#[derive(Debug, Default)]
struct Books {
    held: HashMap<Hash32, Held>,
    settling: HashMap<Hash32, InFlight>,
    collecting: HashMap<Hash32, InFlight>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct PaymentDesk {
    me: AccountId,
    settle_margin: u64,
    store: VoucherStore,
    books: Mutex<Books>,
}

impl PaymentDesk {
    /// A desk for provider `me`, holding the vouchers stored earlier.
    pub fn new(
        me: AccountId,
        settle_margin: u64,
        store: VoucherStore,
        stored: Vec<StoredVoucher>,
    ) -> PaymentDesk {
        let held = stored
            .into_iter()
            .map(|s| {
                (
                    s.voucher.channel,
                    Held {
                        best: s.voucher,
                        queries: s.queries,
                    },
                )
            })
            .collect();
        PaymentDesk {
            me,
            settle_margin,
            store,
            books: Mutex::new(Books {
                held,
                ..Books::default()
            }),
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The amount this node holds for `channel`: its best voucher or, if higher, what was
    /// settled on chain.
    fn paid(&self, channel: &Hash32, on_chain: &Channel) -> Amount {
        let held = self
            .books()
            .held
            .get(channel)
            .map_or(Amount::ZERO, |h| h.best.amount);
        held.max(on_chain.settled)
    }

    /// The best voucher and query count held for `channel`.
    pub fn held(&self, channel: &Hash32) -> Option<HeldSummary> {
        self.books().held.get(channel).map(|h| HeldSummary {
            best_voucher: h.best.amount,
            queries: h.queries,
        })
    }

    /// For a refused voucher: what the node holds for its channel (lets a client resync).
    pub fn paid_for(&self, state: &ChainState, channel: &Hash32) -> Option<Amount> {
        state
            .channels
            .get(channel)
            .filter(|c| c.provider == self.me)
            .map(|c| self.paid(channel, c))
    }

    /// Every check that does not need the lock: the channel, its window, the deposit, the
    /// amount against what is held, and the signature (`verify_strict`, about 40 µs).
    pub fn check(
        &self,
        state: &ChainState,
        voucher: &Voucher,
        price: Amount,
    ) -> Result<CheckedVoucher, PaymentError> {
        let id = voucher.channel;
        let channel = state
            .channels
            .get(&id)
            .ok_or(PaymentError::UnknownChannel(id))?;
        if channel.provider != self.me {
            return Err(PaymentError::WrongProvider {
                channel: id,
                provider: channel.provider,
            });
        }
        let closes_at = channel
            .closes_at
            .map_or(channel.expires_at, |c| c.min(channel.expires_at));
        if state.height.saturating_add(self.settle_margin) >= closes_at {
            return Err(PaymentError::Closing {
                channel: id,
                closes_at,
                tip: state.height,
                margin: self.settle_margin,
            });
        }
        if voucher.amount > channel.deposit {
            return Err(PaymentError::AboveDeposit {
                amount: voucher.amount,
                deposit: channel.deposit,
            });
        }
        too_low(voucher.amount, self.paid(&id, channel), price)?;
        voucher
            .verify(&channel.client)
            .map_err(|e| PaymentError::BadSignature(e.to_string()))?;
        Ok(CheckedVoucher {
            voucher: *voucher,
            client: channel.client,
        })
    }

    /// Takes the payment: re-checks the amount against what is held now (a concurrent query
    /// may have used the channel), keeps the voucher, and returns once it is on disk.
    /// Returns the channel's new cumulative amount and what this voucher added.
    pub async fn commit(
        &self,
        checked: CheckedVoucher,
        price: Amount,
    ) -> Result<Committed, PaymentError> {
        let (stored, received) = {
            let mut books = self.books();
            let id = checked.voucher.channel;
            let held = books.held.get(&id);
            let paid = held.map_or(Amount::ZERO, |h| h.best.amount);
            too_low(checked.voucher.amount, paid, price)?;
            let queries = held.map_or(0, |h| h.queries) + 1;
            books.held.insert(
                id,
                Held {
                    best: checked.voucher,
                    queries,
                },
            );
            let stored = StoredVoucher {
                voucher: checked.voucher,
                client: checked.client,
                queries,
            };
            (stored, checked.voucher.amount.saturating_sub(paid))
        };
        let cumulative = stored.voucher.amount;
        self.store.record(stored).await?;
        Ok(Committed {
            cumulative,
            received,
        })
    }

    /// Settles and collects what is due after a block; forgets channels paid out.
    pub(crate) fn on_block(&self, ctx: &NodeContext) {
        let view = ctx.view();
        let state = &*view.state;
        let next = state.height + 1;
        let mut sends: Vec<(Hash32, TxKind, Amount, bool)> = Vec::new();
        let mut gone = Vec::new();
        {
            let mut books = self.books();
            let Books {
                held,
                settling,
                collecting,
            } = &mut *books;
            for (id, h) in held.iter() {
                let Some(ch) = state.channels.get(id) else {
                    gone.push(*id);
                    continue;
                };
                let due = |f: &HashMap<Hash32, InFlight>, amount: Amount| {
                    f.get(id).is_none_or(|p| {
                        p.amount < amount || state.height >= p.sent_at + RESUBMIT_AFTER_BLOCKS
                    })
                };
                let window_end = ch.closes_at.unwrap_or(ch.expires_at).min(ch.expires_at);
                let settle_now = ch.closes_at.is_some()
                    || next.saturating_add(self.settle_margin) >= ch.expires_at;
                if h.best.amount > ch.settled
                    && settle_now
                    && next < window_end
                    && due(settling, h.best.amount)
                {
                    sends.push((
                        *id,
                        TxKind::ChannelSettle { voucher: h.best },
                        h.best.amount,
                        true,
                    ));
                }
            }
            for (id, ch) in &state.channels {
                if ch.provider != self.me || ch.settled == Amount::ZERO {
                    continue;
                }
                if ch.closes_at.is_some_and(|c| next >= c)
                    && due_collect(collecting, id, state.height)
                {
                    sends.push((
                        *id,
                        TxKind::ChannelCollect { channel: *id },
                        ch.settled,
                        false,
                    ));
                }
            }
            for id in &gone {
                held.remove(id);
                settling.remove(id);
                collecting.remove(id);
            }
            for (id, _, amount, is_settle) in &sends {
                let book = if *is_settle {
                    &mut *settling
                } else {
                    &mut *collecting
                };
                book.insert(
                    *id,
                    InFlight {
                        amount: *amount,
                        sent_at: state.height,
                    },
                );
            }
        }
        for (id, kind, amount, is_settle) in sends {
            let what = if is_settle { "settle" } else { "collect" };
            match ctx.submit_own(kind) {
                Ok(tx) => log_sent(what, &id, amount, &tx),
                Err(err) => tracing::warn!("channel {id}: {what} of {amount} refused: {err}"),
            }
        }
        for id in gone {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(err) = store.forget(id).await {
                    tracing::warn!("channel {id}: forgetting its voucher: {err}");
                }
            });
        }
    }
}

fn due_collect(collecting: &HashMap<Hash32, InFlight>, id: &Hash32, height: u64) -> bool {
    collecting
        .get(id)
        .is_none_or(|p| height >= p.sent_at + RESUBMIT_AFTER_BLOCKS)
}

fn log_sent(what: &str, id: &Hash32, amount: Amount, tx: &TxId) {
    tracing::info!("channel {id}: {what} of {amount} sent (tx {tx})");
}

/// `amount` must be at least `paid + price`.
fn too_low(amount: Amount, paid: Amount, price: Amount) -> Result<(), PaymentError> {
    let needed = paid.checked_add(price).unwrap_or(Amount(u64::MAX));
    if amount < needed || amount == paid {
        return Err(PaymentError::TooLow {
            amount,
            paid,
            price,
            needed,
        });
    }
    Ok(())
}

/// Settles and collects after every block until `stop`.
pub async fn run_settlement(
    ctx: Arc<NodeContext>,
    desk: Arc<PaymentDesk>,
    mut stop: watch::Receiver<bool>,
) {
    let mut events = ctx.events.subscribe();
    desk.on_block(&ctx);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(ChainEvent::Block { .. } | ChainEvent::Reorg { .. }) => desk.on_block(&ctx),
                // Missed some blocks: the state is what matters, not each event.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => desk.on_block(&ctx),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = stop.changed() => return,
        }
    }
}
