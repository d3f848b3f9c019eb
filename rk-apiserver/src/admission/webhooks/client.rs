//! Calling a webhook: where `clientConfig` points, and one HTTPS POST
//! checked against its `caBundle`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use crate::state::ApiState;

/// The largest answer read from an admission webhook (one object).
pub(crate) const MAX_ADMISSION_ANSWER: usize = 3 * 1024 * 1024;
/// Where the system's trusted roots usually are (Debian, Alpine, Fedora).
const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// Where to send a review.
struct Destination {
    /// The name the certificate must carry.
    server_name: String,
    /// Where to connect.
    host: String,
    port: u16,
    /// Path and query of the request.
    path: String,
    /// The URL as errors name it.
    url: String,
}

/// POSTs `body` to the webhook `config` (a `WebhookClientConfig`) names and
/// returns the answer's body (at most `max_answer` bytes); any failure, a status other than 200
/// included, is the error's text.
pub(crate) async fn post(
    state: &ApiState,
    config: &Value,
    body: Vec<u8>,
    timeout_seconds: u64,
    max_answer: usize,
) -> Result<Bytes, String> {
    let destination = destination(state, config, timeout_seconds).await?;
    let url = destination.url.clone();
    let tls = tls_config(config["caBundle"].as_str().unwrap_or_default())?;
    let call = send(destination, tls, body, max_answer);
    match tokio::time::timeout(Duration::from_secs(timeout_seconds), call).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(format!("Post {url:?}: {e}")),
        Err(_) => Err(format!("Post {url:?}: context deadline exceeded")),
    }
}

