//! `scores probe`: one `GET` to a running service, its answer as the exit code.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use crate::cli::ProbeArgs;
use crate::live::runtime;

pub(crate) fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let url = probe_url(args.listen, &args.path);
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let answer = runtime()?.block_on(async { client.get(&url).send().await });
    // The line is for `docker inspect`'s health log; the exit code is the answer.
    let (line, healthy) = match answer {
        Ok(response) => {
            (format!("GET {url}: {}", response.status()), response.status().is_success())
        }
        Err(error) => (format!("GET {url}: {error}"), false),
    };
    let _ = writeln!(std::io::stdout(), "{line}");
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The URL of `path` on a service listening on `listen`; one listening on every address is
/// asked on loopback.
fn probe_url(listen: SocketAddr, path: &str) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    format!("http://{}/{path}", SocketAddr::new(ip, listen.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_address_is_asked_on_loopback() {
        let url = |listen: &str, path| probe_url(listen.parse().unwrap(), path);
        assert_eq!(url("0.0.0.0:8000", "/healthz"), "http://127.0.0.1:8000/healthz");
        assert_eq!(url("[::]:8000", "readyz"), "http://[::1]:8000/readyz");
        assert_eq!(url("10.1.2.3:5001", "/healthz"), "http://10.1.2.3:5001/healthz");
    }
}
