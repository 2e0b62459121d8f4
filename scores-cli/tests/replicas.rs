//! Three `scores serve` replicas on a three-node JetStream cluster (a stream of three replicas),
//! fed by a simulated upstream with faults (malformed events, dropped connections, regrades),
//! through faults of their own: the ingester killed with SIGKILL five times, the ingester
//! paused past its lease and resumed, a NATS node killed, then every NATS node killed and
//! started again. At the end every replica answers
//! byte for byte as the others do and as a model of the valid events does, and the stream
//! holds each valid event once, in the upstream's order.
//!
//! And the same cluster fed by a broadcast upstream without event ids, as the original feed
//! was: through kills, a pause and a rolling restart of the ingester, a NATS node lost and every
//! node down for 10 s, the stream holds every event the upstream sent after the first one
//! stored, once each, in order.
//!
//! Needs nats-server 2.10 or later (see `scores-pipeline/tests/support/nats.rs`).

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;
#[path = "../../scores-pipeline/tests/support/nats.rs"]
mod nats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Running, free_address, scores, wait_for_port};
use scores_core::wire::{exam_json, exams_json, student_json, students_json};
use scores_core::{Decoded, ExamId, Page, ScoreEvent, Scoreboard, decode};
use serde_json::Value;

/// Events the simulated upstream sends, malformed ones included.
const COUNT: u64 = 40_000;
const BAD_EVERY: u64 = 101;
const LEASE_TTL: Duration = Duration::from_secs(2);

struct Replica {
    address: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    process: Option<Running>,
}