async fn send(
    destination: Destination,
    tls: Arc<rustls::ClientConfig>,
    body: Vec<u8>,
    max_answer: usize,
) -> Result<Bytes, String> {
    let server_name = ServerName::try_from(destination.server_name.clone())
        .map_err(|e| format!("invalid server name {:?}: {e}", destination.server_name))?;
    let tcp = tokio::net::TcpStream::connect((destination.host.as_str(), destination.port))
        .await
        .map_err(|e| format!("dial tcp {}:{}: {e}", destination.host, destination.port))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let authority = if destination.port == 443 {
        destination.server_name.clone()
    } else {
        format!("{}:{}", destination.server_name, destination.port)
    };
    let request = http::Request::post(destination.path.as_str())
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, */*")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let answer = Limited::new(response.into_body(), max_answer)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    if status != http::StatusCode::OK {
        return Err(format!(
            "the server answered {}: {}",
            status.as_u16(),
            String::from_utf8_lossy(&answer[..answer.len().min(512)])
        ));
    }
    Ok(answer)
}

/// TLS for a webhook: its `caBundle` (base64 of PEM certificates) or, when
/// it is empty, the system's roots. Built once per bundle: the same few
/// configurations serve every call.
fn tls_config(ca_bundle: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    /// More distinct bundles than this and the cache starts over.
    const KEEP: usize = 64;
    static BUILT: LazyLock<Mutex<HashMap<String, Arc<rustls::ClientConfig>>>> =
        LazyLock::new(Mutex::default);
    if let Some(config) = BUILT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(ca_bundle)
    {
        return Ok(config.clone());
    }
    let config = Arc::new(build_tls_config(ca_bundle)?);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if built.len() >= KEEP {
        built.clear();
    }
    built.insert(ca_bundle.to_string(), config.clone());
    Ok(config)
}

fn build_tls_config(ca_bundle: &str) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    if ca_bundle.is_empty() {
        for path in SYSTEM_ROOTS {
            if let Ok(pem) = std::fs::read(path) {
                add_pem(&mut roots, &pem);
            }
        }
    } else {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(ca_bundle)
            .map_err(|e| format!("caBundle is not base64: {e}"))?;
        add_pem(&mut roots, &pem);
        if roots.is_empty() {
            return Err("caBundle holds no PEM certificate".into());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let bundle: Vec<CertificateDer<'static>> = roots_pem(ca_bundle);
    let chains = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(BundleVerifier { chains, bundle }))
        .with_no_client_auth())
}

/// The certificates of a (base64) `caBundle`; none for the system's roots.
fn roots_pem(ca_bundle: &str) -> Vec<CertificateDer<'static>> {
    let Ok(pem) = base64::engine::general_purpose::STANDARD.decode(ca_bundle) else {
        return Vec::new();
    };
    CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect()
}

/// Trusts a webhook's certificate as kube-apiserver (Go's `crypto/x509`)
/// does: a chain to a certificate of the bundle, or the certificate itself
/// in the bundle — a self-signed certificate used as its own CA, which
/// webpki alone refuses as "CA used as end entity". Either way the name
/// must match.
#[derive(Debug)]
struct BundleVerifier {
    chains: Arc<rustls::client::WebPkiServerVerifier>,
    bundle: Vec<CertificateDer<'static>>,
}

impl rustls::client::danger::ServerCertVerifier for BundleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self.chains.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => Ok(verified),
            Err(e)
                if self
                    .bundle
                    .iter()
                    .any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| e.clone())?;
                cert.verify_is_valid_for_subject_name(server_name)
                    .map_err(|_| e)?;
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.chains.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.chains.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.chains.supported_verify_schemes()
    }
}

fn add_pem(roots: &mut RootCertStore, pem: &[u8]) {
    for cert in CertificateDer::pem_slice_iter(pem).flatten() {
        let _ = roots.add(cert);
    }
}

/// Where `config` points: a URL, or a Service (one of its ready
/// endpoints, else its cluster IP), with `?timeout=` as upstream sends it.
async fn destination(
    state: &ApiState,
    config: &Value,
    timeout_seconds: u64,
) -> Result<Destination, String> {
    let timeout = format!("timeout={timeout_seconds}s");
    if let Some(url) = config["url"].as_str() {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("webhook URL {url:?} is not https"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = split_host_port(authority)?;
        let join = if path.contains('?') { '&' } else { '?' };
        return Ok(Destination {
            server_name: host.clone(),
            host,
            port,
            path: format!("{path}{join}{timeout}"),
            url: format!("{url}{join}{timeout}"),
        });
    }
    let service = &config["service"];
    let (Some(namespace), Some(name)) = (service["namespace"].as_str(), service["name"].as_str())
    else {
        return Err("clientConfig has neither url nor service".into());
    };
    let port = service["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(443);
    let path = service["path"].as_str().unwrap_or("/");
    let join = if path.contains('?') { '&' } else { '?' };
    let server_name = format!("{name}.{namespace}.svc");
    let (host, target) = service_address(state, namespace, name, port).await?;
    Ok(Destination {
        url: format!("https://{server_name}:{port}{path}{join}{timeout}"),
        server_name,
        host,
        port: target,
        path: format!("{path}{join}{timeout}"),
    })
}

fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("bad host {authority:?}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p
                .parse()
                .map_err(|_| format!("bad port in {authority:?}"))?,
            None => 443,
        };
        return Ok((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((
            host.to_string(),
            port.parse()
                .map_err(|_| format!("bad port in {authority:?}"))?,
        )),
        None => Ok((authority.to_string(), 443)),
    }
}

/// The address and port behind port `port` of Service `namespace/name`.
async fn service_address(
    state: &ApiState,
    namespace: &str,
    name: &str,
    port: u16,
) -> Result<(String, u16), String> {
    let missing = || format!("service \"{name}\" not found");
    let service = cached(state, "", "services", namespace, name)
        .await
        .ok_or_else(missing)?;
    let spec = &service["spec"];
    if spec["type"].as_str() == Some("ExternalName") {
        let host = spec["externalName"].as_str().ok_or_else(missing)?;
        return Ok((host.to_string(), port));
    }
    let service_port = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_u64() == Some(u64::from(port)))
        .ok_or_else(|| format!("service \"{name}\" has no port {port}"))?;
    let port_name = service_port["name"].as_str().unwrap_or_default();
    if let Some(found) = ready_endpoint(state, namespace, name, port_name).await {
        return Ok(found);
    }
    match spec["clusterIP"].as_str() {
        Some(ip) if !ip.is_empty() && ip != "None" => Ok((ip.to_string(), port)),
        _ => Err(format!("service \"{name}\" has no ready endpoints")),
    }
}

/// A ready endpoint of the Service's port named `port_name`, from its
/// EndpointSlices.
async fn ready_endpoint(
    state: &ApiState,
    namespace: &str,
    service: &str,
    port_name: &str,
) -> Option<(String, u16)> {
    let info = state.resource("discovery.k8s.io", "v1", "endpointslices")?;
    let prefix = format!("{}{namespace}/", info.storage_prefix());
    let snapshot = state.cache(&info).await.ok()?.snapshot(&prefix);
    for cached in &snapshot.objects {
        if cached
            .labels
            .get("kubernetes.io/service-name")
            .map(String::as_str)
            != Some(service)
        {
            continue;
        }
        let Ok(slice) = serde_json::from_slice::<Value>(&cached.bytes) else {
            continue;
        };
        let Some(port) = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or_default() == port_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        let ready = slice["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["conditions"]["ready"].as_bool() != Some(false))
            .find_map(|e| e["addresses"][0].as_str());
        if let Some(address) = ready {
            return Some((address.to_string(), port));
        }
    }
    None
}

/// An object from the watch cache.
async fn cached(
    state: &ApiState,
    group: &str,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Option<Value> {
    let info = state.resource(group, "v1", plural)?;
    let key = info.storage_key(Some(namespace), name);
    let object = state.cache(&info).await.ok()?.get(&key)?;
    serde_json::from_slice(&object.bytes).ok()
}
