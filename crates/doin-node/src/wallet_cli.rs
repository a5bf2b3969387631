//! `doin-node wallet …`: balances, transfers, payment channels and paid queries, through any
//! node's HTTP API (the `doin-client` crate behind a command line).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use doin_client::{ChannelBook, NodeClient, Wallet};
use doin_core::amount::Amount;
use doin_core::hash::Hash32;
use doin_core::identity::{AccountId, Keypair};
use doin_core::params::DomainId;

/// Default blocks a channel stays open.
const DEFAULT_LIFETIME: u64 = 1_000;

#[derive(Debug, Args)]
pub struct WalletArgs {
    /// The node to talk to.
    #[arg(long, env = "DOIN_NODE", default_value = "http://127.0.0.1:8470")]
    node: String,
    /// The wallet's key file (create one with `doin-node keygen FILE`).
    #[arg(long, env = "DOIN_WALLET_KEY", default_value = "doin-wallet.key")]
    key: PathBuf,
    /// The channel book (default: the key file's path with `.channels.json`).
    #[arg(long)]
    channels: Option<PathBuf>,
    #[command(subcommand)]
    command: WalletCommand,
}

#[derive(Debug, Subcommand)]
enum WalletCommand {
    /// Print the wallet's account id.
    Address,
    /// Balance and nonce of the wallet (or of ACCOUNT).
    Balance { account: Option<String> },
    /// Send coins; waits for the block.
    Transfer {
        #[arg(long)]
        to: String,
        /// In DOIN (`1.5`) or base units (`150000u`).
        #[arg(long)]
        amount: Amount,
    },
    /// What the node serves, at what price.
    Offers,
    /// Payment channels.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// One paid query: signs a voucher for the node's price (at most --max-price) and prints
    /// the answer as JSON.
    Infer {
        #[arg(long)]
        domain: String,
        /// The query's `input_data`, JSON.
        #[arg(long)]
        input: String,
        /// Most you pay for this query, in DOIN or base units (`10000u`).
        #[arg(long)]
        max_price: Amount,
        /// The channel to pay through (default: the book's channel to the node with the most
        /// room left).
        #[arg(long)]
        channel: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ChannelCommand {
    /// Lock a deposit for a provider (default: the node itself); waits for the block.
    Open {
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        deposit: Amount,
        /// Blocks until the channel expires.
        #[arg(long, default_value_t = DEFAULT_LIFETIME)]
        lifetime: u64,
    },
    /// Channels in the book (or one) with their state on chain.
    Status { channel: Option<String> },
    /// Ask the provider to settle; collect after the settle window.
    Close { channel: String },
    /// Pay out a channel after its settle window (or its expiry).
    Collect { channel: String },
}

pub fn run(args: WalletArgs) -> anyhow::Result<()> {
    let key = Keypair::load(&args.key).with_context(|| {
        format!(
            "wallet key {} (create one with `doin-node keygen {}`, or pass --key)",
            args.key.display(),
            args.key.display()
        )
    })?;
    if let WalletCommand::Address = args.command {
        println!("{}", key.account());
        return Ok(());
    }
    let book_path = args
        .channels
        .clone()
        .unwrap_or_else(|| args.key.with_extension("channels.json"));
    let node = NodeClient::new(&args.node);
    let wallet = Wallet::connect(node, key)?;
    match args.command {
        WalletCommand::Address => Ok(()),
        WalletCommand::Balance { account } => {
            let id = match account {
                Some(a) => parse_account(&a)?,
                None => wallet.account(),
            };
            let info = wallet.node().account(&id)?;
            println!("account: {}", info.account);
            println!(
                "balance: {} ({} base units)",
                info.balance,
                info.balance.units()
            );
            println!("nonce:   {} (next: {})", info.nonce, info.pending_nonce);
            Ok(())
        }
        WalletCommand::Transfer { to, amount } => {
            let (tx, height) = wallet.transfer(parse_account(&to)?, amount)?;
            println!("sent {amount} to {to} in block {height} (tx {tx})");
            Ok(())
        }
        WalletCommand::Offers => {
            let offers = wallet.node().offers()?;
            println!("provider: {} ({} mode)", offers.provider, offers.mode);
            for o in offers.offers {
                let champion = o.champion.map_or("no champion yet".to_string(), |c| {
                    format!("champion {} performance {}", c.optimae_id, c.performance)
                });
                println!("{}: {} per query, {champion}", o.domain_id, o.price);
            }
            Ok(())
        }
        WalletCommand::Channel(command) => {
            let mut book = ChannelBook::open(&book_path)?;
            channel(&wallet, &mut book, command)
        }
        WalletCommand::Infer {
            domain,
            input,
            max_price,
            channel,
        } => {
            let domain = DomainId::new(&domain)?;
            let input: serde_json::Value =
                serde_json::from_str(&input).context("--input is not JSON")?;
            let mut book = ChannelBook::open(&book_path)?;
            let offer = wallet.node().offer(&domain)?;
            let channel = match channel {
                Some(c) => parse_hash(&c)?,
                None => pick_channel(&book, &offer.provider, offer.price)?,
            };
            let answer = wallet.infer_at_most(&mut book, &channel, &domain, &input, max_price)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "prediction": answer.prediction,
                    "optimae_id": answer.optimae_id,
                    "performance": answer.performance,
                    "price": answer.price,
                    "channel": channel,
                    "paid_total": answer.paid,
                }))?
            );
            Ok(())
        }
    }
}

