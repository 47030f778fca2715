//! Serves the web console over HTTPS (`lethe serve --tls-cert FILE --tls-key FILE`).
//!
//! The admin supplies a PEM certificate chain (leaf first) and its PEM private key (PKCS#8, PKCS#1 or
//! SEC1). Lethe is an on-prem appliance that usually has no route to the internet, so there is no ACME:
//! the certificate comes from the site's own CA or is self-signed, and renewing it is the admin's job
//! (restart the service after replacing the files).
//!
//! rustls runs on the ring provider, chosen explicitly per config rather than installed as a process
//! default, so no aws-lc code is linked and nothing else in the process can change the choice. Only
//! TLS 1.3 and 1.2 are offered, and ALPN offers only `http/1.1` because the console serves HTTP/1 only.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{InconsistentKeys, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

/// A client gets this long to finish the TLS handshake; it runs in the connection's own task, so a
/// slow client only ties up itself, and the bound frees the socket of one that never finishes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on receiving a request's headers, against slow-header (slowloris) clients.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// On shutdown, how long open connections get to finish their current request before `serve` returns.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an accept error such as EMFILE, which would otherwise repeat in a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Why the certificate or key could not be loaded; the messages are shown to the admin as they are.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is not valid PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{} holds no certificate (expected PEM \"CERTIFICATE\" blocks)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error("the private key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("rustls rejected the certificate in {} or the key in {}: {source}", cert.display(), key.display())]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// Loads the certificate chain and key into a server config for [`serve`].
pub fn load_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certs(cert)?;
    let key_der = read_key(key)?;
    let rejected = |source| TlsError::Rejected {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(rejected)?
        .with_no_client_auth()
        // rustls checks that the key's public half is the one in the leaf certificate.
        .with_single_cert(chain, key_der)
        .map_err(|err| match err {
            rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => TlsError::KeyMismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            },
            other => rejected(other),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The file's bytes, wiped on drop because the key file's bytes are the private key.
fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
}

fn pem_error(path: &Path, err: pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        reason: err.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path)?;
    // Blocks of other kinds (a key in a combined file) are skipped by the iterator.
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| pem_error(path, err))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(path)?;
    // The first PKCS#8, PKCS#1 or SEC1 block; certificates in the same file are skipped.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| match err {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        other => pem_error(path, other),
    })
}

