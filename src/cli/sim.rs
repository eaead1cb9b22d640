//! `mkplan sim serve`: the simulator over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args as ClapArgs;
use zeroize::Zeroizing;

use crate::backend::sim::Faults;
use crate::backend::sim::server::{self, Protocol, ServeOptions, Tokens};
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
    /// Address to listen on; port 0 picks a free port (the URL is printed on stdout).
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
    })
    .await
    .map_err(Error::Other)?;
    Ok(0)
}
