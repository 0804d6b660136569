//! Listening: the accept loop with its connection limit, TLS, HTTP/1.1 and HTTP/2, and the
//! graceful shutdown.
//!
//! Shutdown: stop accepting, end every live subscription, let requests in flight finish (an
//! append in flight is answered once it is durable), close idle keep-alive connections, stop the
//! projections after their batches in progress, and return; the caller then closes the store
//! (which syncs). Requests still running after `shutdown_timeout` are cut off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, TlsConfig};
use crate::{AppState, Backend, app, auth, metrics};

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "refusing to listen on {0} without tokens: anyone who can reach it could read and write \
         every event. Configure tokens (FACTLOG_TOKENS or [[server.tokens]] in the config \
         file), listen on a loopback address such as 127.0.0.1, or pass --insecure"
    )]
    InsecureBind(SocketAddr),
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
}

impl Config {
    /// Checks what can be checked before anything is opened or bound: a non-loopback address
    /// without tokens needs `insecure`, and TLS files must load.
    pub fn check(&self) -> Result<(), StartError> {
        if self.tokens.is_empty() && !self.listen.ip().is_loopback() && !self.insecure {
            return Err(StartError::InsecureBind(self.listen));
        }
        if let Some(tls) = &self.tls {
            tls_acceptor(tls)?;
        }
        Ok(())
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    tls: bool,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    projections: Option<factlog_projection::Projections>,
}

impl Server {
    /// Checks the configuration, binds and starts serving in the background.
    pub async fn start(config: Config, backend: Backend) -> Result<Self, StartError> {
        config.check()?;
        if config.tokens.is_empty() && !config.listen.ip().is_loopback() {
            tracing::warn!(
                listen = %config.listen,
                "listening on a non-loopback address without tokens (--insecure): anyone who \
                 can reach this address can read and write every event"
            );
        }
        let acceptor = config.tls.as_ref().map(tls_acceptor).transpose()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let projections = backend.projections;
        let state = AppState {
            store: backend.store,
            metrics: Arc::new(metrics::Metrics::new(
                backend.embedded.clone(),
                projections.clone(),
            )),
            embedded: backend.embedded,
            projections: projections.clone(),
            tokens: Arc::new(auth::Tokens::new(config.tokens.clone())),
            config: Arc::new(config),
            event_json: Arc::new(crate::sse::EventJsonCache::new(4096)),
            shutdown: shutdown_rx,
        };
        let tls = acceptor.is_some();
        let task = tokio::spawn(accept_loop(listener, acceptor, state));
        Ok(Self {
            local_addr,
            tls,
            shutdown,
            task,
            projections,
        })
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL clients use.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Shuts down gracefully (see the module docs) and returns once every connection is closed
    /// and the projections (if any) have stopped after their batches in progress, so that the
    /// caller can close the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the server task failed");
        }
        if let Some(projections) = self.projections {
            projections.stop().await;
        }
    }
}

async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, state: AppState) {
    let connections = Arc::new(Semaphore::new(state.config.connections_max));
    let graceful = GracefulShutdown::new();
    let mut shutdown = state.shutdown.clone();
    let shutdown_timeout = state.config.shutdown_timeout;
    let header_timeout = state.config.header_timeout;
    let router = app(state);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // An HTTP/2 connection whose peer stops answering pings is closed, so that it cannot hold
    // a connection slot forever.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(header_timeout);
    let builder = Arc::new(builder);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("never closed"),
            _ = stopping(&mut shutdown) => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopping(&mut shutdown) => break,
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let service = TowerToHyperService::new(router.clone());
        let acceptor = acceptor.clone();
        let mut stopping_rx = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = match acceptor {
                None => {
                    // A client that connects and never sends a byte would hold a connection slot
                    // forever: it gets as long as a TLS client has for its handshake.
                    // Shutdown closes it at once rather than waiting for it.
                    let mut first = [0u8; 1];
                    let sent = tokio::select! {
                        peeked = tokio::time::timeout(header_timeout, tcp.peek(&mut first)) => {
                            matches!(peeked, Ok(Ok(n)) if n > 0)
                        }
                        _ = stopping(&mut stopping_rx) => false,
                    };
                    if !sent {
                        tracing::debug!(%peer, "closed a connection that sent nothing");
                        return;
                    }
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .into_owned();
                    watcher.watch(conn).await
                }
                Some(acceptor) => match tokio::select! {
                    tls = tls_handshake(&acceptor, tcp, header_timeout) => tls,
                    _ = stopping(&mut stopping_rx) => Err(std::io::Error::other("shutting down")),
                } {
                    Ok(tls) => {
                        let conn = builder
                            .serve_connection_with_upgrades(TokioIo::new(tls), service)
                            .into_owned();
                        watcher.watch(conn).await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still running after {} s were cut off",
            shutdown_timeout.as_secs_f64()
        );
    }
}

/// Returns once shutdown has begun (or the sender is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}

async fn tls_handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    timeout: Duration,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio::time::timeout(timeout, acceptor.accept(tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

fn tls_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, StartError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| StartError::Tls(format!("{}: {e}", path.display())))
    };
    let cert_pem = read(&tls.cert)?;
    let key_pem = read(&tls.key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StartError::Tls(format!("{}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!(
            "{} holds no PEM certificate",
            tls.cert.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| StartError::Tls(format!("{}: {e}", tls.key.display())))?
        .ok_or_else(|| {
            StartError::Tls(format!("{} holds no PEM private key", tls.key.display()))
        })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StartError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| StartError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
