//! The service proxy against an in-process API server, with echo backends
//! on loopback: ClusterIP and NodePort routing, endpoint removal, retries on
//! a dead endpoint, ClientIP affinity, UDP, and a large transfer both by
//! copying and by splice.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use rk_apiserver::test_server::TestServer;
use rk_controllers::proxy::{self, Config, Proxy};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A TCP backend that answers every connection with `<id>:` followed by
/// whatever it receives.
async fn tcp_backend(id: &'static str) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if s.write_all(format!("{id}:").as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok((addr, task))
}

/// Send `ping` through `addr`; the answer, or `None` if the connection
/// failed or closed.
async fn ask(addr: SocketAddr) -> Option<String> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"ping").await.ok()?;
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        while !out.ends_with(b"ping") {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(out).ok()
    };
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .ok()
        .flatten()
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_service(
    server: &TestServer,
    name: &str,
    spec: serde_json::Value,
) -> Result<Service, Error> {
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?;
    Ok(api.create(&PostParams::default(), &svc).await?)
}

fn slice(
    service: &str,
    port_name: &str,
    protocol: &str,
    endpoints: &[(SocketAddr, bool)],
) -> Result<EndpointSlice, Error> {
    let port = endpoints.first().map_or(1, |(a, _)| a.port());
    let eps: Vec<serde_json::Value> = endpoints
        .iter()
        .map(
            |(a, ready)| json!({"addresses": [a.ip().to_string()], "conditions": {"ready": ready}}),
        )
        .collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-slice"), "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": protocol}],
        "endpoints": eps,
    }))?)
}

fn cluster_ip(svc: &Service) -> Result<std::net::IpAddr, Error> {
    Ok(svc
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .ok_or("no cluster IP")?
        .parse()?)
}

async fn start_proxy(server: &TestServer, node: [u8; 4]) -> Result<Proxy, Error> {
    let config = Config {
        node_addresses: vec![std::net::IpAddr::from(node)],
        connect_timeout: Duration::from_millis(500),
        resync_interval: Duration::from_secs(1),
        ..Config::default()
    };
    Ok(proxy::start(server.client(), config).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_ip_connection_reaches_the_endpoint_until_it_is_removed() -> Result<(), Error> {
    let server = crate::support::test_server().await?;
    let (backend, _b) = tcp_backend("a").await?;
    // The backend's own (free) port number doubles as the service port.
    let svc = create_service(
        &server,
        "echo",
        json!({"ports": [{"name": "tcp", "port": backend.port(), "targetPort": backend.port()}]}),
    )
    .await?;
    let slices: Api<EndpointSlice> = Api::namespaced(server.client(), "default");
    slices
        .create(
            &PostParams::default(),
            &slice("echo", "tcp", "TCP", &[(backend, true)])?,
        )
        .await?;
    let proxy = start_proxy(&server, [127, 43, 0, 1]).await?;
    let frontend = SocketAddr::new(cluster_ip(&svc)?, backend.port());
    let answer = wait_for(
        "an answer through the proxy",
        Duration::from_secs(10),
        || ask(frontend),
    )
    .await?;
    assert_eq!(answer, "a:ping");

    // The endpoint goes away: new connections no longer reach it.
    let patch = json!({"endpoints": []});
    slices
        .patch("echo-slice", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    wait_for("routing to stop", Duration::from_secs(10), || async {
        ask(frontend).await.is_none().then_some(())
    })
    .await?;
    assert!(
        proxy
            .metrics_text()
            .contains("rk_proxy_no_endpoints_total{service=\"default/echo:tcp\"")
    );
    proxy.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ports_route_and_dead_endpoints_are_skipped() -> Result<(), Error> {
    let server = crate::support::test_server().await?;
    let (backend, _b) = tcp_backend("live").await?;
    let svc = create_service(&server, "np", json!({"type": "NodePort", "ports": [{"name": "web", "port": backend.port(), "targetPort": backend.port()}]})).await?;
    let node_port = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
        .and_then(|p| p.node_port)
        .ok_or("no node port")?;
    // Two endpoints on the same port number: one live, one where nothing listens.
    let dead_ep = SocketAddr::new(std::net::IpAddr::from([127, 0, 0, 2]), backend.port());
    let slices: Api<EndpointSlice> = Api::namespaced(server.client(), "default");
    slices
        .create(
            &PostParams::default(),
            &slice("np", "web", "TCP", &[(backend, true), (dead_ep, true)])?,
        )
        .await?;
    let proxy = start_proxy(&server, [127, 43, 0, 2]).await?;
    let node_frontend = SocketAddr::new(
        std::net::IpAddr::from([127, 43, 0, 2]),
        u16::try_from(node_port)?,
    );
    wait_for("the node port", Duration::from_secs(10), || {
        ask(node_frontend)
    })
    .await?;
    // Round-robin lands on the dead endpoint half the time; every connection still succeeds.
    for _ in 0..6 {
        assert_eq!(ask(node_frontend).await.as_deref(), Some("live:ping"));
    }
    let cluster = SocketAddr::new(cluster_ip(&svc)?, backend.port());
    assert_eq!(ask(cluster).await.as_deref(), Some("live:ping"));
    assert!(
        proxy
            .metrics_text()
            .contains("rk_proxy_backend_errors_total{service=\"default/np:web\"")
    );
    proxy.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_keeps_a_client_on_one_endpoint() -> Result<(), Error> {
    let server = crate::support::test_server().await?;
    // Two backends on the same port number, on two loopback addresses.
    let first = TcpListener::bind("127.0.0.1:0").await?;
    let port = first.local_addr()?.port();
    drop(first);
    let spawn = |ip: [u8; 4], id: &'static str| async move {
        let l = TcpListener::bind(SocketAddr::new(std::net::IpAddr::from(ip), port)).await?;
        let addr = l.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let _ = s.write_all(format!("{id}:").as_bytes()).await;
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Ok::<_, Error>((addr, task))
    };
    let (a, _ta) = spawn([127, 0, 0, 1], "a").await?;
    let (b, _tb) = spawn([127, 0, 0, 3], "b").await?;
    let svc = create_service(
        &server,
        "sticky",
        json!({"sessionAffinity": "ClientIP", "ports": [{"name": "tcp", "port": port, "targetPort": port}]}),
    )
    .await?;
    let slices: Api<EndpointSlice> = Api::namespaced(server.client(), "default");
    slices
        .create(
            &PostParams::default(),
            &slice("sticky", "tcp", "TCP", &[(a, true), (b, true)])?,
        )
        .await?;
    let proxy = start_proxy(&server, [127, 43, 0, 3]).await?;
    let frontend = SocketAddr::new(cluster_ip(&svc)?, port);
    let first = wait_for("an answer", Duration::from_secs(10), || ask(frontend)).await?;
    for _ in 0..6 {
        assert_eq!(ask(frontend).await, Some(first.clone()));
    }

    // Without affinity, connections alternate.
    let services: Api<Service> = Api::namespaced(server.client(), "default");
    services
        .patch(
            "sticky",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"sessionAffinity": "None"}})),
        )
        .await?;
    wait_for(
        "both endpoints to answer",
        Duration::from_secs(10),
        || async {
            let answers: std::collections::HashSet<String> =
                futures::future::join_all((0..4).map(|_| ask(frontend)))
                    .await
                    .into_iter()
                    .flatten()
                    .collect();
            (answers.len() == 2).then_some(())
        },
    )
    .await?;
    proxy.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_reach_the_endpoint_and_replies_come_back() -> Result<(), Error> {
    let server = crate::support::test_server().await?;
    let backend = UdpSocket::bind("127.0.0.1:0").await?;
    let backend_addr = backend.local_addr()?;
    let _echo = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        while let Ok((n, from)) = backend.recv_from(&mut buf).await {
            let mut reply = b"udp:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = backend.send_to(&reply, from).await;
        }
    });
    let svc = create_service(
        &server,
        "dns",
        json!({"ports": [{"name": "dns", "port": backend_addr.port(), "targetPort": backend_addr.port(), "protocol": "UDP"}]}),
    )
    .await?;
    let slices: Api<EndpointSlice> = Api::namespaced(server.client(), "default");
    slices
        .create(
            &PostParams::default(),
            &slice("dns", "dns", "UDP", &[(backend_addr, true)])?,
        )
        .await?;
    let proxy = start_proxy(&server, [127, 43, 0, 4]).await?;
    let frontend = SocketAddr::new(cluster_ip(&svc)?, backend_addr.port());
    let client = UdpSocket::bind("127.0.0.1:0").await?;
    let answer = wait_for("a UDP reply", Duration::from_secs(10), || async {
        client.send_to(b"hello", frontend).await.ok()?;
        let mut buf = [0u8; 64];
        let (n, from) =
            tokio::time::timeout(Duration::from_millis(300), client.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
        (from == frontend).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
    })
    .await?;
    assert_eq!(answer, "udp:hello");
    proxy.shutdown().await;
    Ok(())
}

