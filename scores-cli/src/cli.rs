//! The command line: subcommands, options, their defaults and environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use percent_encoding::percent_decode_str;
use scores_http::simulator::Rate;
use scores_journal::FsyncPolicy;
use scores_pipeline::{NatsAuth, NatsTls};

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
    Serve(Box<ServeArgs>),
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
    #[command(flatten)]
    pub(crate) nats: NatsArgs,
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
    /// The log: `nats://HOST:PORT[,HOST:PORT…]` for a NATS JetStream stream shared by replicas
    /// (`tls://` for TLS; `USER:PASSWORD@` or `TOKEN@` before the host for credentials, though
    /// the `--nats-*` files keep them off the command line); without it, the file journal in
    /// `--data-dir`.
    #[arg(long, env = "SCORES_LOG", value_name = "nats://HOST:PORT[,…]", value_parser = parse_log)]
    pub(crate) log: Option<NatsServers>,
    #[command(flatten)]
    pub(crate) nats: NatsArgs,
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
    /// With `--log` and an upstream: the most this replica keeps, spooled in
    /// `--data-dir`/standby, of events no log has yet (while NATS is away, say), past the
    /// limits above: e.g. `64MiB`, `1GB`. Past it the oldest are dropped, counted.
    #[arg(long, env = "SCORES_STANDBY_SIZE", default_value = "64MiB", value_parser = parse_size, requires = "log")]
    pub(crate) standby_size: u64,
    /// How long a query with `X-Scores-Min-Seq: N` waits for this replica to fold event N
    /// before it is answered 503 `not_caught_up`.
    #[arg(long, env = "SCORES_MIN_SEQ_WAIT", default_value = "1s", value_parser = parse_duration)]
    pub(crate) min_seq_wait: Duration,
    /// On SIGTERM or Ctrl-C, answer `/readyz` with 503 `draining` for this long, serving
    /// everything else, before the listener closes: time for a load balancer to stop sending
    /// requests here (e.g. `5s`).
    #[arg(long, env = "SCORES_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub(crate) shutdown_delay: Duration,
    /// Access control: a file of bearer tokens, one a line. Every request but `/healthz`,
    /// `/readyz` and the dashboard's page then needs `Authorization: Bearer TOKEN` (the
    /// dashboard asks for one); without a known token, 401 `unauthorized`. Re-read on SIGHUP.
    #[arg(long, env = "SCORES_API_TOKENS_FILE", value_name = "FILE")]
    pub(crate) api_tokens: Option<PathBuf>,
    /// Single sign-on: a JSON Web Key Set file; a bearer token that is a JWT signed by one of
    /// its keys (RS256, ES256, EdDSA), from `--api-issuer`, for `--api-audience`, within its
    /// `exp` and `nbf`, is taken as an `--api-tokens` token is. Re-read on SIGHUP.
    #[arg(long, env = "SCORES_API_JWKS", value_name = "FILE", requires_all = ["api_issuer", "api_audience"])]
    pub(crate) api_jwks: Option<PathBuf>,
    /// The `iss` a JWT must name (with `--api-jwks`).
    #[arg(long, env = "SCORES_API_ISSUER", requires = "api_jwks")]
    pub(crate) api_issuer: Option<String>,
    /// An `aud` a JWT must name (with `--api-jwks`).
    #[arg(long, env = "SCORES_API_AUDIENCE", requires = "api_jwks")]
    pub(crate) api_audience: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM), with `--tls-key`. Re-read on SIGHUP.
    #[arg(long, env = "SCORES_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "SCORES_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Serve `/metrics` on this address, `IP:PORT`, and not on `--listen`: a listener that can
    /// stay internal, without access control. The dashboard's counters, read from `/metrics`,
    /// are then blank.
    #[arg(long, env = "SCORES_METRICS_LISTEN", value_parser = parse_listen)]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// The names a request's `Host` may carry (comma-separated; `*` for any), against DNS
    /// rebinding. Default: on a loopback `--listen`, `localhost`, `127.0.0.1` and `::1`; else
    /// any.
    #[arg(long, env = "SCORES_ALLOWED_HOSTS", value_name = "NAME[,NAME…]", value_delimiter = ',')]
    pub(crate) allowed_hosts: Option<Vec<String>>,
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

/// The NATS servers of `--log`, and what their URLs carry besides: credentials, and whether
/// they are `tls://`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NatsServers {
    /// `nats://HOST:PORT` or `tls://HOST:PORT`, without credentials: safe to print.
    pub(crate) servers: Vec<String>,
    /// Credentials given in the URLs (`USER:PASSWORD@` or `TOKEN@`).
    pub(crate) auth: NatsAuth,
    /// The URLs are `tls://`.
    pub(crate) tls: bool,
}

