//! `scores serve`: the service on a real socket, stopped by Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use scores_http::service::{self, ServiceConfig};
use scores_http::simulator::{self, SimulatorConfig};
use scores_http::{AllowedHosts, ApiJwt, ApiTokens, ConnectionLimits, TlsFiles};
use scores_pipeline::{FeedConfig, JetStreamConfig, JournalOptions, PipelineConfig, StandbyLimits};
use tokio::sync::watch;

use crate::cli::ServeArgs;

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        // The simulated feed stops after the service, which reads it until then.
        let (simulator_stop, simulator_stopped) = watch::channel(false);
        let upstream = match args.upstream {
            _ if args.follow_only => None,
            Some(url) => Some(url),
            // With ids, a restarted service resumes the simulated feed where it left off.
            None => {
                let config = SimulatorConfig {
                    ids: true,
                    rate: args.simulate_rate,
                    count: args.simulate_count,
                    ..SimulatorConfig::default()
                };
                Some(start_simulator(config, simulator_stopped).await?)
            }
        };
        anyhow::ensure!(
            args.log.is_some() || !args.nats.any(),
            "the --nats-* options are for a NATS log: give --log nats://… too"
        );
        let connection = args.log.as_ref().map(|servers| args.nats.resolve(servers)).transpose()?;
        let jetstream = args.log.zip(connection).map(|(servers, (auth, tls))| JetStreamConfig {
            stream: args.stream,
            replicas: args.stream_replicas,
            lease_ttl: args.lease_ttl,
            standby: StandbyLimits {
                max_events: args.standby_events,
                max_age: args.standby_age,
                max_bytes: args.standby_size,
            },
            auth,
            tls,
            ..JetStreamConfig::new(servers.servers)
        });
        let connections = ConnectionLimits {
            header_read_timeout: args.header_read_timeout,
            max_connections: args.max_connections.unwrap_or_else(default_max_connections),
        };
        let pipeline = PipelineConfig {
            journal: JournalOptions { fsync: args.fsync, ..JournalOptions::default() },
            checkpoint_every: args.checkpoint_every,
            feed: FeedConfig { idle_timeout: Some(args.idle_timeout), ..FeedConfig::new("") },
            upstream,
            jetstream,
            ..PipelineConfig::new("", &args.data_dir)
        };
        let api_tokens = match &args.api_tokens {
            Some(path) => Some(Arc::new(ApiTokens::load(path).map_err(anyhow::Error::msg)?)),
            None => None,
        };
        let tls = match args.tls_cert.as_ref().zip(args.tls_key.as_ref()) {
            Some((cert, key)) => {
                Some(Arc::new(TlsFiles::load(cert, key).map_err(anyhow::Error::msg)?))
            }
            None => None,
        };
        let api_jwt = match (&args.api_jwks, &args.api_issuer, &args.api_audience) {
            (Some(jwks), Some(issuer), Some(audience)) => {
                Some(Arc::new(ApiJwt::load(jwks, issuer, audience).map_err(anyhow::Error::msg)?))
            }
            _ => None,
        };
        let reloaded =
            Reloaded { tokens: api_tokens.clone(), jwt: api_jwt.clone(), tls: tls.clone() };
        if reloaded.any() {
            tokio::spawn(reload_on_hangup(reloaded));
        }
        let config = ServiceConfig {
            api_tokens,
            api_jwt,
            allowed_hosts: args.allowed_hosts.map(AllowedHosts::only),
            metrics_listen: args.metrics_listen,
            tls,
            connections,
            max_streams: args.max_streams,
            min_seq_wait: args.min_seq_wait,
            shutdown_delay: args.shutdown_delay,
            pipeline,
        };
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let ran = service::run(config, listener, shutdown_signal()).await;
        let _ = simulator_stop.send(true);
        ran.context("running the service")
    })
}

/// Starts the simulated feed on a free loopback port, until `stop` turns true; returns its URL.
async fn start_simulator(
    config: SimulatorConfig,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("binding the simulated feed")?;
    let address = listener.local_addr().context("binding the simulated feed")?;
    let url = format!("http://{address}/scores");
    tracing::info!(%url, "no --upstream given: using the built-in simulated feed");
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        if let Err(error) = simulator::serve(listener, config, stopped).await {
            tracing::error!(%error, "the simulated feed stopped");
        }
    });
    Ok(url)
}

/// What SIGHUP reads again.
struct Reloaded {
    tokens: Option<Arc<ApiTokens>>,
    jwt: Option<Arc<ApiJwt>>,
    tls: Option<Arc<TlsFiles>>,
}

impl Reloaded {
    fn any(&self) -> bool {
        self.tokens.is_some() || self.jwt.is_some() || self.tls.is_some()
    }
}

/// Reads the API tokens, the JWT keys and the TLS certificate again on each SIGHUP; a file that
/// cannot be read keeps what is held, and says so.
async fn reload_on_hangup(reloaded: Reloaded) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot watch for SIGHUP: tokens, keys and certificates are read once");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        if let Some(tokens) = &reloaded.tokens {
            match tokens.reload() {
                Ok(n) => {
                    tracing::info!(file = %tokens.path().display(), tokens = n, "API tokens read again")
                }
                Err(error) => tracing::error!(%error, "SIGHUP: the API tokens held stay"),
            }
        }
        if let Some(jwt) = &reloaded.jwt {
            match jwt.reload() {
                Ok(n) => {
                    tracing::info!(file = %jwt.path().display(), keys = n, "JWT keys read again")
                }
                Err(error) => tracing::error!(%error, "SIGHUP: the JWT keys held stay"),
            }
        }
        if let Some(tls) = &reloaded.tls {
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(file = %tls.cert_path().display(), "TLS certificate read again")
                }
                Err(error) => tracing::error!(%error, "SIGHUP: the TLS certificate held stays"),
            }
        }
    }
}

/// Descriptors kept for what is not a client connection: the journal's segments, checkpoints,
/// the upstream, streams' readers, connections answered past the cap.
const RESERVED_DESCRIPTORS: u64 = 256;

/// As many connections as descriptors allow, less a reserve, after raising the soft open-file
/// limit to the hard one (the default soft limit, often 1024, is a leftover of `select`).
fn default_max_connections() -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit; assuming 1024");
            1024
        }
    };
    let connections = limit.saturating_sub(RESERVED_DESCRIPTORS).clamp(16, 16_384);
    tracing::debug!(open_files = limit, connections, "connection cap");
    connections as usize
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
