//! The command line: subcommands, options, their defaults and environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use scores_http::simulator::Rate;
use scores_journal::FsyncPolicy;

/// Live exam scores you can trust: ingest an SSE feed durably and serve it.
#[derive(Debug, Parser)]
#[command(
    name = "scores",
    version,
    after_help = "Run `scores <command> --help` for examples.\n\n\
        Exit codes: 0 success; 1 bad input under --strict, or a query that failed (such as an \
        unknown student); 2 usage or IO errors."
)]
pub(crate) struct Cli {
    /// How log lines are written on stderr: `text` for people, `json` (one object per line)
    /// for log shippers. `RUST_LOG` filters them (default `info`).
    #[arg(long, global = true, env = "SCORES_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The `--log-format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the service: ingest the feed, keep the journal, serve the API and dashboard.
    #[command(after_help = "Examples:\n  \
        scores serve                                   # the built-in simulated feed on 127.0.0.1:8000\n  \
        scores serve --upstream http://host/scores     # a real feed\n  \
        scores serve --simulate-count 40 --simulate-rate max   # a fixed board of 40 events\n  \
        scores serve --data-dir /var/lib/scores --fsync 10ms")]
    Serve(ServeArgs),
    /// Serve a simulated upstream feed, like the original's, for testing.
    #[command(after_help = "Examples:\n  \
        scores simulate                                # bursts of 20 events every 5 s on 127.0.0.1:8001/scores\n  \
        scores simulate --rate max --count 1000000 --ids\n  \
        scores simulate --bad-every 10 --drop-every 100  # inject faults")]
    Simulate(SimulateArgs),
    /// Print a live feed's score events as JSON lines; connection news goes to stderr.
    #[command(after_help = "Examples:\n  \
        scores tail http://127.0.0.1:8001/scores                # {\"studentId\":…,\"exam\":…,\"score\":…} per line\n  \
        scores tail --events http://127.0.0.1:8001/scores       # every SSE event as {\"event\",\"data\",\"id\"}\n  \
        scores tail http://127.0.0.1:8000/scores | jq .score    # the service re-broadcasts its accepted events\n\n\
        It reconnects through faults (with Last-Event-ID) and ends when the server answers 204.")]
    Tail(TailArgs),
    /// Append a live feed to a file as SSE text, resuming from the file's last event id.
    #[command(after_help = "Examples:\n  \
        scores record http://127.0.0.1:8001/scores -o feed.sse\n  \
        scores record http://127.0.0.1:8001/scores -o feed.sse   # again: resumes after the last id\n  \
        scores replay feed.sse students                          # answer questions from the file\n\n\
        An event cut short by a crash at the end of the file is removed before appending. Ctrl-C \
        stops cleanly; the file is flushed after every burst and synced at the end.")]
    Record(RecordArgs),
    /// Ask a running `scores serve` whether it answers: exit 0 when the path answers 2xx, 1
    /// otherwise. For container health checks, where no HTTP client is installed.
    #[command(after_help = "Examples:\n  \
        scores probe                          # GET http://127.0.0.1:8000/healthz\n  \
        SCORES_LISTEN=0.0.0.0:8000 scores probe   # the same: an unspecified IP is asked on loopback\n  \
        scores probe --path /readyz           # ready to answer queries?")]
    Probe(ProbeArgs),
    /// Fold recorded logs offline and print what the HTTP API would answer for the same events.
    #[command(after_help = "Queries (after the files; none prints a summary):\n  \
        students          like GET /students        (--limit, --after page it)\n  \
        student ID        like GET /students/ID\n  \
        exams             like GET /exams           (--limit, --after page it)\n  \
        exam N            like GET /exams/N\n\n\
        Inputs, folded in the order given: SSE text (`curl URL > file`, `scores record` files), \
        journal segment files (*.seg), a journal directory or a `scores serve` data directory, \
        and `-` for SSE text on standard input.\n\n\
        Examples:\n  \
        scores replay feed.sse                               # summary: accepted, rejected by reason, …\n  \
        scores replay feed.sse student Marvin32              # the JSON of GET /students/Marvin32\n  \
        scores replay scores-data exams --limit 10           # from the service's own journal\n  \
        curl -sN http://127.0.0.1:8001/scores | scores replay - exam 11295\n  \
        scores replay --events feed.sse                      # the SSE events, one JSON line each\n\n\
        Output is the API's body byte for byte, then a newline. Bad records are reported on \
        stderr as FILE:LINE and skipped; --strict stops at the first.\n\n\
        Exit codes: 0 success; 1 bad input under --strict, or a failed query (an unknown student \
        or exam, a malformed exam number: the API's JSON error is printed on stdout); 2 usage or \
        IO errors.")]
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// The SSE feed to read (an http:// or https:// URL).
    #[arg(value_parser = parse_feed_url)]
    pub(crate) url: String,
    /// Print every SSE event as `{"event","data","id"}` instead of decoded score events.
    #[arg(long)]
    pub(crate) events: bool,
    /// Resume after this event id (sent as Last-Event-ID on the first connection).
    #[arg(long, value_name = "ID", default_value = "")]
    pub(crate) last_event_id: String,
    /// Take the feed as dead after this long without a byte (e.g. `30s`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) idle_timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct RecordArgs {
    /// The SSE feed to record (an http:// or https:// URL).
    #[arg(value_parser = parse_feed_url)]
    pub(crate) url: String,
    /// The file to append to; created if missing.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: PathBuf,
    /// Take the feed as dead after this long without a byte (e.g. `30s`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) idle_timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Input files or directories, then optionally a query.
    #[arg(required = true, value_name = "FILE… [QUERY]")]
    pub(crate) args: Vec<String>,
    /// Print the SSE events as JSON lines (`{"event","data","id"}`) instead of folding them.
    #[arg(long)]
    pub(crate) events: bool,
    /// Stop at the first bad record with exit code 1.
    #[arg(long)]
    pub(crate) strict: bool,
    /// For `students` and `exams`: at most this many items (the API's `?limit=`).
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub(crate) limit: Option<usize>,
    /// For `students` and `exams`: start after this cursor (the API's `?after=`).
    #[arg(long, value_name = "CURSOR")]
    pub(crate) after: Option<String>,
    /// For a `nats://HOST:PORT[,…]` input: the JetStream stream to read.
    #[arg(long, default_value = "scores", value_parser = parse_stream_name)]
    pub(crate) stream: String,
}