/// Serves `app` over TLS on `listener` until `shutdown` completes.
///
/// Each connection's handshake and HTTP/1 serving run in their own task; handlers can extract the
/// peer as `ConnectInfo<SocketAddr>`. On shutdown the listener is closed, open connections finish
/// their current request and close, and after at most [`DRAIN_TIMEOUT`] this returns; connections
/// still open then are left to finish on their own. Accept errors are logged and retried, never
/// returned, so today this always returns `Ok`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    // Each connection task holds a receiver: a send tells it to wind down, and `closed()` on the
    // sender completes once every task has finished and dropped its receiver.
    let (stop_tx, stop_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // The peer went away between SYN and accept; nothing is wrong with the listener.
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    warn!(%err, "accepting a connection failed; retrying shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Small responses should go out at once rather than wait for Nagle; failure only costs latency.
        if let Err(err) = stream.set_nodelay(true) {
            debug!(%peer, %err, "cannot set TCP_NODELAY");
        }
        let task = connection(stream, peer, acceptor.clone(), app.clone(), stop_rx.clone());
        tokio::spawn(task);
    }
    drop(listener);
    drop(stop_rx);
    stop_tx.send_replace(());
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, stop_tx.closed()).await;
    if drained.is_err() {
        info!(
            open = stop_tx.receiver_count(),
            "connections still open after the drain period"
        );
    }
    Ok(())
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Handshake, then HTTP/1 until the client closes, an error, or shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    mut stop: watch::Receiver<()>,
) {
    let tls = tokio::select! {
        handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => match handshake {
            Ok(Ok(tls)) => tls,
            // Scanners, plain-HTTP clients and clients that distrust the certificate end up here:
            // routine on a network, so debug rather than warn.
            Ok(Err(err)) => {
                debug!(%peer, %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = stop.changed() => return,
    };
    let router = TowerToHyperService::new(app);
    // What `into_make_service_with_connect_info` would do: the `ConnectInfo` extractor reads this
    // extension.
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        router.call(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(tls), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stop.changed() => {
            // Finish the request in progress (if any), then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        debug!(%peer, %err, "HTTPS connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::SupportedProtocolVersion;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;
    use tokio_rustls::client::TlsStream;

    const CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

    /// Writes a self-signed certificate for localhost and 127.0.0.1 and its key as `name.crt`/`name.key`.
    fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        (cert, key, made.cert.der().clone())
    }

    async fn start(cert: &Path, key: &Path) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<io::Result<()>>) {
        let peer = |ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { format!("peer {peer}") };
        let app = Router::new().route("/", axum::routing::get(peer));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let config = load_config(cert, key).unwrap();
        let shutdown = async move { stopped.await.unwrap_or(()) };
        let server = tokio::spawn(serve(listener, app, config, shutdown));
        (addr, stop, server)
    }

    async fn connect(
        addr: SocketAddr,
        trusted: CertificateDer<'static>,
        versions: &[&'static SupportedProtocolVersion],
    ) -> TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(trusted).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap()
    }

    /// Sends `request` and reads until the server closes (a read error, e.g. a reset, also ends it).
    async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin, request: &[u8]) -> String {
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response));
        let _ = read.await.expect("the server closes within 5 s");
        String::from_utf8_lossy(&response).into_owned()
    }

    #[tokio::test]
    async fn serves_https_with_peer_address_and_outlasts_a_plain_http_client() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, der) = self_signed(dir.path(), "server");
        let (addr, stop, server) = start(&cert, &key).await;
        // Plain HTTP fails the handshake and gets no HTTP reply; TLS clients that follow are served.
        let plain = exchange(TcpStream::connect(addr).await.unwrap(), CLOSE).await;
        assert!(!plain.contains("HTTP/"), "{plain}");
        for versions in [BOTH, &[&rustls::version::TLS12]] {
            let tls = connect(addr, der.clone(), versions).await;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
            let response = exchange(tls, CLOSE).await;
            assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
            assert!(response.contains("peer 127.0.0.1:"), "{response}");
        }
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_returns_promptly_despite_an_idle_keep_alive_connection() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, der) = self_signed(dir.path(), "server");
        let (addr, stop, server) = start(&cert, &key).await;
        let mut tls = connect(addr, der, BOTH).await;
        let keep_alive = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        tls.write_all(keep_alive).await.unwrap();
        let mut response = Vec::new();
        while !String::from_utf8_lossy(&response).contains("peer 127.0.0.1:") {
            let read = tls.read_buf(&mut response).await.unwrap();
            assert_ne!(read, 0, "closed before the response");
        }
        stop.send(()).unwrap();
        // Well under DRAIN_TIMEOUT: the idle connection is closed at once rather than waited for.
        let returned = tokio::time::timeout(Duration::from_secs(3), server).await;
        returned.expect("serve returns within 3 s").unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = self_signed(dir.path(), "server");
        let (_, other_key, _) = self_signed(dir.path(), "other");
        let (missing, empty) = (dir.path().join("missing.crt"), dir.path().join("empty.crt"));
        std::fs::write(&empty, "").unwrap();
        let message = |cert: &Path, key: &Path| load_config(cert, key).unwrap_err().to_string();
        let (c, m, e) = (cert.display(), missing.display(), empty.display());
        let not_found = "No such file or directory (os error 2)";
        assert_eq!(message(&missing, &key), format!("cannot read {m}: {not_found}"));
        let no_cert = format!("{e} holds no certificate (expected PEM \"CERTIFICATE\" blocks)");
        assert_eq!(message(&empty, &key), no_cert);
        let no_key = format!("{c} holds no private key (PKCS#8, PKCS#1 or SEC1)");
        assert_eq!(message(&cert, &cert), no_key);
        let mismatch = format!(
            "the private key in {} does not match the certificate in {c}",
            other_key.display()
        );
        assert_eq!(message(&cert, &other_key), mismatch);
        let broken = "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n";
        std::fs::write(&empty, broken).unwrap();
        assert!(matches!(load_config(&empty, &key), Err(TlsError::Pem { .. })));
    }
}
