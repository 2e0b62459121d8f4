//! `scores serve`: the service on a real socket, stopped by Ctrl-C or SIGTERM.

use anyhow::Context as _;
use scores_http::service::{self, ServiceConfig, Upstream};
use scores_http::simulator::SimulatorConfig;
use scores_journal::Options;
use scores_sse::FeedConfig;

use crate::cli::ServeArgs;

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let upstream = match args.upstream {
            Some(url) => Upstream::Url(url),
            // With ids, a restarted service resumes the simulated feed where it left off.
            None => Upstream::Simulated(SimulatorConfig {
                ids: true,
                rate: args.simulate_rate,
                count: args.simulate_count,
                ..SimulatorConfig::default()
            }),
        };
        let config = ServiceConfig {
            journal: Options { fsync: args.fsync, ..Options::default() },
            checkpoint_every: args.checkpoint_every,
            feed: FeedConfig { idle_timeout: Some(args.idle_timeout), ..FeedConfig::new("") },
            ..ServiceConfig::new(upstream, &args.data_dir)
        };
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        service::run(config, listener, shutdown_signal()).await.context("running the service")
    })
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
