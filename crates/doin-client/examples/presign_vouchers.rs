//! Opens payment channels and pre-signs paid `POST /inference` bodies, one file per channel,
//! for load generators (`scripts/bench-inference.sh` feeds them to wrk).
//!
//! ```text
//! cargo run --release -p doin-client --example presign_vouchers -- \
//!     NODE_URL KEY_FILE OUT_DIR CHANNELS QUERIES_PER_CHANNEL DOMAIN INPUT_JSON
//! ```
//! The key must hold enough coins for the deposits; each channel's deposit covers its
//! queries at the node's price, plus one query of headroom.

use std::io::Write;
use std::path::PathBuf;

use doin_client::{ChannelBook, NodeClient, Wallet};
use doin_core::amount::Amount;
use doin_core::channel::Voucher;
use doin_core::identity::Keypair;
use doin_core::params::DomainId;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, key, out, channels, queries, domain, input] = args.as_slice() else {
        return Err(
            "usage: presign_vouchers NODE_URL KEY_FILE OUT_DIR CHANNELS QUERIES DOMAIN INPUT_JSON"
                .into(),
        );
    };
    let (channels, queries): (u64, u64) = (channels.parse()?, queries.parse()?);
    let domain = DomainId::new(domain)?;
    let input: serde_json::Value = serde_json::from_str(input)?;
    let key = Keypair::load(std::path::Path::new(key))?;
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;

    let wallet = Wallet::connect(NodeClient::new(url), key.clone())?;
    let offer = wallet.node().offer(&domain)?;
    let deposit = Amount(offer.price.units() * (queries + 1)).max(Amount::from_doin(1));
    let mut book = ChannelBook::open(&out.join("channels.json"))?;
    let ids: Vec<_> = (0..channels)
        .map(|_| wallet.open_channel(offer.provider, deposit, 10_000, &mut book))
        .collect::<Result<_, _>>()?;

    // Signing is the slow part (about 20 µs a voucher): one thread per channel.
    std::thread::scope(|s| {
        for (i, id) in ids.iter().enumerate() {
            let (key, out, input, domain) = (&key, &out, &input, &domain);
            s.spawn(move || -> std::io::Result<()> {
                let mut file = std::io::BufWriter::new(std::fs::File::create(
                    out.join(format!("vouchers-{}.txt", i + 1)),
                )?);
                for q in 1..=queries {
                    let voucher = Voucher::sign(key, *id, Amount(offer.price.units() * q));
                    let body = serde_json::json!({
                        "domain_id": domain, "input_data": input, "voucher": voucher,
                    });
                    writeln!(file, "{body}")?;
                }
                file.flush()
            });
        }
    });
    println!(
        "{channels} channels of {deposit} each, {queries} vouchers per channel at {} per query, in {}",
        offer.price,
        out.display()
    );
    Ok(())
}