fn channel(wallet: &Wallet, book: &mut ChannelBook, command: ChannelCommand) -> anyhow::Result<()> {
    match command {
        ChannelCommand::Open {
            provider,
            deposit,
            lifetime,
        } => {
            let provider = match provider {
                Some(p) => parse_account(&p)?,
                None => wallet.node().status()?.account,
            };
            let id = wallet.open_channel(provider, deposit, lifetime, book)?;
            println!("channel {id} open: {deposit} for {provider}, {lifetime} blocks");
            println!("recorded in {}", book.path().display());
            Ok(())
        }
        ChannelCommand::Status { channel } => {
            let ids: Vec<Hash32> = match channel {
                Some(c) => vec![parse_hash(&c)?],
                None => book.channels().map(|(id, _)| *id).collect(),
            };
            if ids.is_empty() {
                println!("no channels in {}", book.path().display());
            }
            for id in ids {
                let local = book.get(&id).map(|e| e.spent);
                match wallet.node().channel(&id) {
                    Ok(c) => println!(
                        "{id}: deposit {}, signed {}, settled {}, expires at {}, {} (tip {})",
                        c.deposit,
                        local.map_or("?".to_string(), |a| a.to_string()),
                        c.settled,
                        c.expires_at,
                        c.closes_at
                            .map_or("open".to_string(), |h| format!("collect from {h}")),
                        c.tip_height
                    ),
                    Err(doin_client::ClientError::Api { status: 404, .. }) => {
                        println!("{id}: not on chain (paid out, or not opened)")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        }
        ChannelCommand::Close { channel } => {
            let id = parse_hash(&channel)?;
            let (tx, height) = wallet.close_channel(&id)?;
            println!("channel {id} closing (block {height}, tx {tx}); the provider settles, then collect");
            Ok(())
        }
        ChannelCommand::Collect { channel } => {
            let id = parse_hash(&channel)?;
            let (tx, height) = wallet.collect(&id, book)?;
            println!("channel {id} paid out in block {height} (tx {tx})");
            Ok(())
        }
    }
}

/// The book's channel to `provider` with the most room for one more query.
fn pick_channel(book: &ChannelBook, provider: &AccountId, price: Amount) -> anyhow::Result<Hash32> {
    book.channels()
        .filter(|(_, e)| &e.provider == provider)
        .filter(|(_, e)| e.spent.checked_add(price).is_some_and(|a| a <= e.deposit))
        .max_by_key(|(_, e)| e.deposit.saturating_sub(e.spent))
        .map(|(id, _)| *id)
        .with_context(|| {
            format!(
                "no channel to {provider} with room for {price} in {}: open one with \
                 `doin-node wallet channel open --deposit 1`",
                book.path().display()
            )
        })
}

fn parse_account(s: &str) -> anyhow::Result<AccountId> {
    AccountId::from_hex(s.trim_start_matches("0x"))
        .with_context(|| format!("{s:?} is not an account id (64 hex digits)"))
}

fn parse_hash(s: &str) -> anyhow::Result<Hash32> {
    Hash32::from_hex(s.trim_start_matches("0x"))
        .map_err(|e| anyhow::anyhow!("{s:?} is not a channel id (64 hex digits): {e}"))
}
