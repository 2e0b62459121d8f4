//! `scores simulate`: the simulated upstream feed on a socket of its own.

use anyhow::Context as _;
use scores_http::simulator::{self, SimulatorConfig};

use crate::cli::SimulateArgs;

pub(crate) fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let config = SimulatorConfig {
        rate: args.rate,
        burst: args.burst.max(1),
        students: args.students.max(1),
        exams: args.exams.max(1),
        seed: args.seed,
        count: args.count,
        ids: args.ids,
        bad_every: args.bad_every,
        drop_every: args.drop_every,
        broadcast: args.broadcast,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        tracing::info!(
            rate = ?config.rate,
            students = config.students,
            exams = config.exams,
            ids = config.ids,
            broadcast = config.broadcast,
            "simulated feed at http://{}/scores",
            args.listen
        );
        let stopped = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        simulator::serve(listener, config, stopped).await.context("serving the simulated feed")
    })
}
