//! Unidirectional payment channels (client → provider) for paid inference, in the style of
//! Filecoin's payment channels.
//!
//! `ChannelOpen` locks the client's deposit on chain. Each query carries a [`Voucher`]: a
//! client-signed, monotone *cumulative* amount; the provider checks it off chain in
//! microseconds ([`Voucher::verify`]) and keeps the highest. The provider settles that voucher
//! on chain before the channel expires; a settle (or the client's close) starts a settle
//! window, after which `ChannelCollect` pays the provider what was settled and refunds the
//! rest. A channel that expires without a settle refunds the client in full.
//!
//! The rules here are pure: [`Channel`] methods check a transition and return the new state;
//! the chain state machine moves the coins.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::amount::Amount;
use crate::encode::{put, Decode, DecodeError, Encode, Reader};
use crate::hash::{Hash32, HashKind};
use crate::identity::{AccountId, Keypair, Signature, SignatureError};

/// A client's promise: "the provider of `channel` may take `amount` in total".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Voucher {
    pub channel: Hash32,
    /// Cumulative, not incremental: each voucher supersedes the previous ones.
    pub amount: Amount,
    pub signature: Signature,
}

/// The id of a channel: bound to its client and the nonce of the opening transaction, so it
/// is unique and cannot be chosen by anyone.
pub fn channel_id(client: &AccountId, open_nonce: u64) -> Hash32 {
    let mut buf = Vec::with_capacity(40);
    client.encode(&mut buf);
    put::u64(&mut buf, open_nonce);
    HashKind::Channel.hash(&buf)
}

fn voucher_message(channel: &Hash32, amount: Amount) -> Hash32 {
    let mut buf = Vec::with_capacity(40);
    channel.encode(&mut buf);
    amount.encode(&mut buf);
    HashKind::Voucher.hash(&buf)
}

impl Voucher {
    pub fn sign(key: &Keypair, channel: Hash32, amount: Amount) -> Voucher {
        let signature = key.sign(voucher_message(&channel, amount).as_bytes());
        Voucher {
            channel,
            amount,
            signature,
        }
    }

    /// Checks the client's signature (`verify_strict`).
    pub fn verify(&self, client: &AccountId) -> Result<(), SignatureError> {
        client.verify(
            voucher_message(&self.channel, self.amount).as_bytes(),
            &self.signature,
        )
    }
}

impl Encode for Voucher {
    fn encode(&self, out: &mut Vec<u8>) {
        self.channel.encode(out);
        self.amount.encode(out);
        self.signature.encode(out);
    }
}

impl Decode for Voucher {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Voucher {
            channel: Hash32::decode(r)?,
            amount: Amount::decode(r)?,
            signature: Signature::decode(r)?,
        })
    }
}

/// An open channel as the chain holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Channel {
    pub client: AccountId,
    pub provider: AccountId,
    pub deposit: Amount,
    /// Height from which the channel is expired: no more settles; the client may collect.
    pub expires_at: u64,
    /// The highest voucher amount settled so far.
    pub settled: Amount,
    /// Height from which `ChannelCollect` pays out, once a settle or close started the window.
    pub closes_at: Option<u64>,
}

/// A channel transition that is not allowed. Nothing changes when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChannelError {
    #[error("unknown channel {0}")]
    Unknown(Hash32),
    #[error("only the channel's {role} may do this")]
    NotParty { role: &'static str },
    #[error("provider: a channel to yourself is not allowed")]
    SelfChannel,
    #[error("deposit: {deposit} is below the minimum {min}")]
    DepositTooSmall { deposit: Amount, min: Amount },
    #[error("lifetime: {lifetime} blocks exceeds the maximum {max}")]
    LifetimeTooLong { lifetime: u64, max: u64 },
    #[error("voucher signature: {0}")]
    BadVoucher(#[from] SignatureError),
    #[error("voucher amount {amount} exceeds the deposit {deposit}")]
    AboveDeposit { amount: Amount, deposit: Amount },
    #[error("voucher amount {amount} is not above the settled {settled} (stale or replayed)")]
    NotIncreasing { amount: Amount, settled: Amount },
    #[error("channel expired at height {expires_at}; settles are no longer accepted")]
    Expired { expires_at: u64 },
    #[error("channel is already closing (collect from height {closes_at})")]
    AlreadyClosing { closes_at: u64 },
    #[error("too early to collect: wait until height {from}")]
    TooEarly { from: u64 },
}

/// What a collect pays out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payout {
    pub provider: Amount,
    pub client: Amount,
}

