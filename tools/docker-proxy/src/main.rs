//! `mtp-docker-proxy`: the admin gateway's read-only view of the Docker engine.
//!
//! A Docker socket grants whatever is asked of it, whatever the mount's `:ro` says: whoever
//! can reach it can create a privileged container and own the host, and read every tenant's
//! container environment. This proxy sits between the admin gateway and the engine and lets
//! through only the read endpoints an operator's agent needs to see the fleet (list and
//! inspect containers, their stats, images, networks, volumes, container events, version and
//! info), with `Config.Env` removed from container inspects. Each passed endpoint takes only
//! the query parameters listed for it (a request with any other is refused, not stripped),
//! and `/events` is narrowed to container life-cycle events (never `exec_*`, whose action
//! carries a command line). Every other request (create, start, stop, exec, `top`, archive,
//! attach, logs, anything not GET or HEAD) is refused with 403.
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

/// What the proxy lets through: the request to send upstream (the path as asked, the query
/// rebuilt from the allowed parameters only), and whether the answer needs the environment
/// stripped; or why not.
#[derive(Debug, PartialEq)]
enum Verdict {
    Pass { query: String, strip_env: bool },
    Refuse(String),
}

/// The query parameters each passed endpoint may carry (Docker API 1.41 names). A parameter
/// not listed is refused, never stripped: a reader sees at once why its answer would differ.
const NO_PARAMS: &[&str] = &[];
const CONTAINER_LIST: &[&str] = &["all", "limit", "size", "filters"];
const IMAGE_LIST: &[&str] = &["all", "filters", "digests"];
const FILTERS_ONLY: &[&str] = &["filters"];
const NETWORK_INSPECT: &[&str] = &["verbose", "scope"];
const CONTAINER_INSPECT: &[&str] = &["size"];
const CONTAINER_STATS: &[&str] = &["stream", "one-shot"];
const EVENTS: &[&str] = &["since", "until", "filters"];

/// The container events `/events` passes: the life cycle and health of containers. Never an
/// `exec_*` event (its action carries the exec's command line, which may hold a secret) nor
/// another type's. None of these names is a prefix of an `exec_` action, which matters because
/// Docker matches event names by prefix once `health_status` is among them.
const EVENT_NAMES: &[&str] = &[
    "create",
    "start",
    "restart",
    "stop",
    "kill",
    "die",
    "oom",
    "destroy",
    "pause",
    "unpause",
    "rename",
    "update",
    "health_status",
];

