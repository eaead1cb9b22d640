//! A server inside this process, for drills over HTTP: on a runtime of its own, so that
//! killing the runtime drops every connection at once, as a power cut would.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::super::{Clock, Faults};
use super::durable::{Crash, group_commits};
use super::{Limits, Protocol, ServeOptions, Tokens, connections, open, router};

pub struct InProcess {
    pub address: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl InProcess {
    /// Starts a JSON-API server on `fleet`, listening on `listen`, with no tokens, reading
    /// the time from `clock`; `crash_after_op` raises `crashed` instead of aborting the
    /// process. The fleet's lock may still be held by a server just killed: waits for it a
    /// bounded time.
    pub fn start(
        fleet: &Path,
        listen: SocketAddr,
        faults: &Faults,
        crashed: Arc<Notify>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let deadline = Instant::now() + Duration::from_millis(super::super::LOCK_WAIT_MS_MAX);
        let shared = loop {
            let options = ServeOptions {
                protocol: Protocol::Json,
                fleet: fleet.to_path_buf(),
                listen,
                faults: faults.clone(),
                tokens: Tokens::none(),
                limits: Limits::default(),
            };
            match open(options, clock.clone(), Crash::Signal(crashed.clone())) {
                // A drill reports its restarts itself.
                Ok((shared, _replayed)) => break shared,
                Err(e) if Instant::now() < deadline && e.contains("in use") => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        };
        // A server just killed lets go of its port as its runtime winds down, in the
        // background: wait for it a bounded time too.
        let listener = loop {
            match std::net::TcpListener::bind(listen) {
                Ok(listener) => break listener,
                Err(e)
                    if Instant::now() < deadline && e.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(format!("cannot listen on {listen}: {e}")),
            }
        };
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.spawn(group_commits(shared.clone()));
        runtime.spawn(async move {
            if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                let limits = shared.limits;
                connections::serve(listener, router(shared), limits, std::future::pending()).await;
            }
        });
        Ok(Self {
            address,
            runtime: Some(runtime),
        })
    }

    /// Kills the server: connections drop, nothing more is written (every answered operation
    /// is already on disk), the fleet's lock is released as the tasks go.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