/// `scores probe`'s options.
#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// The service's `--listen` address; an unspecified IP (`0.0.0.0`, `::`) is asked on
    /// loopback.
    #[arg(long, env = "SCORES_LISTEN", default_value = "127.0.0.1:8000", value_parser = parse_listen)]
    pub(crate) listen: SocketAddr,
    /// The path to ask.
    #[arg(long, default_value = "/healthz")]
    pub(crate) path: String,
    /// How long to wait for the answer.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The upstream SSE feed (an http:// or https:// URL); without it, a built-in simulated
    /// feed is started in-process.
    #[arg(long, env = "SCORES_UPSTREAM", value_parser = parse_feed_url)]
    pub(crate) upstream: Option<String>,
    /// Address to serve HTTP on: `IP:PORT` or `HOST:PORT`.
    #[arg(long, env = "SCORES_LISTEN", default_value = "127.0.0.1:8000", value_parser = parse_listen)]
    pub(crate) listen: SocketAddr,
    /// Where the journal and checkpoints live (with `--log nats://…`, this replica's
    /// checkpoint only).
    #[arg(long, env = "SCORES_DATA_DIR", default_value = "scores-data")]
    pub(crate) data_dir: PathBuf,
    /// The log: `nats://HOST:PORT[,HOST:PORT…]` for a NATS JetStream stream shared by replicas;
    /// without it, the file journal in `--data-dir`.
    #[arg(long, env = "SCORES_LOG", value_name = "nats://HOST:PORT[,…]", value_parser = parse_log)]
    pub(crate) log: Option<NatsServers>,
    /// With `--log`: the stream's name (its lease bucket is `NAME-lease`).
    #[arg(long, env = "SCORES_STREAM", default_value = "scores", requires = "log", value_parser = parse_stream_name)]
    pub(crate) stream: String,
    /// With `--log`: the stream's replication factor, used when it is created.
    #[arg(long, env = "SCORES_STREAM_REPLICAS", default_value_t = 1, requires = "log")]
    pub(crate) stream_replicas: usize,
    /// With `--log`: how long the ingester's lease lasts unless renewed; another replica takes
    /// over within about this long after the ingester is lost.
    #[arg(long, env = "SCORES_LEASE_TTL", default_value = "3s", value_parser = parse_duration, requires = "log")]
    pub(crate) lease_ttl: Duration,
    /// With `--log` and an upstream: the most events this replica keeps from its own upstream
    /// connection while another replica ingests, to take over where the stream ends.
    #[arg(long, env = "SCORES_STANDBY_EVENTS", default_value_t = 60_000, requires = "log")]
    pub(crate) standby_events: usize,
    /// With `--log` and an upstream: how long such events are kept.
    #[arg(long, env = "SCORES_STANDBY_AGE", default_value = "60s", value_parser = parse_duration, requires = "log")]
    pub(crate) standby_age: Duration,
    /// How long a query with `X-Scores-Min-Seq: N` waits for this replica to fold event N
    /// before it is answered 503 `not_caught_up`.
    #[arg(long, env = "SCORES_MIN_SEQ_WAIT", default_value = "1s", value_parser = parse_duration)]
    pub(crate) min_seq_wait: Duration,
    /// On SIGTERM or Ctrl-C, answer `/readyz` with 503 `draining` for this long, serving
    /// everything else, before the listener closes: time for a load balancer to stop sending
    /// requests here (e.g. `5s`).
    #[arg(long, env = "SCORES_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub(crate) shutdown_delay: Duration,
    /// With `--log`: only follow the stream; never compete to ingest.
    #[arg(long, requires = "log", conflicts_with_all = ["upstream", "simulate_rate", "simulate_count"])]
    pub(crate) follow_only: bool,
    /// When journal appends reach the disk: `always` (every batch), `never`, or an interval
    /// such as `10ms` or `1s`.
    #[arg(long, env = "SCORES_FSYNC", default_value = "always", value_parser = parse_fsync)]
    pub(crate) fsync: FsyncPolicy,
    /// Write a projection checkpoint after this many new events (or, once the board holds more
    /// results than that, after as many new events as it holds results).
    #[arg(long, env = "SCORES_CHECKPOINT_EVERY", default_value_t = 1_000_000)]
    pub(crate) checkpoint_every: u64,
    /// Take the upstream as dead after this long without a byte (e.g. `30s`).
    #[arg(long, env = "SCORES_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub(crate) idle_timeout: Duration,
    /// The most HTTP connections served at once; past it, new connections get `/healthz` and
    /// `/readyz` only. Default: the open-file limit (raised to its maximum at start) less a
    /// reserve, at most 16384.
    #[arg(long, env = "SCORES_MAX_CONNECTIONS", value_name = "N")]
    pub(crate) max_connections: Option<usize>,
    /// How long a connection has to send a request's headers, from when it opens or its last
    /// response was sent (idle kept-alive connections are closed then).
    #[arg(long, env = "SCORES_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub(crate) header_read_timeout: Duration,
    /// The most `GET /scores` streams open at once; past it, 503 `too_many_streams`.
    #[arg(long, env = "SCORES_MAX_STREAMS", default_value_t = scores_http::service::DEFAULT_MAX_STREAMS)]
    pub(crate) max_streams: usize,
    /// Without `--upstream`: the simulated feed's events per second, or `max`.
    #[arg(long, default_value = "4", value_parser = parse_rate, conflicts_with = "upstream")]
    pub(crate) simulate_rate: Rate,
    /// Without `--upstream`: end the simulated feed after this many events (the service goes
    /// on serving them, and after a restart asks for more and gets none).
    #[arg(long, value_name = "N", conflicts_with = "upstream")]
    pub(crate) simulate_count: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// Address to serve the feed on (at path /scores): `IP:PORT` or `HOST:PORT`.
    #[arg(long, default_value = "127.0.0.1:8001", value_parser = parse_listen)]
    pub(crate) listen: SocketAddr,
    /// Events per second, or `max` for as fast as the client reads.
    #[arg(long, default_value = "4", value_parser = parse_rate)]
    pub(crate) rate: Rate,
    /// Events per burst; a burst shares one exam.
    #[arg(long, default_value_t = 20)]
    pub(crate) burst: u64,
    /// Distinct students.
    #[arg(long, default_value_t = 200)]
    pub(crate) students: u64,
    /// Distinct exams.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) exams: u64,
    /// Same seed, same events.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// End each stream after this many events.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Send `id:` lines and resume from Last-Event-ID.
    #[arg(long)]
    pub(crate) ids: bool,
    /// Make every n-th event malformed JSON.
    #[arg(long, value_name = "N")]
    pub(crate) bad_every: Option<u64>,
    /// Close the connection after every n events (not with `--broadcast`).
    #[arg(long, value_name = "N", conflicts_with = "broadcast")]
    pub(crate) drop_every: Option<u64>,
    /// One sequence sent as time goes, every connection getting what is sent from when it
    /// connects (a live upstream without resumption); `--ids` then numbers the events but
    /// `Last-Event-ID` is not read.
    #[arg(long)]
    pub(crate) broadcast: bool,
}