/// Which endpoint a path names, and its allowed parameters; `None` when it is not passed.
/// `GET /containers/{id}/top` is not passed at all: Docker runs the host's `ps` with the
/// caller's `ps_args` (`e` prints every process's environment) and, even without, shows
/// command lines.
fn endpoint(parts: &[&str]) -> Option<(&'static [&'static str], Rewrite)> {
    let plain = |params| Some((params, Rewrite::None));
    match parts {
        ["_ping"] | ["version"] | ["info"] | ["system", "df"] => plain(NO_PARAMS),
        ["events"] => Some((EVENTS, Rewrite::EventFilters)),
        ["containers", "json"] => plain(CONTAINER_LIST),
        ["images", "json"] => plain(IMAGE_LIST),
        ["networks"] | ["volumes"] => plain(FILTERS_ONLY),
        ["networks", _] => plain(NETWORK_INSPECT),
        ["volumes", _] => plain(NO_PARAMS),
        ["containers", _, "json"] => Some((CONTAINER_INSPECT, Rewrite::StripEnv)),
        ["containers", _, "stats"] => plain(CONTAINER_STATS),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rewrite {
    None,
    StripEnv,
    EventFilters,
}

/// A name or id in a path: what Docker accepts for containers, networks and volumes. Anything
/// else (percent escapes, `..`) is refused rather than left to the engine's router to decode.
fn plain_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn judge(method: &Method, path: &str, query: Option<&str>) -> Verdict {
    if method != Method::GET && method != Method::HEAD {
        return Verdict::Refuse(format!("{method} {path} is not allowed"));
    }
    let p = unversioned(path);
    let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    let Some((allowed, rewrite)) =
        endpoint(&parts).filter(|_| parts.iter().all(|s| plain_segment(s)))
    else {
        return Verdict::Refuse(format!("{method} {path} is not allowed"));
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Verdict::Refuse(format!(
                "the query parameter `{k}` is not allowed on {path} (allowed: {})",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            ));
        }
        if pairs.iter().any(|(seen, _)| *seen == k) {
            return Verdict::Refuse(format!("the query parameter `{k}` is given twice"));
        }
        pairs.push((k.into_owned(), v.into_owned()));
    }
    if rewrite == Rewrite::EventFilters {
        let asked = pairs
            .iter()
            .position(|(k, _)| k == "filters")
            .map(|i| pairs.remove(i).1);
        match event_filters(asked.as_deref()) {
            Ok(f) => pairs.push(("filters".into(), f)),
            Err(why) => return Verdict::Refuse(why),
        }
    }
    // Rebuilt, not forwarded: only the parameters judged here reach the engine, encoded one
    // way (a `;` or a second `?` cannot smuggle another parameter past this parser).
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    Verdict::Pass {
        query,
        strip_env: rewrite == Rewrite::StripEnv,
    }
}

/// The `filters` sent with `/events`: the caller's, narrowed to container events of
/// [`EVENT_NAMES`]. A caller may narrow further by container, image or label; asking for
/// another type or event name is refused.
fn event_filters(asked: Option<&str>) -> Result<String, String> {
    let mut out = serde_json::Map::new();
    let mut events: Vec<String> = Vec::new();
    if let Some(raw) = asked.filter(|s| !s.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| format!("`filters` is not a JSON object: {e}"))?;
        let obj = v.as_object().ok_or("`filters` is not a JSON object")?;
        for (key, values) in obj {
            // Docker takes `{"k": ["v"]}` and the older `{"k": {"v": true}}`.
            let values: Vec<String> = match values {
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<_>>(),
                serde_json::Value::Object(m) => Some(m.keys().cloned().collect()),
                _ => None,
            }
            .ok_or_else(|| format!("`filters.{key}` is not a list of strings"))?;
            match key.as_str() {
                "type" => {
                    if let Some(t) = values.iter().find(|t| *t != "container") {
                        return Err(format!(
                            "events of type `{t}` are not passed (only container events)"
                        ));
                    }
                }
                "event" => {
                    if let Some(e) = values.iter().find(|e| !EVENT_NAMES.contains(&e.as_str())) {
                        return Err(format!(
                            "the event `{e}` is not passed (passed: {})",
                            EVENT_NAMES.join(", ")
                        ));
                    }
                    events = values;
                }
                "container" | "image" | "label" => {
                    out.insert(key.clone(), values.into());
                }
                other => return Err(format!("the events filter `{other}` is not allowed")),
            }
        }
    }
    if events.is_empty() {
        events = EVENT_NAMES.iter().map(|e| e.to_string()).collect();
    }
    out.insert("type".into(), vec!["container"].into());
    out.insert("event".into(), events.into());
    Ok(serde_json::Value::Object(out).to_string())
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
    let (query, strip_env) = match judge(req.method(), req.uri().path(), req.uri().query()) {
        Verdict::Pass { query, strip_env } => (query, strip_env),
        Verdict::Refuse(why) => {
            let msg = format!("mtp docker proxy: {why} (this Docker API is read-only)");
            return Ok(full(
                StatusCode::FORBIDDEN,
                serde_json::json!({ "message": msg }).to_string(),
            ));
        }
    };
    match forward(req, &upstream, &query, strip_env).await {
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
    query: &str,
    strip_env: bool,
) -> Result<Response<Body>, String> {
    let unix = tokio::net::UnixStream::connect(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(unix))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    // Only the request line and headers go on: GET and HEAD carry no body, and the query is
    // the one judged.
    let (mut parts, _) = req.into_parts();
    let path = parts.uri.path();
    parts.uri = if query.is_empty() {
        path.parse()
    } else {
        format!("{path}?{query}").parse()
    }
    .map_err(|e: hyper::http::uri::InvalidUri| e.to_string())?;
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

    fn pass(path: &str, query: Option<&str>) -> (String, bool) {
        match judge(&Method::GET, path, query) {
            Verdict::Pass { query, strip_env } => (query, strip_env),
            Verdict::Refuse(why) => panic!("{path}?{query:?} refused: {why}"),
        }
    }

    fn refused(path: &str, query: Option<&str>) -> String {
        match judge(&Method::GET, path, query) {
            Verdict::Refuse(why) => why,
            v => panic!("{path}?{query:?} passed: {v:?}"),
        }
    }

    #[test]
    fn only_reads_pass_and_inspects_lose_their_environment() {
        assert_eq!(pass("/v1.41/containers/json", None), (String::new(), false));
        assert_eq!(pass("/_ping", None), (String::new(), false));
        assert_eq!(
            pass("/v1.41/containers/abc/json", None),
            (String::new(), true)
        );
        for refused_path in [
            "/containers/abc/archive",
            "/containers/abc/logs",
            "/containers/abc/export",
            "/containers/abc/attach/ws",
            "/containers/abc/top",
            "/v1.41/containers/abc/top",
            "/containers/abc%2Ftop/json",
            "/containers/../json",
            "/secrets",
            "/v1.41/swarm",
        ] {
            refused(refused_path, None);
        }
        for m in [Method::POST, Method::PUT, Method::DELETE] {
            for p in [
                "/containers/create",
                "/containers/abc/exec",
                "/containers/abc/stop",
            ] {
                assert!(matches!(judge(&m, p, None), Verdict::Refuse(_)));
            }
        }
    }

    #[test]
    fn each_endpoint_takes_only_its_listed_parameters() {
        assert_eq!(
            pass("/containers/json", Some("all=1&size=true&filters=%7B%7D")),
            ("all=1&size=true&filters=%7B%7D".to_string(), false)
        );
        assert_eq!(
            pass("/containers/abc/stats", Some("stream=0")).0,
            "stream=0"
        );
        let why = refused("/containers/abc/top", Some("ps_args=auxwwe"));
        assert!(why.contains("not allowed"), "{why}");
        let why = refused("/containers/json", Some("all=1&ps_args=auxwwe"));
        assert!(why.contains("`ps_args`"), "{why}");
        refused("/info", Some("x=1"));
        refused("/containers/json", Some("all=1&all=0"));
        // A `;` is part of the value here and is sent encoded, never as a separator.
        assert_eq!(
            pass("/containers/json", Some("all=1;ps_args=auxwwe")).0,
            "all=1%3Bps_args%3Dauxwwe"
        );
    }

    fn event_filter(query: Option<&str>) -> serde_json::Value {
        let (q, _) = pass("/events", query);
        let f = form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "filters")
            .expect("filters are always sent")
            .1;
        serde_json::from_str(&f).unwrap()
    }

    #[test]
    fn events_are_container_life_cycle_events_only() {
        let f = event_filter(Some("since=10&until=20"));
        assert_eq!(f["type"], serde_json::json!(["container"]));
        let names: Vec<&str> = f["event"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(names, EVENT_NAMES);
        for exec in [
            "exec_create: sh -c x",
            "exec_start: sh -c x",
            "exec_die",
            "exec_detach",
        ] {
            assert!(names.iter().all(|n| !exec.starts_with(n)), "{exec}");
        }
        let f = event_filter(Some(
            "filters=%7B%22event%22%3A%7B%22die%22%3Atrue%7D%2C%22label%22%3A%5B%22mtp.fleet%3Dx%22%5D%7D",
        ));
        assert_eq!(f["event"], serde_json::json!(["die"]));
        assert_eq!(f["label"], serde_json::json!(["mtp.fleet=x"]));
        for hostile in [
            r#"{"event":["exec_create"]}"#,
            r#"{"event":{"exec_start":true}}"#,
            r#"{"event":["health_status","exec_die"]}"#,
            r#"{"type":["container","image"]}"#,
            r#"{"type":["exec"]}"#,
            r#"{"execID":["x"]}"#,
            r#"["type"]"#,
        ] {
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("filters", hostile)
                .finish();
            refused("/events", Some(&q));
        }
    }
}