/// `nats://[USER:PASSWORD@|TOKEN@]HOST:PORT[,HOST:PORT…]`, or `tls://…`. Later servers may
/// leave out the scheme and credentials; given, they must be the first's.
pub(crate) fn parse_log(text: &str) -> Result<NatsServers, String> {
    let expected = || {
        format!(
            "expected nats://[USER:PASSWORD@|TOKEN@]HOST:PORT[,HOST:PORT…] (or tls://…), got {}",
            redact_userinfo(text)
        )
    };
    let (scheme, _) = text.split_once("://").ok_or_else(expected)?;
    if scheme != "nats" && scheme != "tls" {
        return Err(expected());
    }
    let mut auth = None;
    let mut servers = Vec::new();
    for server in text.split(',') {
        let server = server.trim();
        let server = match server.split_once("://") {
            Some((this, rest)) if this == scheme => rest,
            Some(_) => {
                return Err(format!(
                    "every server of {} must be {scheme}://",
                    redact_userinfo(text)
                ));
            }
            None => server,
        };
        let (userinfo, address) = match server.rsplit_once('@') {
            Some((userinfo, address)) => (Some(userinfo), address),
            None => (None, server),
        };
        if let Some(userinfo) = userinfo {
            let decode = |part: &str| percent_decode_str(part).decode_utf8_lossy().into_owned();
            let this = match userinfo.split_once(':') {
                Some((user, password)) => {
                    NatsAuth::UserPassword { user: decode(user), password: decode(password) }
                }
                None => NatsAuth::Token(decode(userinfo)),
            };
            if auth.as_ref().is_some_and(|first| *first != this) {
                return Err("every server of --log must carry the same credentials".into());
            }
            auth = Some(this);
        }
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                servers.push(format!("{scheme}://{address}"));
            }
            _ => return Err(expected()),
        }
    }
    Ok(NatsServers { servers, auth: auth.unwrap_or_default(), tls: scheme == "tls" })
}

