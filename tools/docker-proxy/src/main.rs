//! `mtp-docker-proxy`: the admin gateway's read-only view of the Docker engine.
//!
//! A Docker socket grants whatever is asked of it, whatever the mount's `:ro` says: whoever
//! can reach it can create a privileged container and own the host, and read every tenant's
//! container environment. This proxy sits between the admin gateway and the engine and lets
//! through only the read endpoints an operator's agent needs to see the fleet (list and
//! inspect containers, their stats, images, networks, volumes, events, version and info),
//! with `Config.Env` removed from container inspects. Every other request (create, start,
//! stop, exec, archive, attach, logs, anything not GET or HEAD) is refused with 403.
//!
//!   mtp-docker-proxy [--listen ADDR:PORT] [--upstream /var/run/docker.sock]
//!   mtp-docker-proxy --health [--listen ADDR:PORT]     (exit 0 when the proxy answers)

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

type Body = BoxBody<Bytes, hyper::Error>;

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen: SocketAddr = flag(&args, "--listen")
        .unwrap_or("0.0.0.0:2375")
        .parse()
        .unwrap_or_else(|e| {
            eprintln!("--listen: {e}");
            std::process::exit(2)
        });
    let upstream = flag(&args, "--upstream")
        .unwrap_or("/var/run/docker.sock")
        .to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if args.iter().any(|a| a == "--health") {
        std::process::exit(rt.block_on(health(listen)));
    }
    if let Err(e) = rt.block_on(serve(listen, Arc::new(upstream))) {
        eprintln!("mtp-docker-proxy: {e}");
        std::process::exit(1);
    }
}

/// The healthcheck: `/_ping` through the proxy itself.
async fn health(listen: SocketAddr) -> i32 {
    let addr = SocketAddr::new([127, 0, 0, 1].into(), listen.port());
    let check = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = Request::get("/_ping")
            .header("host", "docker")
            .body(Full::new(Bytes::new()))
            .ok()?;
        let res = send.send_request(req).await.ok()?;
        Some(res.status().is_success())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), check).await {
        Ok(Some(true)) => 0,
        _ => 1,
    }
}

async fn serve(listen: SocketAddr, upstream: Arc<String>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("mtp-docker-proxy: read-only Docker API on {listen}, upstream {upstream}");
    loop {
        let (tcp, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, upstream.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// The path without an API version prefix (`/v1.41/containers/json` -> `/containers/json`).
fn unversioned(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(i) = rest.find('/')
        && rest[..i].chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        return &rest[i..];
    }
    path
}

/// What the proxy lets through, and whether the answer needs the environment stripped.
#[derive(Debug, PartialEq)]
enum Verdict {
    Pass,
    StripEnv,
    Refuse,
}

fn judge(method: &Method, path: &str) -> Verdict {
    if method != Method::GET && method != Method::HEAD {
        return Verdict::Refuse;
    }
    let p = unversioned(path);
    let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["_ping"] | ["version"] | ["info"] | ["events"] | ["system", "df"] => Verdict::Pass,
        ["containers", "json"] | ["images", "json"] | ["networks"] | ["volumes"] => Verdict::Pass,
        ["networks", _] | ["volumes", _] => Verdict::Pass,
        ["containers", _, "json"] => Verdict::StripEnv,
        ["containers", _, "stats"] | ["containers", _, "top"] => Verdict::Pass,
        _ => Verdict::Refuse,
    }
}

fn full(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("a static response")
}

async fn handle(
    req: Request<Incoming>,
    upstream: Arc<String>,
) -> Result<Response<Body>, Infallible> {
    let verdict = judge(req.method(), req.uri().path());
    if verdict == Verdict::Refuse {
        let msg = format!(
            "mtp docker proxy: {} {} is not allowed (this Docker API is read-only)",
            req.method(),
            req.uri().path()
        );
        return Ok(full(
            StatusCode::FORBIDDEN,
            serde_json::json!({ "message": msg }).to_string(),
        ));
    }
    match forward(req, &upstream, verdict == Verdict::StripEnv).await {
        Ok(r) => Ok(r),
        Err(e) => Ok(full(
            StatusCode::BAD_GATEWAY,
            serde_json::json!({ "message": format!("mtp docker proxy: upstream: {e}") })
                .to_string(),
        )),
    }
}

async fn forward(
    req: Request<Incoming>,
    upstream: &str,
    strip_env: bool,
) -> Result<Response<Body>, String> {
    let unix = tokio::net::UnixStream::connect(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(unix))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    // Only the request line and headers go on: GET and HEAD carry no body.
    let (parts, _) = req.into_parts();
    let out = Request::from_parts(parts, Full::new(Bytes::new()));
    let res = send.send_request(out).await.map_err(|e| e.to_string())?;
    if !strip_env || !res.status().is_success() {
        return Ok(res.map(|b| b.boxed()));
    }
    let (mut parts, body) = res.into_parts();
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if let Some(cfg) = v.get_mut("Config").and_then(|c| c.as_object_mut()) {
        cfg.remove("Env");
    }
    let body = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
    parts.headers.remove("content-length");
    Ok(Response::from_parts(
        parts,
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_pass_and_inspects_lose_their_environment() {
        let get = Method::GET;
        assert_eq!(judge(&get, "/v1.41/containers/json"), Verdict::Pass);
        assert_eq!(judge(&get, "/_ping"), Verdict::Pass);
        assert_eq!(judge(&get, "/v1.41/containers/abc/json"), Verdict::StripEnv);
        assert_eq!(judge(&get, "/events"), Verdict::Pass);
        for refused in [
            "/containers/abc/archive",
            "/containers/abc/logs",
            "/containers/abc/export",
            "/containers/abc/attach/ws",
            "/secrets",
            "/v1.41/swarm",
        ] {
            assert_eq!(judge(&get, refused), Verdict::Refuse, "{refused}");
        }
        for m in [Method::POST, Method::PUT, Method::DELETE] {
            assert_eq!(judge(&m, "/containers/create"), Verdict::Refuse);
            assert_eq!(judge(&m, "/containers/abc/exec"), Verdict::Refuse);
            assert_eq!(judge(&m, "/containers/abc/stop"), Verdict::Refuse);
        }
    }
}
