//! `millrace`: the broker binary. `millrace serve` with no arguments runs the embedded
//! single-node default: node 1 on 127.0.0.1:9092 with data in ./millrace-data.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use millrace::broker;
use millrace::config::BrokerConfig;

#[derive(Parser)]
#[command(
    name = "millrace",
    version,
    about = "A Kafka-wire-compatible message broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (defaults: node.id=1, listeners=PLAINTEXT://127.0.0.1:9092,
    /// log.dirs=./millrace-data, auto.create.topics.enable=true).
    Serve {
        /// TOML file with Kafka config names (`"log.dirs" = "/var/lib/millrace"`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Set one config, Kafka style: `--override num.partitions=3`. Wins over the file
        /// and MILLRACE_* environment variables.
        #[arg(long = "override", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
}

/// Exit status after a storage error took the log directory offline (fail-stop), told
/// apart from start-up and config failures (1 and 2).
const EXIT_LOG_DIR_OFFLINE: u8 = 3;

/// openraft logs every failed RPC to a down peer at ERROR: each heartbeat's
/// (`RPCError err=..`) and each read-index confirmation's (`timeout while confirming
/// leadership .. target= error=`), about ten lines a second per dead controller. Not an
/// error of this node: the controller logs the peer's fencing once, and DescribeQuorum
/// shows its lag.
fn is_openraft_peer_error(meta: &tracing::Metadata<'_>) -> bool {
    let fields = meta.fields();
    meta.target().starts_with("openraft")
        && *meta.level() == tracing::Level::ERROR
        && (fields.field("err").is_some()
            || (fields.field("target").is_some() && fields.field("error").is_some()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Serve { config, overrides } = cli.command;
    // openraft narrates elections, start-up and every peer hiccup at info and warn: only
    // its errors unless asked.
    let directives = match std::env::var("RUST_LOG") {
        Ok(spec) if spec.contains("openraft") => spec,
        Ok(spec) => format!("{spec},openraft=error"),
        Err(_) => "info,openraft=error".to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error"));
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        use tracing_subscriber::Layer as _;
        let output = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_filter(filter)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                !is_openraft_peer_error(meta)
            }));
        tracing_subscriber::registry().with(output).init();
    }

    // Test builds only: fault injection sites configured by FAILPOINTS.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();

    let config = match BrokerConfig::load(config.as_deref(), std::env::vars(), &overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("millrace: {error}");
            return ExitCode::from(2);
        }
    };
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("millrace: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(signal_shutdown(shutdown.clone()));
        match broker::serve(config, shutdown, None).await {
            Ok(()) => ExitCode::SUCCESS,
            // Logged (once, at ERROR) when the directory went offline.
            Err(error @ broker::BrokerError::LogDirOffline { .. }) => {
                tracing::info!(%error, "millrace stopped after a storage error");
                halt(EXIT_LOG_DIR_OFFLINE)
            }
            Err(error) => {
                tracing::error!(%error, "broker failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// Every connection and segment file is a descriptor: take the whole hard limit, and say
/// what it is (the server derives its connection bound from it).
fn raise_open_file_limit() {
    match millrace::server::fd_limit::raise_nofile_limit() {
        Ok(raised) => {
            let (before, after) = (raised.before, raised.after);
            if let Some(error) = raised.error {
                tracing::warn!(
                    %error,
                    soft = after.soft,
                    hard = after.hard,
                    "cannot raise RLIMIT_NOFILE to its hard limit; connections are bounded \
                     by the soft limit"
                );
            } else {
                tracing::info!(
                    soft = after.soft,
                    hard = after.hard,
                    was = before.soft,
                    "RLIMIT_NOFILE (open files) soft limit is {}",
                    after.soft
                );
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read RLIMIT_NOFILE"),
    }
}

/// Ends the process at once, as Kafka's `Exit.halt`: no destructors, no atexit handlers.
/// (`std::process::exit` runs RocksDB's static destructors while its background threads
/// still use them, which can crash the process instead of exiting with `status`.)
fn halt(status: u8) -> ! {
    // SAFETY: _exit(2) takes any int and never returns; skipping destructors is the point.
    unsafe { libc::_exit(status.into()) }
}

/// SIGINT or SIGTERM starts a clean shutdown: stop accepting, finish in-flight requests,
/// flush, close.
async fn signal_shutdown(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