impl Channel {
    /// Checks an open request and builds the channel.
    pub fn open(
        client: AccountId,
        provider: AccountId,
        deposit: Amount,
        lifetime: u64,
        height: u64,
        params: &crate::params::ChannelParams,
    ) -> Result<Channel, ChannelError> {
        if client == provider {
            return Err(ChannelError::SelfChannel);
        }
        if deposit < params.min_deposit {
            return Err(ChannelError::DepositTooSmall {
                deposit,
                min: params.min_deposit,
            });
        }
        if lifetime > params.max_lifetime {
            return Err(ChannelError::LifetimeTooLong {
                lifetime,
                max: params.max_lifetime,
            });
        }
        Ok(Channel {
            client,
            provider,
            deposit,
            expires_at: height.saturating_add(lifetime),
            settled: Amount::ZERO,
            closes_at: None,
        })
    }

    /// The client asks to close: the provider has `settle_window` blocks to settle.
    pub fn close(
        &self,
        sender: &AccountId,
        height: u64,
        settle_window: u64,
    ) -> Result<Channel, ChannelError> {
        if sender != &self.client {
            return Err(ChannelError::NotParty { role: "client" });
        }
        if let Some(closes_at) = self.closes_at {
            return Err(ChannelError::AlreadyClosing { closes_at });
        }
        Ok(Channel {
            closes_at: Some(height.saturating_add(settle_window)),
            ..self.clone()
        })
    }

    /// The provider settles a voucher: it must be the client's, for this channel, higher than
    /// anything settled, within the deposit, before expiry and before the window closes.
    pub fn settle(
        &self,
        id: &Hash32,
        sender: &AccountId,
        voucher: &Voucher,
        height: u64,
        settle_window: u64,
    ) -> Result<Channel, ChannelError> {
        if sender != &self.provider {
            return Err(ChannelError::NotParty { role: "provider" });
        }
        if &voucher.channel != id {
            return Err(ChannelError::Unknown(voucher.channel));
        }
        if height >= self.expires_at {
            return Err(ChannelError::Expired {
                expires_at: self.expires_at,
            });
        }
        if let Some(closes_at) = self.closes_at {
            if height >= closes_at {
                return Err(ChannelError::AlreadyClosing { closes_at });
            }
        }
        voucher.verify(&self.client)?;
        if voucher.amount > self.deposit {
            return Err(ChannelError::AboveDeposit {
                amount: voucher.amount,
                deposit: self.deposit,
            });
        }
        if voucher.amount <= self.settled {
            return Err(ChannelError::NotIncreasing {
                amount: voucher.amount,
                settled: self.settled,
            });
        }
        let closes_at = self
            .closes_at
            .unwrap_or(height.saturating_add(settle_window));
        Ok(Channel {
            settled: voucher.amount,
            closes_at: Some(closes_at),
            ..self.clone()
        })
    }

    /// Pays out once the settle window has passed, or the channel expired without a window.
    pub fn collect(&self, sender: &AccountId, height: u64) -> Result<Payout, ChannelError> {
        if sender != &self.client && sender != &self.provider {
            return Err(ChannelError::NotParty {
                role: "client or provider",
            });
        }
        let from = self.closes_at.unwrap_or(self.expires_at);
        if height < from {
            return Err(ChannelError::TooEarly { from });
        }
        // settled <= deposit is an invariant of `settle`.
        Ok(Payout {
            provider: self.settled,
            client: self.deposit.saturating_sub(self.settled),
        })
    }
}