/// Send `data` through `addr`, end the sending side, and read everything
/// that comes back until the other side ends too.
async fn echo_through(addr: SocketAddr, data: &[u8]) -> Result<Vec<u8>, Error> {
    let s = TcpStream::connect(addr).await?;
    let (mut r, mut w) = s.into_split();
    let sent = data.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await?;
        w.shutdown().await
    });
    let mut back = Vec::with_capacity(data.len());
    tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut back)).await??;
    writer.await??;
    Ok(back)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copying_and_splicing_both_carry_a_large_transfer_and_its_end() -> Result<(), Error> {
    let server = crate::support::test_server().await?;
    // An echo backend: everything read is written back, and its end is
    // passed on (a half-close, so the reply can still finish).
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let backend = listener.local_addr()?;
    let _echo = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    let svc = create_service(
        &server,
        "bulk",
        json!({"ports": [{"name": "tcp", "port": backend.port(), "targetPort": backend.port()}]}),
    )
    .await?;
    Api::<EndpointSlice>::namespaced(server.client(), "default")
        .create(
            &PostParams::default(),
            &slice("bulk", "tcp", "TCP", &[(backend, true)])?,
        )
        .await?;
    let frontend = SocketAddr::new(cluster_ip(&svc)?, backend.port());
    // 8 MiB that are not one repeated byte, so reordering would show.
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    for forwarding in [proxy::Forwarding::Copy, proxy::Forwarding::Splice] {
        let config = Config {
            node_addresses: vec![std::net::IpAddr::from([127, 43, 0, 9])],
            forwarding,
            resync_interval: Duration::from_secs(1),
            ..Config::default()
        };
        let proxy = proxy::start(server.client(), config).await?;
        // Listening is not enough: the proxy must also know the endpoint,
        // or it closes the connection while the 8 MiB are being written.
        wait_for(
            "the frontend to forward to the echo backend",
            Duration::from_secs(10),
            || async {
                match echo_through(frontend, b"ping").await {
                    Ok(back) if back == b"ping" => Some(()),
                    _ => None,
                }
            },
        )
        .await?;
        let back = echo_through(frontend, &data).await?;
        assert_eq!(back.len(), data.len(), "{forwarding:?}: bytes came back");
        assert!(back == data, "{forwarding:?}: the bytes came back in order");
        proxy.shutdown().await;
    }
    Ok(())
}