impl Replica {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = scores()
            .env("RUST_LOG", "info,scores_http::access=warn")
            .args(["serve", "--listen", &self.address.to_string()])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.process = Some(Running(child));
        wait_for_port(self.address);
    }

    fn pid(&self) -> String {
        self.process.as_ref().unwrap().0.id().to_string()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.pid()]).status().unwrap();
        assert!(status.success());
    }

    fn kill9(&mut self) {
        self.signal("-KILL");
        let mut process = self.process.take().unwrap();
        let _ = process.0.wait();
    }

    /// Stops the replica with SIGTERM, as an operator would, and waits for it to exit.
    fn stop(&mut self) {
        self.signal("-TERM");
        let mut process = self.process.take().unwrap();
        let _ = process.0.wait();
    }

    fn get(&self, path: &str) -> Option<(u16, Vec<u8>)> {
        let client =
            reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let response = client.get(format!("http://{}{path}", self.address)).send().ok()?;
        let status = response.status().as_u16();
        Some((status, response.bytes().ok()?.to_vec()))
    }

    fn readiness(&self) -> Option<Value> {
        let (status, body) = self.get("/readyz")?;
        (status == 200).then(|| serde_json::from_slice(&body).ok()).flatten()
    }

    fn is_ingester(&self) -> bool {
        self.process.is_some() && self.readiness().is_some_and(|ready| ready["role"] == "ingester")
    }

    fn seq(&self) -> u64 {
        self.readiness().and_then(|ready| ready["seq"].as_u64()).unwrap_or(0)
    }

    fn metric(&self, name: &str) -> Option<u64> {
        let (_, body) = self.get("/metrics")?;
        let text = String::from_utf8(body).ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// The log's last lines, without the warnings for the upstream's malformed events.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> =
            log.lines().filter(|line| !line.contains("rejected an upstream event")).collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Deletes JetStream stream `name` on the NATS server at `url` (a key-value bucket is stream
/// `KV_<bucket>`): the API's request published over NATS's text protocol, its reply not read.
fn delete_stream(url: &str, name: &str) {
    use std::io::{Read as _, Write as _};
    let address = url.trim_start_matches("nats://");
    let mut connection = std::net::TcpStream::connect(address).unwrap();
    let mut info = [0; 4096];
    let _ = connection.read(&mut info).unwrap();
    let request = format!(
        "CONNECT {{\"verbose\":false}}\r\nPUB $JS.API.STREAM.DELETE.{name} 0\r\n\r\nPING\r\n"
    );
    connection.write_all(request.as_bytes()).unwrap();
    // The server answers the PING after it has taken the PUB.
    let mut pong = [0; 64];
    let n = connection.read(&mut pong).unwrap();
    assert!(
        String::from_utf8_lossy(&pong[..n]).contains("PONG"),
        "{}",
        String::from_utf8_lossy(&pong[..n])
    );
}

/// How much longer than its nominal bound a wait may take: the bounds say what the replicas
/// promise (a lease of 2 s taken over within about 10), and a debug build on a loaded 2-core
/// machine is several times slower than that promise is made for. Nothing here measures speed.
const PATIENCE: u32 = 3;

/// Waits until `ready` holds, at most `within` × [`PATIENCE`]; says what `what` is when it
/// does not.
fn wait_until(within: Duration, what: &str, replicas: &[Replica], mut ready: impl FnMut() -> bool) {
    let within = within * PATIENCE;
    let deadline = Instant::now() + within;
    while !ready() {
        if Instant::now() > deadline {
            for (i, replica) in replicas.iter().enumerate() {
                eprintln!("--- replica {i} ({}) ---\n{}", replica.address, replica.log_tail());
            }
            panic!("{what}: not within {within:?}");
        }
        sleep(Duration::from_millis(50));
    }
}

/// The index of the ingesting replica, once there is one.
fn ingester(replicas: &[Replica], within: Duration) -> usize {
    let mut found = None;
    wait_until(within, "a replica takes the lease", replicas, || {
        found = replicas.iter().position(Replica::is_ingester);
        found.is_some()
    });
    found.unwrap()
}

/// The simulator's events, all of them, read as a client would (reconnecting after each
/// dropped connection): the model's input. Returns the SSE data of each event, by id.
fn upstream_events(simulator: SocketAddr) -> Vec<String> {
    let mut events = Vec::new();
    while (events.len() as u64) < COUNT {
        let response = reqwest::blocking::Client::new()
            .get(format!("http://{simulator}/scores"))
            .header("last-event-id", events.len().to_string())
            .send()
            .unwrap();
        let body = response.bytes().unwrap();
        for item in scores_sse::Parser::default().feed(&body) {
            if let Ok(scores_sse::Item::Event(event)) = item {
                assert_eq!(&*event.id, (events.len() + 1).to_string(), "the simulator's ids");
                events.push(event.data);
            }
        }
    }
    events
}

/// What every replica must answer: each endpoint's body, from a board of the valid events.
fn model(events: &[String]) -> (u64, Vec<(String, Vec<u8>)>) {
    let mut board = Scoreboard::new();
    for data in events {
        if let Ok(Decoded::Event(event)) = decode("score", data) {
            board.apply(&event);
        }
    }
    let snapshot = board.snapshot();
    let mut answers = vec![
        ("/students".to_owned(), students_json(&snapshot, Page::ALL)),
        ("/exams".to_owned(), exams_json(&snapshot, Page::ALL)),
    ];
    for id in snapshot.students(Page::ALL).step_by(17) {
        let path = format!("/students/{}", percent(id));
        answers.push((path, student_json(&snapshot, id).unwrap()));
    }
    let exams: Vec<ExamId> = snapshot.exams(Page::ALL).copied().step_by(23).collect();
    for exam in exams {
        answers.push((format!("/exams/{}", exam.0), exam_json(&snapshot, exam).unwrap()));
    }
    (snapshot.seq(), answers)
}

fn percent(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Three replicas on `cluster` (a stream of three copies, a 2-second lease) fed by `upstream`,
/// started, each with a data directory and a log in `dir`.
fn start_replicas(
    cluster: &[nats::Server],
    dir: &std::path::Path,
    upstream: &str,
    extra: &[&str],
) -> Vec<Replica> {
    let urls = nats::urls(cluster);
    let args =
        ["--log", &urls, "--stream-replicas", "3", "--lease-ttl", "2s", "--upstream", upstream];
    let args: Vec<String> = args.iter().chain(extra).map(|arg| (*arg).to_owned()).collect();
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica {
            address: free_address(),
            data_dir: dir.join(format!("replica{i}")),
            log: dir.join(format!("replica{i}.log")),
            args: args.clone(),
            process: None,
        })
        .collect();
    for replica in &mut replicas {
        replica.start();
    }
    replicas
}

/// The events a replica's `GET /scores` sends, up to `n`, as (id, data).
fn stream_of(replica: &Replica, n: u64) -> Vec<(String, String)> {
    let client = reqwest::blocking::Client::builder().timeout(None).build().unwrap();
    let mut response = client.get(format!("http://{}/scores", replica.address)).send().unwrap();
    let mut parser = scores_sse::Parser::default();
    let mut events = Vec::new();
    let mut buffer = [0u8; 65_536];
    while (events.len() as u64) < n {
        let read = std::io::Read::read(&mut response, &mut buffer).unwrap();
        assert!(read > 0, "the stream ended after {} events", events.len());
        for item in parser.feed(&buffer[..read]) {
            if let Ok(scores_sse::Item::Event(event)) = item {
                events.push((event.id.to_string(), event.data));
            }
        }
    }
    events
}

#[test]
fn replicas_on_a_cluster_agree_through_failovers_pauses_a_lost_node_and_a_lost_cluster() {
    let Some(mut cluster) = nats::start_cluster(3) else { return };
    let dir = tempfile::tempdir().unwrap();
    let simulator = free_address();
    let _simulator = Running(
        scores()
            .args(["simulate", "--listen", &simulator.to_string(), "--ids"])
            .args(["--rate", "1500", "--students", "300", "--exams", "400"])
            .args(["--count", &COUNT.to_string(), "--bad-every", &BAD_EVERY.to_string()])
            .args(["--drop-every", "7000"])
            .spawn()
            .unwrap(),
    );
    wait_for_port(simulator);
    // The same events at full speed, for the model.
    let model_feed = free_address();
    let _model_feed = Running(
        scores()
            .args(["simulate", "--listen", &model_feed.to_string(), "--ids"])
            .args(["--rate", "max", "--students", "300", "--exams", "400"])
            .args(["--count", &COUNT.to_string(), "--bad-every", &BAD_EVERY.to_string()])
            .args(["--drop-every", "7000"])
            .spawn()
            .unwrap(),
    );
    wait_for_port(model_feed);
    let upstream = format!("http://{simulator}/scores");
    let mut replicas =
        start_replicas(&cluster, dir.path(), &upstream, &["--checkpoint-every", "5000"]);

    // Kill the ingester five times, at moments drawn from a fixed seed; each time another
    // takes over, and the killed replica comes back as a follower.
    let mut rng = fastrand::Rng::with_seed(7);
    let mut takeovers = Vec::new();
    for _ in 0..5 {
        let killed = ingester(&replicas, Duration::from_secs(20));
        sleep(Duration::from_millis(rng.u64(200..1500)));
        let before = replicas[killed].seq();
        replicas[killed].kill9();
        let killed_at = Instant::now();
        let next = ingester(&replicas, LEASE_TTL + Duration::from_secs(8));
        takeovers.push(killed_at.elapsed());
        assert_ne!(next, killed);
        replicas[killed].start();
        let next_replica = &replicas[next];
        wait_until(Duration::from_secs(10), "ingest resumes", &replicas, || {
            next_replica.seq() > before || next_replica.seq() >= COUNT - COUNT / BAD_EVERY
        });
    }
    eprintln!("takeovers after SIGKILL: {takeovers:?}");

    // Pause the ingester past its lease; another takes over; resumed, the paused one is
    // fenced or finds its lease gone, and steps down.
    let paused = ingester(&replicas, Duration::from_secs(10));
    replicas[paused].signal("-STOP");
    let next = ingester(&replicas, LEASE_TTL + Duration::from_secs(8));
    assert_ne!(next, paused);
    sleep(Duration::from_millis(500));
    replicas[paused].signal("-CONT");
    let resumed = &replicas[paused];
    wait_until(Duration::from_secs(10), "the paused ingester steps down", &replicas, || {
        resumed.readiness().is_some_and(|ready| ready["role"] == "follower")
    });
    assert!(resumed.metric("scores_lease_changes_total").unwrap() >= 2);

    // Lose a NATS node: ingest and reads go on, once the streams that node led (the events',
    // the lease's) have elected new leaders: nats-server waits 4 to 9 s before it calls an
    // election, and the lease lapses meanwhile.
    cluster[2].kill();
    let (reader, before) = (&replicas[0], replicas[0].seq());
    wait_until(Duration::from_secs(30), "ingest goes on without a node", &replicas, || {
        reader.seq() > before || reader.seq() >= COUNT - COUNT / BAD_EVERY
    });
    cluster[2].start();
    cluster[2].wait_healthy(Duration::from_secs(30));

    // Lose every NATS node at once (SIGKILL): the replicas keep serving what they folded and
    // say why they are not moving; started again on their stores, the cluster has everything
    // it acknowledged, and ingest resumes where the stream ends.
    for node in &mut cluster {
        node.kill();
    }
    wait_until(Duration::from_secs(20), "/readyz says NATS is away", &replicas, || {
        replicas.iter().all(|replica| replica.readiness().is_some_and(|r| r["log"].is_string()))
    });
    let held: Vec<u64> = replicas.iter().map(Replica::seq).collect();
    for (i, replica) in replicas.iter().enumerate() {
        let (status, _) = replica.get("/students").unwrap();
        assert_eq!(status, 200, "replica {i} serves its last snapshot while NATS is away");
    }
    for node in &mut cluster {
        node.start();
    }
    for node in &cluster {
        node.wait_healthy(Duration::from_secs(30));
    }
    wait_until(
        Duration::from_secs(30),
        "ingest resumes after the cluster restarts",
        &replicas,
        || {
            replicas.iter().zip(&held).all(|(replica, &held)| {
                replica.readiness().is_some_and(|r| r["log"].is_null())
                    && (replica.seq() > held || replica.seq() >= COUNT - COUNT / BAD_EVERY)
            })
        },
    );

    // The upstream runs out: every replica reaches the end and answers as the model does.
    let events = upstream_events(model_feed);
    let (valid, answers) = model(&events);
    assert_eq!(valid, COUNT - COUNT / BAD_EVERY);
    wait_until(Duration::from_secs(60), "every replica folds every event", &replicas, || {
        replicas.iter().all(|replica| replica.seq() == valid)
    });
    for (path, expected) in &answers {
        for (i, replica) in replicas.iter().enumerate() {
            let (status, body) = replica.get(path).unwrap();
            assert_eq!(status, 200, "replica {i} {path}");
            assert!(body == *expected, "replica {i} {path}: {}", String::from_utf8_lossy(&body));
        }
    }
    // Each valid event once, in the upstream's order, numbered 1, 2, 3 …
    let stored = stream_of(&replicas[1], valid);
    let expected: Vec<&String> = events
        .iter()
        .filter(|data| matches!(decode("score", data), Ok(Decoded::Event(_))))
        .collect();
    for (n, ((id, data), upstream)) in stored.iter().zip(&expected).enumerate() {
        assert_eq!(id, &(n + 1).to_string());
        let (stored, upstream): (Value, Value) =
            (serde_json::from_str(data).unwrap(), serde_json::from_str(upstream).unwrap());
        assert_eq!(stored["studentId"], upstream["studentId"], "event {}", n + 1);
        assert_eq!(stored["exam"], upstream["exam"], "event {}", n + 1);
        assert_eq!(stored["score"].as_f64(), upstream["score"].as_f64(), "event {}", n + 1);
    }
}

#[test]
fn a_replica_rides_out_nats_going_away_at_start_and_while_running() {
    let Some(mut server) = nats::start_one() else { return };
    let dir = tempfile::tempdir().unwrap();
    let feed = |rate: &str| {
        let address = free_address();
        let process = Running(
            scores()
                .args(["simulate", "--listen", &address.to_string(), "--ids", "--rate", rate])
                .args(["--students", "300", "--exams", "400", "--count", &COUNT.to_string()])
                .args(["--bad-every", &BAD_EVERY.to_string()])
                .spawn()
                .unwrap(),
        );
        wait_for_port(address);
        (address, process)
    };
    let (simulator, _simulator) = feed("3000");
    let (model_feed, _model_feed) = feed("max");
    let mut replica = Replica {
        address: free_address(),
        data_dir: dir.path().join("replica"),
        log: dir.path().join("replica.log"),
        args: ["--log", &server.url(), "--lease-ttl", "2s", "--checkpoint-every", "5000"]
            .iter()
            .map(|arg| (*arg).to_owned())
            .chain(["--upstream".to_owned(), format!("http://{simulator}/scores")])
            .collect(),
        process: None,
    };
    // Started while NATS is down, with no checkpoint: it has nothing true to answer from, and
    // says so rather than serve an empty board.
    server.kill();
    replica.start();
    let one = std::slice::from_ref(&replica);
    let not_ready = |path: &str| {
        replica.get(path).is_some_and(|(status, body)| {
            status == 503 && String::from_utf8_lossy(&body).contains("cannot reach NATS")
        })
    };
    wait_until(Duration::from_secs(20), "/readyz says why it is not ready", one, || {
        not_ready("/readyz")
    });
    assert!(not_ready("/students"), "{:?}", replica.get("/students"));

    // NATS goes away while the replica ingests: it keeps serving, says why, and says how stale
    // it is, so that a load balancer asking for fresh replicas leaves it out.
    server.start();
    wait_until(Duration::from_secs(20), "ingest starts", one, || replica.seq() > 2_000);
    assert_eq!(replica.get("/readyz?max_staleness=10s").unwrap().0, 200);
    server.kill();
    wait_until(Duration::from_secs(20), "/readyz says NATS is away", one, || {
        replica.readiness().is_some_and(|ready| ready["log"].as_str().is_some())
    });
    wait_until(Duration::from_secs(20), "/readyz?max_staleness=2s says it is stale", one, || {
        replica.get("/readyz?max_staleness=2s").is_some_and(|(status, body)| {
            status == 503 && String::from_utf8_lossy(&body).contains(r#""code":"stale""#)
        })
    });
    assert!(replica.readiness().unwrap()["stalenessMs"].as_u64().unwrap() > 2_000);
    let held = replica.seq();
    sleep(Duration::from_secs(1));
    assert_eq!(replica.seq(), held, "nothing new is visible while nothing can be stored");
    let (status, _) = replica.get("/students").unwrap();
    assert_eq!(status, 200, "the last snapshot is still served");

    // Restarted while NATS is still away, it serves its checkpoint (written as it stopped).
    replica.stop();
    replica.start();
    let one = std::slice::from_ref(&replica);
    wait_until(Duration::from_secs(10), "a restart serves its checkpoint", one, || {
        replica.readiness().is_some_and(|ready| ready["status"] == "ready")
    });
    assert_eq!(replica.seq(), held, "restored from its checkpoint");

    // NATS returns: ingest resumes, and nothing is lost or doubled.
    server.start();
    let events = upstream_events(model_feed);
    let (valid, answers) = model(&events);

    // The lease's bucket deleted under the ingester: it cannot renew, steps down within the
    // lease's TTL, makes the bucket again and takes the lease anew; ingest goes on.
    wait_until(Duration::from_secs(20), "ingest resumes", one, || {
        replica.is_ingester() && replica.seq() > held + 1_000
    });
    let changes = replica.metric("scores_lease_changes_total").unwrap();
    delete_stream(&server.url(), "KV_scores-lease");
    wait_until(Duration::from_secs(20), "the lease is given up and taken again", one, || {
        replica.metric("scores_lease_changes_total").is_some_and(|now| now >= changes + 2)
            && replica.is_ingester()
    });
    let log = std::fs::read_to_string(&replica.log).unwrap();
    assert!(log.contains("lost the ingester's lease"), "{}", replica.log_tail());
    wait_until(Duration::from_secs(60), "the replica folds every event", one, || {
        replica.seq() == valid
    });
    for (path, expected) in &answers {
        let (status, body) = replica.get(path).unwrap();
        assert_eq!(status, 200, "{path}");
        assert!(body == *expected, "{path}: {}", String::from_utf8_lossy(&body));
    }
    assert!(replica.readiness().unwrap().get("log").is_none(), "/readyz no longer names a problem");

    // `scores replay` folds the stream as it folds a file.
    let output = scores().args(["replay", &server.url(), "students"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let students = &answers.iter().find(|(path, _)| path == "/students").unwrap().1;
    assert_eq!(output.stdout.strip_suffix(b"\n").unwrap(), &students[..]);
}

/// `scores simulate --broadcast` without ids: `rate` events a second for `seconds`, on a free
/// port.
fn broadcast_upstream(rate: u64, seconds: u64) -> (SocketAddr, Running) {
    let upstream = free_address();
    let running = Running(
        scores()
            .args(["simulate", "--listen", &upstream.to_string(), "--broadcast"])
            .args(["--rate", &rate.to_string(), "--students", "300", "--exams", "400"])
            .args(["--count", &(rate * seconds).to_string()])
            .spawn()
            .unwrap(),
    );
    wait_for_port(upstream);
    (upstream, running)
}

/// An event's data as the upstream or `GET /scores` sends it, decoded.
fn decoded(data: &str) -> ScoreEvent {
    match decode("score", data) {
        Ok(Decoded::Event(event)) => event,
        other => panic!("{data}: {other:?}"),
    }
}

/// Every event's data a client of a broadcast upstream hears, from when it connects until the
/// upstream ends.
fn record_broadcast(upstream: SocketAddr) -> Vec<String> {
    let client = reqwest::blocking::Client::builder().timeout(None).build().unwrap();
    let mut response = client.get(format!("http://{upstream}/scores")).send().unwrap();
    let mut parser = scores_sse::Parser::default();
    let (mut events, mut buffer) = (Vec::new(), [0u8; 65_536]);
    loop {
        let read = std::io::Read::read(&mut response, &mut buffer).unwrap_or(0);
        if read == 0 {
            return events;
        }
        for item in parser.feed(&buffer[..read]) {
            if let Ok(scores_sse::Item::Event(event)) = item {
                events.push(event.data);
            }
        }
    }
}

/// Without ids, a new ingester read the upstream from wherever a new connection starts: 2.6 to
/// 3.4 s of the feed were lost at each kill, half a second at each rolling restart.
#[test]
fn a_cluster_fed_without_ids_loses_nothing_through_its_ingesters_faults_and_natss() {
    let Some(mut cluster) = nats::start_cluster(3) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (rate, seconds) = (200, 100);
    let (upstream, _upstream) = broadcast_upstream(rate, seconds);
    // Connected before any replica: it hears every event a replica can.
    let recorder = std::thread::spawn(move || record_broadcast(upstream));
    let mut replicas =
        start_replicas(&cluster, dir.path(), &format!("http://{upstream}/scores"), &[]);

    // Each fault of the ingester, then the next ingester's first new event on a follower.
    let faults = ["kill", "kill", "pause", "stop", "kill"];
    for fault in faults {
        let ingesting = ingester(&replicas, Duration::from_secs(20));
        sleep(Duration::from_millis(1_500));
        let before = replicas[ingesting].seq();
        match fault {
            "kill" => replicas[ingesting].kill9(),
            "pause" => replicas[ingesting].signal("-STOP"),
            _ => replicas[ingesting].stop(),
        }
        let next = ingester(&replicas, LEASE_TTL + Duration::from_secs(8));
        assert_ne!(next, ingesting, "{fault}");
        match fault {
            "pause" => {
                sleep(Duration::from_millis(500));
                replicas[ingesting].signal("-CONT");
            }
            _ => replicas[ingesting].start(),
        }
        let next_replica = &replicas[next];
        wait_until(Duration::from_secs(10), "ingest resumes", &replicas, || {
            next_replica.seq() > before
        });
    }
    // A NATS node lost, then every node down for 10 s: the replicas go on hearing the upstream
    // meanwhile, and whoever ingests next publishes what it sent.
    let ingest_resumes = |replicas: &[Replica], within: u64| {
        let before = replicas[0].seq();
        wait_until(Duration::from_secs(within), "ingest resumes", replicas, || {
            replicas[0].seq() > before
        });
    };
    cluster[0].kill();
    ingest_resumes(&replicas, 30);
    cluster[0].start();
    cluster[0].wait_healthy(Duration::from_secs(30));
    for node in &mut cluster {
        node.kill();
    }
    sleep(Duration::from_secs(10));
    for node in &mut cluster {
        node.start();
    }
    ingest_resumes(&replicas, 40);

    // The upstream ends; every replica settles on one sequence number.
    let heard = recorder.join().unwrap();
    let mut settled = (0, Instant::now());
    for replica in &replicas {
        let dropped = replica.metric("scores_standby_dropped_events_total");
        assert_eq!(dropped, Some(0), "{}", replica.log_tail());
    }
    wait_until(Duration::from_secs(30), "the replicas settle", &replicas, || {
        let seqs: Vec<u64> = replicas.iter().map(Replica::seq).collect();
        if seqs.iter().any(|&seq| seq != seqs[0]) || seqs[0] != settled.0 {
            settled = (seqs[0], Instant::now());
        }
        settled.1.elapsed() > Duration::from_secs(3)
    });
    let stored = stream_of(&replicas[0], settled.0);
    let heard: Vec<_> = heard.iter().map(|data| decoded(data)).collect();
    let stored: Vec<_> = stored.iter().map(|(_, data)| decoded(data)).collect();
    let first = heard.iter().position(|event| *event == stored[0]).unwrap();
    let expected = &heard[first..];
    let lost = expected.len() as i64 - stored.len() as i64;
    let first_difference = stored.iter().zip(expected).position(|(a, b)| a != b);
    assert!(
        first_difference.is_none() && lost == 0,
        "{} events stored of the {} the upstream sent after the first stored; first difference at \
         {first_difference:?}\n{}",
        stored.len(),
        expected.len(),
        replicas.iter().map(Replica::log_tail).collect::<Vec<_>>().join("\n---\n")
    );
    // And every replica answers as a model of those events does.
    let data: Vec<String> =
        expected.iter().map(|event| serde_json::to_string(event).unwrap()).collect();
    let (valid, answers) = model(&data);
    assert_eq!(valid, settled.0);
    for (path, expected) in &answers {
        for (i, replica) in replicas.iter().enumerate() {
            let (status, body) = replica.get(path).unwrap();
            assert_eq!(status, 200, "replica {i} {path}");
            assert!(body == *expected, "replica {i} {path}: {}", String::from_utf8_lossy(&body));
        }
    }
}

/// While NATS is away the ingester keeps reading the upstream into its standby window, spooled
/// in its data directory: restarted meanwhile, it publishes what it heard before the restart
/// once NATS is back. Without ids only what the upstream sent while the process was down is
/// lost (another replica would have heard it).
#[test]
fn an_ingester_restarted_while_nats_is_away_publishes_what_it_spooled_before() {
    let Some(mut server) = nats::start_one() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (rate, seconds) = (200, 40);
    let (upstream, _upstream) = broadcast_upstream(rate, seconds);
    let recorder = std::thread::spawn(move || record_broadcast(upstream));
    let mut replica = Replica {
        address: free_address(),
        data_dir: dir.path().join("replica"),
        log: dir.path().join("replica.log"),
        args: ["--log", &server.url(), "--lease-ttl", "2s"]
            .iter()
            .map(|arg| (*arg).to_owned())
            .chain(["--upstream".to_owned(), format!("http://{upstream}/scores")])
            .collect(),
        process: None,
    };
    replica.start();
    let one = std::slice::from_ref(&replica);
    wait_until(Duration::from_secs(20), "ingest starts", one, || replica.seq() > 200);
    server.kill();
    // Nothing new is stored now; the window (every event since the replica connected) fills
    // behind the log.
    let stored_before = replica.seq();
    let buffered = || replica.metric("scores_standby_buffered_events").unwrap_or(0);
    wait_until(Duration::from_secs(20), "the window holds 3 s of unstored events", one, || {
        buffered() > stored_before + 3 * rate
    });
    let spooled = buffered();
    replica.stop();
    replica.start();
    sleep(Duration::from_secs(2));
    server.start();
    let one = std::slice::from_ref(&replica);
    wait_until(Duration::from_secs(30), "ingest resumes", one, || {
        replica.is_ingester() && replica.seq() > stored_before + 3 * rate
    });

    let heard = recorder.join().unwrap();
    let mut settled = (0, Instant::now());
    wait_until(Duration::from_secs(30), "the replica settles", one, || {
        if replica.seq() != settled.0 {
            settled = (replica.seq(), Instant::now());
        }
        settled.1.elapsed() > Duration::from_secs(3)
    });
    let stored: Vec<String> =
        stream_of(&replica, settled.0).into_iter().map(|(_, data)| data).collect();
    let heard: Vec<_> = heard.iter().map(|data| decoded(data)).collect();
    let stored: Vec<_> = stored.iter().map(|data| decoded(data)).collect();
    // The stream is what the upstream sent after its first event, less one run: what it sent
    // while the replica was down.
    let first = heard.iter().position(|event| *event == stored[0]).unwrap();
    let heard = &heard[first..];
    let gap_at = stored.iter().zip(heard).position(|(a, b)| a != b).unwrap_or(stored.len());
    let gap = heard.len() - stored.len();
    assert_eq!(stored[gap_at..], heard[gap_at + gap..], "one run missing, the rest in order");
    assert!(
        gap_at as u64 >= spooled,
        "what was spooled before the restart ({spooled} events, {stored_before} of them stored \
         then) is published: the stream breaks off at {gap_at}\n{}",
        replica.log_tail()
    );
    assert!(gap < heard.len() / 2, "{gap} of {} missing", heard.len());
}