impl Encode for Channel {
    fn encode(&self, out: &mut Vec<u8>) {
        self.client.encode(out);
        self.provider.encode(out);
        self.deposit.encode(out);
        put::u64(out, self.expires_at);
        self.settled.encode(out);
        match self.closes_at {
            Some(h) => {
                put::bool(out, true);
                put::u64(out, h);
            }
            None => put::bool(out, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ChainParams;

    fn setup() -> (
        Keypair,
        Keypair,
        Hash32,
        Channel,
        crate::params::ChannelParams,
    ) {
        let client = Keypair::from_seed([1; 32]);
        let provider = Keypair::from_seed([2; 32]);
        let params = ChainParams::dev("t").channels;
        let id = channel_id(&client.account(), 0);
        let ch = Channel::open(
            client.account(),
            provider.account(),
            Amount::from_doin(10),
            100,
            5,
            &params,
        )
        .unwrap();
        (client, provider, id, ch, params)
    }

    #[test]
    fn settle_then_collect_pays_exactly_the_deposit() {
        let (client, provider, id, ch, p) = setup();
        let v = Voucher::sign(&client, id, Amount::from_doin(3));
        let ch = ch
            .settle(&id, &provider.account(), &v, 10, p.settle_window)
            .unwrap();
        assert_eq!(
            ch.collect(&client.account(), 10 + p.settle_window - 1),
            Err(ChannelError::TooEarly { from: 20 })
        );
        let out = ch.collect(&client.account(), 20).unwrap();
        assert_eq!(
            out,
            Payout {
                provider: Amount::from_doin(3),
                client: Amount::from_doin(7)
            }
        );
    }

    #[test]
    fn attacks_are_rejected() {
        let (client, provider, id, ch, p) = setup();
        let v3 = Voucher::sign(&client, id, Amount::from_doin(3));
        let settled = ch
            .settle(&id, &provider.account(), &v3, 10, p.settle_window)
            .unwrap();
        // Replay and lower amounts.
        assert!(matches!(
            settled.settle(&id, &provider.account(), &v3, 11, 10),
            Err(ChannelError::NotIncreasing { .. })
        ));
        let v2 = Voucher::sign(&client, id, Amount::from_doin(2));
        assert!(matches!(
            settled.settle(&id, &provider.account(), &v2, 11, 10),
            Err(ChannelError::NotIncreasing { .. })
        ));
        // Above deposit.
        let big = Voucher::sign(&client, id, Amount::from_doin(11));
        assert!(matches!(
            ch.settle(&id, &provider.account(), &big, 10, 10),
            Err(ChannelError::AboveDeposit { .. })
        ));
        // Forged: signed by the provider, not the client.
        let forged = Voucher::sign(&provider, id, Amount::from_doin(5));
        assert!(matches!(
            ch.settle(&id, &provider.account(), &forged, 10, 10),
            Err(ChannelError::BadVoucher(_))
        ));
        // Voucher for another channel.
        let other = Voucher::sign(
            &client,
            channel_id(&client.account(), 1),
            Amount::from_doin(1),
        );
        assert!(matches!(
            ch.settle(&id, &provider.account(), &other, 10, 10),
            Err(ChannelError::Unknown(_))
        ));
        // Someone else settling.
        assert!(matches!(
            ch.settle(&id, &client.account(), &v3, 10, 10),
            Err(ChannelError::NotParty { .. })
        ));
        // After expiry.
        assert!(matches!(
            ch.settle(&id, &provider.account(), &v3, 105, 10),
            Err(ChannelError::Expired { .. })
        ));
        // Collect before expiry without a window.
        assert_eq!(
            ch.collect(&client.account(), 50),
            Err(ChannelError::TooEarly { from: 105 })
        );
        assert!(Channel::open(
            client.account(),
            client.account(),
            Amount::from_doin(1),
            1,
            0,
            &p
        )
        .is_err());
    }

    #[test]
    fn expiry_without_settle_refunds_the_client() {
        let (client, _provider, _id, ch, _p) = setup();
        let out = ch.collect(&client.account(), 105).unwrap();
        assert_eq!(
            out,
            Payout {
                provider: Amount::ZERO,
                client: Amount::from_doin(10)
            }
        );
    }

    #[test]
    fn client_close_gives_the_provider_a_window() {
        let (client, provider, id, ch, p) = setup();
        let closing = ch.close(&client.account(), 30, p.settle_window).unwrap();
        assert_eq!(closing.closes_at, Some(40));
        let v = Voucher::sign(&client, id, Amount::from_doin(4));
        let settled = closing
            .settle(&id, &provider.account(), &v, 35, p.settle_window)
            .unwrap();
        assert_eq!(
            settled.closes_at,
            Some(40),
            "a settle does not extend a running window"
        );
        assert!(closing
            .settle(&id, &provider.account(), &v, 40, p.settle_window)
            .is_err());
        assert!(closing.close(&client.account(), 31, 10).is_err());
    }

    proptest::proptest! {
        /// Whatever vouchers the provider tries to settle, in whatever order, a collect pays
        /// out exactly the deposit, the provider never more than the client signed for.
        #[test]
        fn a_channel_never_pays_out_more_than_its_deposit(
            // From the dev chain's minimum deposit (1 DOIN): a smaller one cannot open.
            deposit in 100_000_000u64..1_000_000_000_000,
            amounts in proptest::collection::vec(0u64..2_000_000_000_000, 1..12),
        ) {
            let (client, provider, id, _, p) = setup();
            proptest::prop_assume!(Amount(deposit) >= p.min_deposit);
            let mut ch = Channel::open(client.account(), provider.account(), Amount(deposit), 100, 0, &p).unwrap();
            let mut best_signed = 0;
            for (i, a) in amounts.iter().enumerate() {
                let v = Voucher::sign(&client, id, Amount(*a));
                if let Ok(next) = ch.settle(&id, &provider.account(), &v, i as u64, p.settle_window) {
                    proptest::prop_assert!(next.settled.0 > ch.settled.0 && next.settled.0 <= deposit);
                    best_signed = best_signed.max(*a);
                    ch = next;
                }
            }
            let out = ch.collect(&client.account(), 1_000).unwrap();
            proptest::prop_assert_eq!(out.provider.0 + out.client.0, deposit);
            proptest::prop_assert!(out.provider.0 <= best_signed.min(deposit));
        }
    }
}