/// `text` with what stands before an `@` in each URL hidden, for error messages.
fn redact_userinfo(text: &str) -> String {
    text.split(',')
        .map(|server| match (server.split_once("://"), server.rsplit_once('@')) {
            (Some((scheme, _)), Some((_, address))) => format!("{scheme}://…@{address}"),
            (None, Some((_, address))) => format!("…@{address}"),
            _ => server.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// How to reach NATS securely, for `serve --log` and `replay nats://…`. Secrets come from
/// files (or the URL, or the environment), never from the command line itself.
#[derive(Debug, Default, Args)]
pub(crate) struct NatsArgs {
    /// NATS: a `.creds` file (a user JWT and its nkey seed), for servers run with operator JWTs.
    #[arg(long, env = "SCORES_NATS_CREDS", value_name = "FILE", conflicts_with_all = ["nats_nkey", "nats_token_file", "nats_user"])]
    pub(crate) nats_creds: Option<PathBuf>,
    /// NATS: a file holding an nkey seed (`SU…`).
    #[arg(long, env = "SCORES_NATS_NKEY", value_name = "FILE", conflicts_with_all = ["nats_token_file", "nats_user"])]
    pub(crate) nats_nkey: Option<PathBuf>,
    /// NATS: a file holding a token.
    #[arg(long, env = "SCORES_NATS_TOKEN_FILE", value_name = "FILE", conflicts_with = "nats_user")]
    pub(crate) nats_token_file: Option<PathBuf>,
    /// NATS: a user, with `--nats-password-file`.
    #[arg(long, env = "SCORES_NATS_USER", requires = "nats_password_file")]
    pub(crate) nats_user: Option<String>,
    /// NATS: a file holding `--nats-user`'s password.
    #[arg(long, env = "SCORES_NATS_PASSWORD_FILE", value_name = "FILE", requires = "nats_user")]
    pub(crate) nats_password_file: Option<PathBuf>,
    /// NATS over TLS: a PEM file of the certificates that may sign the servers' (besides the
    /// system's). Implies TLS.
    #[arg(long, env = "SCORES_NATS_TLS_CA", value_name = "FILE")]
    pub(crate) nats_tls_ca: Option<PathBuf>,
    /// NATS over mutual TLS: this replica's PEM certificate, with `--nats-tls-key`. Implies TLS.
    #[arg(long, env = "SCORES_NATS_TLS_CERT", value_name = "FILE", requires = "nats_tls_key")]
    pub(crate) nats_tls_cert: Option<PathBuf>,
    /// NATS over mutual TLS: the key of `--nats-tls-cert`.
    #[arg(long, env = "SCORES_NATS_TLS_KEY", value_name = "FILE", requires = "nats_tls_cert")]
    pub(crate) nats_tls_key: Option<PathBuf>,
}

impl NatsArgs {
    /// Whether any option is given.
    pub(crate) fn any(&self) -> bool {
        let files = [
            &self.nats_creds,
            &self.nats_nkey,
            &self.nats_token_file,
            &self.nats_password_file,
            &self.nats_tls_ca,
            &self.nats_tls_cert,
            &self.nats_tls_key,
        ];
        self.nats_user.is_some() || files.iter().any(|file| file.is_some())
    }

    /// The credentials and TLS for `servers`, the secret files read: an error names the
    /// option and the file, never a secret.
    pub(crate) fn resolve(&self, servers: &NatsServers) -> anyhow::Result<(NatsAuth, NatsTls)> {
        let read = |option: &str, path: &Path| -> anyhow::Result<String> {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{option}: cannot read {}", path.display()))?;
            let secret = text.trim();
            anyhow::ensure!(!secret.is_empty(), "{option}: {} is empty", path.display());
            Ok(secret.to_owned())
        };
        let auth = if let Some(path) = &self.nats_creds {
            anyhow::ensure!(path.is_file(), "--nats-creds: cannot read {}", path.display());
            NatsAuth::Credentials(path.clone())
        } else if let Some(path) = &self.nats_nkey {
            NatsAuth::NKey(read("--nats-nkey", path)?)
        } else if let Some(path) = &self.nats_token_file {
            NatsAuth::Token(read("--nats-token-file", path)?)
        } else if let (Some(user), Some(path)) = (&self.nats_user, &self.nats_password_file) {
            NatsAuth::UserPassword {
                user: user.clone(),
                password: read("--nats-password-file", path)?,
            }
        } else {
            NatsAuth::None
        };
        let auth = match (&servers.auth, auth) {
            (NatsAuth::None, auth) => auth,
            (from_url, NatsAuth::None) => from_url.clone(),
            _ => anyhow::bail!(
                "NATS credentials are given twice, in the --log URL and in a --nats-* option: give them once"
            ),
        };
        for (option, path) in [
            ("--nats-tls-ca", &self.nats_tls_ca),
            ("--nats-tls-cert", &self.nats_tls_cert),
            ("--nats-tls-key", &self.nats_tls_key),
        ] {
            if let Some(path) = path {
                std::fs::File::open(path)
                    .with_context(|| format!("{option}: cannot read {}", path.display()))?;
            }
        }
        let client = self.nats_tls_cert.clone().zip(self.nats_tls_key.clone());
        let tls = NatsTls {
            required: servers.tls || self.nats_tls_ca.is_some() || client.is_some(),
            ca: self.nats_tls_ca.clone(),
            client,
        };
        Ok((auth, tls))
    }
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

fn parse_size(text: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = text.parse()?;
    if size.as_u64() == 0 {
        return Err("must be more than 0 bytes".into());
    }
    Ok(size.as_u64())
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
    fn nats_urls_carry_servers_tls_and_credentials_never_printed() {
        let plain = parse_log("nats://a:4222,b:4223").unwrap();
        assert_eq!(plain.servers, ["nats://a:4222", "nats://b:4223"]);
        assert_eq!((plain.auth, plain.tls), (NatsAuth::None, false));
        let secured = parse_log("tls://scores:p%40ss@a:4222,tls://scores:p%40ss@b:4222").unwrap();
        assert_eq!(secured.servers, ["tls://a:4222", "tls://b:4222"]);
        let user = NatsAuth::UserPassword { user: "scores".into(), password: "p@ss".into() };
        assert_eq!((secured.auth, secured.tls), (user, true));
        let token = parse_log("nats://s3cret@a:4222,b:4222").unwrap();
        assert_eq!(token.auth, NatsAuth::Token("s3cret".into()));
        assert_eq!(token.servers, ["nats://a:4222", "nats://b:4222"]);
        for bad in ["nats://s3cret@a", "http://s3cret@a:4222", "nats://s3cret@a:4222,tls://b:4222"]
        {
            let error = parse_log(bad).unwrap_err();
            assert!(!error.contains("s3cret"), "{error}");
        }
        let error = parse_log("nats://one@a:4222,nats://s3cret@b:4222").unwrap_err();
        assert!(error.contains("same credentials") && !error.contains("s3cret"), "{error}");
    }

    #[test]
    fn nats_secrets_come_from_files_once() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let servers = parse_log("nats://a:4222").unwrap();
        let args = NatsArgs { nats_token_file: Some(token.clone()), ..NatsArgs::default() };
        let (auth, tls) = args.resolve(&servers).unwrap();
        assert_eq!((auth, tls), (NatsAuth::Token("s3cret".into()), NatsTls::default()));
        let twice = args.resolve(&parse_log("nats://other@a:4222").unwrap()).unwrap_err();
        assert!(twice.to_string().contains("twice"), "{twice}");
        let missing =
            NatsArgs { nats_tls_ca: Some(dir.path().join("ca.pem")), ..NatsArgs::default() };
        let error = missing.resolve(&servers).unwrap_err().to_string();
        assert!(error.contains("--nats-tls-ca") && error.contains("ca.pem"), "{error}");
        std::fs::write(dir.path().join("ca.pem"), "").unwrap();
        let (_, tls) = missing.resolve(&servers).unwrap();
        assert!(tls.required, "a CA implies TLS");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