fn parse_feed_url(text: &str) -> Result<String, String> {
    scores_sse::check_url(text).map(|()| text.to_owned()).map_err(|error| error.to_string())
}

/// `IP:PORT`, or `HOST:PORT` resolved now (`localhost:8000`): the first address it names.
pub(crate) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    let mut addresses = text
        .to_socket_addrs()
        .map_err(|error| format!("expected IP:PORT or HOST:PORT, got {text:?} ({error})"))?;
    addresses.next().ok_or_else(|| format!("{text:?} resolves to no address"))
}

/// The NATS servers of `--log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NatsServers(pub(crate) Vec<String>);

pub(crate) fn parse_log(text: &str) -> Result<NatsServers, String> {
    let expected = || format!("expected nats://HOST:PORT[,HOST:PORT…], got {text:?}");
    let rest = text.strip_prefix("nats://").ok_or_else(expected)?;
    let servers = rest
        .split(',')
        .map(|server| {
            let server = server.trim().trim_start_matches("nats://");
            match server.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(format!("nats://{server}"))
                }
                _ => Err(expected()),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NatsServers(servers))
}

/// A JetStream stream name: letters, digits, `-` and `_`.
fn parse_stream_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 200
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("a stream name is letters, digits, `-` and `_`, got {text:?}"))
    }
}

