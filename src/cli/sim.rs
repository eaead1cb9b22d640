//! `mkplan sim serve`: the simulator over HTTP; `mkplan sim compact`: its operation log into
//! the fleet file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args as ClapArgs;
use zeroize::Zeroizing;

use crate::backend::sim::server::{
    self, BODY_TIMEOUT_MS_DEFAULT, CONNECTIONS_MAX_DEFAULT, CONNECTIONS_MAX_LIMIT,
    HEADER_TIMEOUT_MS_DEFAULT, Limits, Protocol, ServeOptions, TIMEOUT_MS_MAX, Tokens,
};
use crate::backend::sim::{Faults, Simulator};
use crate::error::{Error, Result};

/// Longest token lifetime the server accepts (IAM tokens live one hour).
pub const TOKEN_TTL_S_MAX: u64 = 24 * 3600;

#[derive(ClapArgs)]
pub struct ServeArgs {
    /// `json` (docs/http-api.md) or `tke`: the TKE API's read half, for `--backend tke:REGION
    /// --tke-endpoint URL`.
    #[arg(long, value_enum, default_value = "json")]
    pub protocol: Protocol,
    /// The fleet file: the simulator's whole state, written back after every operation.
    #[arg(long)]
    pub fleet: PathBuf,
    /// Address to listen on; port 0 picks a free port (the URL is printed on stdout). An
    /// address other than loopback (127.0.0.1, ::1) needs --token or --api-key.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Faults, as in MKPLAN_SIM_FAULTS: crash_after_op=N,fail_op=N,lose_response_op=N,latency_ms=N.
    #[arg(long, default_value = "")]
    pub faults: String,
    /// A bearer token every request must carry; repeat for several. Prefer the environment
    /// variable (comma-separated) so that tokens stay out of the process list.
    #[arg(
        long = "token",
        env = "MKPLAN_SIM_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub tokens: Vec<String>,
    /// With --protocol tke: an API key that `POST /identity/token` exchanges for a new token,
    /// as IAM does; repeat for several (or MKPLAN_SIM_API_KEYS, comma-separated).
    #[arg(
        long = "api-key",
        env = "MKPLAN_SIM_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Seconds each token stays valid after its first use (default: forever).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=TOKEN_TTL_S_MAX))]
    pub token_ttl_s: Option<u64>,
    /// Milliseconds a client has, from connecting (or from its previous answer), to send a
    /// request's headers; then the connection is closed.
    #[arg(long, default_value_t = HEADER_TIMEOUT_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=TIMEOUT_MS_MAX))]
    pub header_timeout_ms: u64,
    /// Milliseconds a client has, after the headers, to send the request's body; then 408.
    #[arg(long, default_value_t = BODY_TIMEOUT_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=TIMEOUT_MS_MAX))]
    pub body_timeout_ms: u64,
    /// Connections served at once; more wait until one closes.
    #[arg(long, default_value_t = CONNECTIONS_MAX_DEFAULT as u64,
          value_parser = clap::value_parser!(u64).range(1..=CONNECTIONS_MAX_LIMIT as u64))]
    pub connections_max: u64,
}

/// Tokens are secrets: never shown.
impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("fleet", &self.fleet)
            .field("listen", &self.listen)
            .field("faults", &self.faults)
            .field("protocol", &self.protocol)
            .field("tokens", &format_args!("[{} hidden]", self.tokens.len()))
            .field(
                "api_keys",
                &format_args!("[{} hidden]", self.api_keys.len()),
            )
            .field("token_ttl_s", &self.token_ttl_s)
            .field("header_timeout_ms", &self.header_timeout_ms)
            .field("body_timeout_ms", &self.body_timeout_ms)
            .field("connections_max", &self.connections_max)
            .finish()
    }
}

pub async fn serve(args: ServeArgs) -> Result<u8> {
    let faults = Faults::parse(&args.faults).map_err(|e| Error::Other(format!("--faults: {e}")))?;
    if !args.api_keys.is_empty() && args.protocol != Protocol::Tke {
        return Err(Error::Other(
            "--api-key is for --protocol tke (the IAM token exchange)".into(),
        ));
    }
    let tokens = Tokens::new(
        args.tokens.into_iter().map(Zeroizing::new).collect(),
        args.token_ttl_s.map(Duration::from_secs),
    )
    .with_api_keys(args.api_keys.into_iter().map(Zeroizing::new).collect());
    server::serve(ServeOptions {
        protocol: args.protocol,
        fleet: args.fleet,
        listen: args.listen,
        faults,
        tokens,
        limits: Limits {
            header_timeout: Duration::from_millis(args.header_timeout_ms),
            body_timeout: Duration::from_millis(args.body_timeout_ms),
            connections_max: usize::try_from(args.connections_max)
                .expect("at most CONNECTIONS_MAX_LIMIT"),
        },
    })
    .await
    .map_err(Error::Other)?;
    Ok(0)
}

#[derive(Debug, ClapArgs)]
pub struct CompactArgs {
    /// The fleet file whose operation log to compact.
    #[arg(long)]
    pub fleet: PathBuf,
}

/// `mkplan sim compact`: the log's changes into the fleet file, under the fleet's lock.
pub fn compact(args: &CompactArgs) -> Result<u8> {
    let simulator = Simulator::open(&args.fleet, Faults::default())?;
    match simulator.compact()? {
        Some(changes) => eprintln!(
            "Compacted {changes} change(s) from {} into {}.",
            crate::backend::sim::oplog::log_path(simulator.path()).display(),
            simulator.path().display()
        ),
        None => eprintln!(
            "{} has no operation log: nothing to compact.",
            simulator.path().display()
        ),
    }
    Ok(0)
}
