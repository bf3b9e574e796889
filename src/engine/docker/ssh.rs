//! `ssh://[user@]host[:port]` endpoints: each connection is the system `ssh` running
//! `docker system dial-stdio` on the remote, its stdin and stdout carrying the HTTP of the
//! Docker API, pooled by hyper like any other connection.
//!
//! bollard's own ssh transport is not used: it hands ssh the URI's authority
//! (`user@host:port`) as the destination, which ssh reads as a host named `host:port`, so any
//! port but 22 failed to connect.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard::{API_DEFAULT_VERSION, BollardRequest, Docker};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Where to ssh to, parsed from `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub key: Option<std::path::PathBuf>,
}

impl Target {
    pub(super) fn parse(url: &str, key: Option<&std::path::Path>) -> Result<Self, String> {
        let rest = url
            .strip_prefix("ssh://")
            .ok_or_else(|| format!("`{url}` is not an ssh:// endpoint"))?
            .trim_end_matches('/');
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            // [::1]:2222
            let (h, tail) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{url}`: unclosed `[`"))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => Some(p.parse().map_err(|_| format!("`{url}`: bad port `{p}`"))?),
                None => None,
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    Some(p.parse().map_err(|_| format!("`{url}`: bad port `{p}`"))?),
                ),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() || host.starts_with('-') {
            return Err(format!("`{url}` names no host"));
        }
        Ok(Target {
            user,
            host,
            port,
            key: key.map(std::path::Path::to_path_buf),
        })
    }

    /// `ssh`'s arguments up to and including the remote command.
    pub(super) fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "ConnectTimeout=15",
            "-o",
            "LogLevel=ERROR",
        ]
        .map(String::from)
        .to_vec();
        if let Some(p) = self.port {
            a.extend(["-p".into(), p.to_string()]);
        }
        if let Some(u) = &self.user {
            a.extend(["-l".into(), u.clone()]);
        }
        if let Some(k) = &self.key {
            a.extend(["-i".into(), k.to_string_lossy().into_owned()]);
        }
        a.extend(
            ["--", &self.host, "docker", "system", "dial-stdio"]
                .iter()
                .map(|s| s.to_string()),
        );
        a
    }
}

/// A client for `target`, requests timing out after `timeout_s`.
pub(super) fn connect(target: Target, timeout_s: u64) -> Result<Docker, bollard::errors::Error> {
    let client = Arc::new(Client::builder(TokioExecutor::new()).build(Connector(Arc::new(target))));
    Docker::connect_with_custom_transport(
        move |req: BollardRequest| {
            let client = Arc::clone(&client);
            async move {
                client
                    .request(req)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some("http://docker"),
        timeout_s,
        API_DEFAULT_VERSION,
    )
}

#[derive(Clone)]
struct Connector(Arc<Target>);

impl tower_service::Service<hyper::Uri> for Connector {
    type Response = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let target = self.0.clone();
        Box::pin(async move {
            let mut child = Command::new("ssh")
                .args(target.args())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                // ssh's own errors (refused, permission denied) reach the operator.
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| io::Error::new(e.kind(), format!("cannot run ssh: {e}")))?;
            let stdin = child.stdin.take().expect("piped");
            let stdout = child.stdout.take().expect("piped");
            Ok(Stream {
                stdin: TokioIo::new(stdin),
                stdout: TokioIo::new(stdout),
                _child: child,
            })
        })
    }
}

/// One `docker system dial-stdio` over ssh; the process ends with the connection.
struct Stream {
    stdin: TokioIo<ChildStdin>,
    stdout: TokioIo<ChildStdout>,
    _child: Child,
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdout).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stdin).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_host_and_port() {
        let t = Target::parse("ssh://deploy@10.0.0.13:2222", None).unwrap();
        assert_eq!(
            (t.user.as_deref(), t.host.as_str(), t.port),
            (Some("deploy"), "10.0.0.13", Some(2222))
        );
        let t = Target::parse("ssh://host", None).unwrap();
        assert_eq!((t.user, t.host.as_str(), t.port), (None, "host", None));
        let t = Target::parse("ssh://root@[::1]:22", None).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", Some(22)));
        assert!(Target::parse("ssh://u@h:port", None).is_err());
        assert!(Target::parse("ssh://-oProxyCommand=x", None).is_err());
    }

    #[test]
    fn the_port_reaches_ssh_as_an_option() {
        let t = Target::parse("ssh://root@127.0.0.1:2299", Some("/k".as_ref())).unwrap();
        let a = t.args().join(" ");
        assert!(
            a.ends_with("-p 2299 -l root -i /k -- 127.0.0.1 docker system dial-stdio"),
            "{a}"
        );
    }
}