/// A page's `limit`, as the API reads `?limit=`.
fn parse_limit(text: &str) -> Result<usize, String> {
    match scores_core::wire::parse_limit(Some(text)) {
        Ok(limit) => Ok(limit.unwrap_or(usize::MAX)),
        Err(error) => Err(error.to_string()),
    }
}

fn parse_fsync(text: &str) -> Result<FsyncPolicy, String> {
    match text {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        interval => parse_duration(interval).map(FsyncPolicy::Interval).map_err(|_| {
            format!("expected `always`, `never` or an interval such as `10ms`, got {text:?}")
        }),
    }
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("expected a duration such as `10ms` or `30s`, got {text:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" | "" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!("unknown unit {unit:?} in {text:?}; use ms, s or m")),
    }
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    if text == "max" {
        return Ok(Rate::Max);
    }
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(Rate::PerSecond(rate)),
        _ => Err(format!("expected events per second (a positive number) or `max`, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_policies_parse() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
        assert_eq!(parse_fsync("always"), Ok(FsyncPolicy::Always));
        assert_eq!(parse_fsync("50ms"), Ok(FsyncPolicy::Interval(Duration::from_millis(50))));
        assert!(parse_fsync("sometimes").is_err());
        assert_eq!(parse_rate("max"), Ok(Rate::Max));
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn listen_addresses_and_feed_urls_parse() {
        assert_eq!(parse_listen("127.0.0.1:8013"), Ok(SocketAddr::from(([127, 0, 0, 1], 8013))));
        let localhost = parse_listen("localhost:8013").unwrap();
        assert!(localhost.ip().is_loopback() && localhost.port() == 8013, "{localhost}");
        assert!(parse_listen("localhost").is_err());
        assert_eq!(
            parse_feed_url("http://127.0.0.1:8001/scores").as_deref(),
            Ok("http://127.0.0.1:8001/scores")
        );
        for bad in ["not-a-url", "ftp://host/scores", "http://", "file:///tmp/feed.sse"] {
            assert!(parse_feed_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
