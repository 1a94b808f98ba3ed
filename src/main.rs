//! `blumfeld`: start a broker. With no arguments, a single node on 127.0.0.1:9092 with data in
//! `./blumfeld-data`. `--config FILE` (or the file as the one argument, as
//! `kafka-server-start.sh server.properties` takes it) reads YAML with Kafka's property names or
//! a Kafka `server.properties`; `--override key=value` (repeatable) replaces one key.
//!
//! Every node runs the metadata quorum. A single node (no `controller.quorum.voters`) is the
//! only voter of its own, on its controller listener or a loopback port it binds for it; it
//! elects itself at once and moves the local metadata file of earlier versions into the
//! quorum's log on first start. `BLUMFELD_SINGLE_NODE_QUORUM=0` keeps the local file instead,
//! for a data directory that has not been moved yet (one that has is refused in that mode).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::sync::watch;

use blumfeld::api::Api;
use blumfeld::broker::Broker;
use blumfeld::clock::SystemClock;
use blumfeld::config::BrokerConfig;
use blumfeld::group::GroupCoordinator;
use blumfeld::metrics;
use blumfeld::server::Server;

/// See `blumfeld::alloc`: hostile array lengths must not abort the process.
#[global_allocator]
static ALLOCATOR: blumfeld::alloc::LazyLargeAlloc = blumfeld::alloc::LazyLargeAlloc;

#[derive(Parser, Debug)]
#[command(version, about = "A message broker that speaks the Apache Kafka protocol")]
struct Args {
    /// Configuration file: YAML with Kafka's property names as keys, or a Kafka
    /// `server.properties`.
    #[arg(long, conflicts_with = "file")]
    config: Option<PathBuf>,
    /// The configuration file given as Kafka's `kafka-server-start.sh` takes it.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// Override one configuration key: `--override key=value` (repeatable).
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

fn main() {
    let args = Args::parse();
    init_tracing();
    let config = match BrokerConfig::load(args.config.as_deref().or(args.file.as_deref()), &args.overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("blumfeld: {e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("blumfeld: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(config)) {
        eprintln!("blumfeld: {e:#}");
        std::process::exit(1);
    }
}

/// Logs to stderr through a filter that BROKER_LOGGER changes replace at run time.
fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let directives = std::env::var("RUST_LOG").ok().filter(|d| tracing_subscriber::EnvFilter::try_new(d).is_ok());
    let directives = directives.unwrap_or_else(|| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::new(&directives);
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    blumfeld::logging::levels().install(
        &directives,
        Box::new(move |d| {
            let filter = tracing_subscriber::EnvFilter::try_new(d).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        }),
    );
}

async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    if config.settings().runs_quorum() {
        return run_cluster_node(config, None).await;
    }
    if std::env::var_os("BLUMFELD_SINGLE_NODE_QUORUM").is_none_or(|v| v != "0") {
        return run_single_node_quorum(config).await;
    }
    let started = std::time::Instant::now();
    let addr = config.settings().listener()?;
    let broker = Broker::open(config, Arc::new(SystemClock)).context("opening the data directory")?;
    let api = Arc::new(Api::new(broker.clone()).context("starting the group coordinator")?);
    let server = Server::bind(addr, api.clone()).await.with_context(|| format!("binding {addr}"))?;
    let local = server.local_addr()?;
    broker.set_advertised(local.ip().to_string(), local.port() as i32);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let background = spawn_background(broker.clone(), shutdown_rx.clone());
    let group_ticker = spawn_group_ticker(&api, shutdown_rx.clone());
    tracing::info!(listener = %local, elapsed_ms = started.elapsed().as_millis() as u64, "ready");
    // Test harnesses wait for this line on stdout; they may close the pipe after reading it,
    // so no println! (which panics on a closed stdout).
    say(&format!("blumfeld listening on {}:{}", local.ip(), local.port()));
    let accepting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let metrics_server = start_metrics(&broker, &api.groups, &api.txns, accepting.clone(), shutdown_rx.clone()).await?;
    let serving = tokio::spawn(server.run(shutdown_rx));
    accepting.store(true, std::sync::atomic::Ordering::Release);
    // After the broker's line: harnesses match the first "listening on".
    say(&format!("metrics listening on {}", metrics_server.local_addr()));
    wait_for_signal().await;
    tracing::info!("shutting down");
    accepting.store(false, std::sync::atomic::Ordering::Release);
    let _ = shutdown_tx.send(true);
    let _ = serving.await;
    metrics_server.join().await;
    background.abort();
    group_ticker.abort();
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.shutdown()).await?;
    tracing::info!("clean shutdown complete");
    Ok(())
}

/// A single node as the one voter of its own quorum, on its controller listener if it has
/// one, else on a loopback port of its own (only its broker side calls it there).
async fn run_single_node_quorum(config: BrokerConfig) -> anyhow::Result<()> {
    let settings = config.settings();
    let controller = settings.controller_listener()?.unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener = std::net::TcpListener::bind(controller).with_context(|| format!("binding the controller listener {controller}"))?;
    let bound = listener.local_addr()?;
    let config = config.single_node_quorum(bound).context("deriving the single node's quorum")?;
    run_cluster_node(config, Some(listener)).await
}

/// Ticks the group coordinator (sessions, rebalance deadlines) and the transaction
/// coordinator (timeouts, expiry).
fn spawn_group_ticker(api: &Arc<Api>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let groups = api.groups.clone();
    let txns = api.txns.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(GROUP_TICK);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    groups.tick();
                    txns.tick();
                }
                _ = shutdown.changed() => return,
            }
        }
    })
}

/// A node of the metadata quorum (a node of a multi-node cluster, or a single node as its own
/// quorum's only voter, `controller_socket` being the port it bound for it): with the controller role
/// it serves the quorum on its controller listener; with the broker role it waits until its
/// metadata caught up with the quorum, then registers, serves clients and heartbeats; SIGTERM
/// is a controlled shutdown.
async fn run_cluster_node(config: BrokerConfig, controller_socket: Option<std::net::TcpListener>) -> anyhow::Result<()> {
    use blumfeld::cluster::{self, Cluster};
    let started = std::time::Instant::now();
    let settings = config.settings();
    let (is_broker, is_controller) = (settings.roles.broker, settings.roles.controller);
    let client_addr = if is_broker { Some(settings.listener()?) } else { None };
    let controller_addr = match (&controller_socket, is_controller) {
        (Some(socket), _) => Some(socket.local_addr()?),
        (None, true) => Some(settings.controller_listener()?.context("the controller role needs a listener named in controller.listener.names")?),
        (None, false) => None,
    };
    let clock: Arc<dyn blumfeld::clock::Clock> = Arc::new(SystemClock);
    if settings.single_node_quorum {
        // A data directory of the single node before it ran a quorum: its metadata file
        // becomes the quorum's log, once.
        let log_config = metadata_log_config(&settings.quorum);
        let dir = settings.data_dir.clone();
        let node = settings.node_id;
        let c = clock.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            blumfeld::metadata::migrate::single_node_log(&dir, node, log_config, c).map_err(anyhow::Error::from)
        })
        .await?
        .context("moving the single-node metadata into the quorum's log")?;
    }
    let broker = Broker::open(config, clock).context("opening the data directory")?;
    // Taken at once: only this start may count the last stop as clean (KIP-966).
    let previous_epoch = cluster::clean_shutdown::take(&broker.config.settings().data_dir);
    let api = Arc::new(Api::unloaded(broker.clone()));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let client_server = match client_addr {
        Some(addr) => {
            let server = Server::bind(addr, api.clone()).await.with_context(|| format!("binding {addr}"))?;
            let local = server.local_addr()?;
            broker.set_advertised(local.ip().to_string(), local.port() as i32);
            Some(server)
        }
        None => None,
    };
    let controller_serving = match controller_addr {
        Some(addr) => {
            let server = match controller_socket {
                Some(socket) => Server::from_std(socket, api.clone()),
                None => Server::bind(addr, api.clone()).await,
            };
            let server = server.with_context(|| format!("binding {addr}"))?;
            let local = server.local_addr()?;
            if !is_broker {
                // A controller-only node's readiness line (harnesses match "listening on").
                say(&format!("blumfeld controller listening on {}:{}", local.ip(), local.port()));
            }
            Some(tokio::spawn(server.run(shutdown_rx.clone())))
        }
        None => None,
    };
    let raft = start_quorum(&broker, &api)?;
    let cluster = Arc::new(Cluster::new(&broker.config, raft.clone()));
    broker.set_cluster(cluster.clone());
    broker.metadata_store().attach_quorum(raft.clone(), broker.config.settings().request_timeout);
    let cluster_id_task = spawn_cluster_id_follower(&broker, raft.clone());
    let active = tokio::spawn(cluster::active::run(broker.clone(), cluster.clone()));
    let background = spawn_background(broker.clone(), shutdown_rx.clone());
    let accepting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let metrics_server = start_metrics(&broker, &api.groups, &api.txns, accepting.clone(), shutdown_rx.clone()).await?;
    let mut lifecycle = None;
    let mut replication: Option<tokio::task::JoinHandle<()>> = None;
    let mut serving = None;
    let mut group_ticker = None;
    if let Some(server) = client_server {
        wait_for_metadata(&broker, &raft).await;
        let b = broker.clone();
        tokio::task::spawn_blocking(move || b.set_aside_stray_dirs()).await?;
        let a = api.clone();
        tokio::task::spawn_blocking(move || a.start_coordinators()).await?.context("loading the coordinators")?;
        group_ticker = Some(spawn_group_ticker(&api, shutdown_rx.clone()));
        lifecycle = Some(tokio::spawn(cluster::lifecycle::run(broker.clone(), cluster.clone(), previous_epoch.map(|e| e.0))));
        replication = Some(tokio::spawn(cluster::replica::run(broker.clone(), cluster.clone())));
        let local = server.local_addr()?;
        serving = Some(tokio::spawn(server.run(shutdown_rx.clone())));
        cluster.wait_unfenced().await;
        tracing::info!(listener = %local, elapsed_ms = started.elapsed().as_millis() as u64, "ready");
        say(&format!("blumfeld listening on {}:{}", local.ip(), local.port()));
    }
    accepting.store(true, std::sync::atomic::Ordering::Release);
    say(&format!("metrics listening on {}", metrics_server.local_addr()));
    wait_for_signal().await;
    tracing::info!("shutting down");
    if is_broker {
        // At most the session timeout: after it the controller fences this broker anyway.
        let limit = Duration::from_millis(cluster.session_timeout_ms.max(1) as u64);
        cluster::lifecycle::controlled_shutdown(&broker, &cluster, limit).await;
    }
    // Aborted and awaited: the replica fetchers hold their partitions until they are dropped.
    if let Some(l) = lifecycle {
        l.abort();
        let _ = l.await;
    }
    if let Some(r) = replication {
        r.abort();
        let _ = r.await;
    }
    accepting.store(false, std::sync::atomic::Ordering::Release);
    // A leader resigns (EndQuorumEpoch) so the other voters elect without waiting.
    raft.stop().await;
    active.abort();
    cluster_id_task.abort();
    let _ = shutdown_tx.send(true);
    if let Some(s) = serving {
        let _ = s.await;
    }
    if let Some(cs) = controller_serving {
        let _ = cs.await;
    }
    metrics_server.join().await;
    background.abort();
    if let Some(g) = group_ticker {
        g.abort();
    }
    let b = broker.clone();
    let closed = tokio::task::spawn_blocking(move || b.shutdown()).await?;
    let epoch = cluster.broker_epoch();
    if is_broker && closed && epoch >= 0 {
        let dir = &broker.config.settings().data_dir;
        match cluster::clean_shutdown::write(dir, blumfeld::types::BrokerEpoch(epoch)) {
            Ok(()) => tracing::info!(epoch, "clean-shutdown file written: the next start registers as a clean restart"),
            Err(e) => tracing::warn!(error = %e, "cannot write the clean-shutdown file: the next start registers as after a crash"),
        }
    }
    tracing::info!("clean shutdown complete");
    Ok(())
}

/// Waits until this node's image holds everything the quorum had committed when it learnt of
/// it, and the cluster's first records (its id): a broker serves clients only from a current
/// image, as Kafka's brokers wait to catch up before they unfence.
async fn wait_for_metadata(broker: &Arc<Broker>, raft: &blumfeld::raft::driver::RaftHandle) {
    let mut status = raft.watch();
    let mut applied = broker.metadata_store().watch_applied();
    let started = std::time::Instant::now();
    let mut warned = false;
    loop {
        let hw = status.borrow_and_update().high_watermark.0;
        let at = *applied.borrow_and_update();
        if hw > 0 && at >= hw && !broker.image().cluster_id.is_empty() {
            tracing::info!(offset = at, elapsed_ms = started.elapsed().as_millis() as u64, "metadata caught up");
            return;
        }
        if !warned && started.elapsed() > Duration::from_secs(10) {
            warned = true;
            tracing::warn!(applied = at, high_watermark = hw, "still waiting for the metadata quorum");
        }
        tokio::select! {
            _ = status.changed() => {}
            _ = applied.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Quorum requests carry the cluster id once the metadata log has one.
fn spawn_cluster_id_follower(broker: &Arc<Broker>, raft: blumfeld::raft::driver::RaftHandle) -> tokio::task::JoinHandle<()> {
    let mut applied = broker.metadata_store().watch_applied();
    let broker = broker.clone();
    tokio::spawn(async move {
        let mut known = String::new();
        loop {
            let id = broker.image().cluster_id.clone();
            if id != known && !id.is_empty() {
                raft.set_cluster_id(Some(id.clone()));
                known = id;
            }
            if applied.changed().await.is_err() {
                return;
            }
        }
    })
}

/// Starts the metadata quorum: the Raft core over `__cluster_metadata-0` and `quorum-state`
/// in the data directory, reachable through the KRaft APIs of this node's listeners, handing
/// what it commits to the metadata store. A node that is not one of
/// `controller.quorum.voters` follows the log as an observer.
fn start_quorum(broker: &Arc<Broker>, api: &Arc<Api>) -> anyhow::Result<blumfeld::raft::driver::RaftHandle> {
    use blumfeld::raft::{FileRaftLog, QuorumStateFile, RaftConfig, driver, file_log};
    let settings = broker.config.settings();
    let quorum = &settings.quorum;
    let voters = quorum.voters.clone();
    let mut rc = RaftConfig::new(settings.node_id, voters.iter().map(|(id, _)| *id).collect());
    rc.election_timeout_ms = quorum.election_timeout_ms;
    rc.fetch_timeout_ms = quorum.fetch_timeout_ms;
    rc.election_backoff_max_ms = quorum.election_backoff_max_ms;
    rc.request_timeout_ms = quorum.request_timeout_ms;
    rc.retry_backoff_ms = quorum.retry_backoff_ms;
    let log_config = metadata_log_config(quorum);
    let log = FileRaftLog::open(broker.data_dir(), log_config, broker.clock.clone()).map_err(anyhow::Error::msg)?;
    let state = QuorumStateFile::new(&broker.data_dir().join(file_log::DIR_NAME));
    let peers = voters.into_iter().collect();
    let sink = broker.metadata_store().applier().context("starting the metadata applier")?;
    let handle = driver::start(rc, log, state, peers, broker.clock.clone(), tokio::runtime::Handle::current(), sink)
        .map_err(anyhow::Error::msg)
        .context("starting the metadata quorum")?;
    api.set_raft(handle.clone());
    Ok(handle)
}

/// The segment log settings of `__cluster_metadata-0`: kept whole (snapshots truncate it).
fn metadata_log_config(quorum: &blumfeld::config::QuorumSettings) -> blumfeld::log::LogConfig {
    blumfeld::log::LogConfig { retention_ms: -1, retention_bytes: -1, segment_bytes: quorum.log_segment_bytes, ..Default::default() }
}

/// How often group sessions and rebalance deadlines are checked.
const GROUP_TICK: Duration = Duration::from_millis(100);

/// Longest period of a background task (a year); longer settings mean "practically never".
const INTERVAL_MS_MAX: i64 = 365 * 24 * 3_600_000;

/// Retention, time-based flushing and the high-watermark checkpoint, on the intervals Kafka's configs name. As in Kafka,
/// `flush.ms` is checked on appends and, only if `log.flush.scheduler.interval.ms` is set, by a
/// periodic flusher.
fn spawn_background(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let log = broker.config.settings().log.clone();
        let initial_delay = Duration::from_millis(log.initial_task_delay_ms.clamp(0, INTERVAL_MS_MAX) as u64);
        let every = |ms: i64| {
            // Clamped: an "infinite" Kafka interval must not overflow the timer's arithmetic.
            let ms = ms.clamp(1, INTERVAL_MS_MAX);
            let period = Duration::from_millis(ms as u64);
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + initial_delay, period);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        };
        let mut retention = every(log.retention_check_interval_ms);
        let mut cleaner = every(log.cleaner_backoff_ms);
        let flush_enabled = log.flush_scheduler_interval_ms < i64::MAX;
        let mut flush = every(log.flush_scheduler_interval_ms);
        let mut hw_checkpoint = every(broker.config.settings().replica.hw_checkpoint_interval_ms);
        loop {
            tokio::select! {
                _ = hw_checkpoint.tick() => {
                    let b = broker.clone();
                    let _ = tokio::task::spawn_blocking(move || b.checkpoint_high_watermarks()).await;
                }
                _ = retention.tick() => {
                    let b = broker.clone();
                    let _ = tokio::task::spawn_blocking(move || b.enforce_retention()).await;
                }
                _ = cleaner.tick() => {
                    let b = broker.clone();
                    let _ = tokio::task::spawn_blocking(move || b.clean_logs()).await;
                }
                _ = flush.tick(), if flush_enabled => {
                    let b = broker.clone();
                    let _ = tokio::task::spawn_blocking(move || b.flush_due()).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    })
}

/// The metadata gauges: on a single node the local log; in a cluster the quorum as this node
/// sees it.
fn metadata_snapshot(b: &Broker, applied: i64) -> metrics::MetadataSnapshot {
    let image = b.image();
    let registered_brokers = image.brokers.len() as i64;
    let fenced_brokers = image.brokers.values().filter(|r| r.fenced).count() as i64;
    let Some(cluster) = b.cluster() else {
        return metrics::MetadataSnapshot {
            active_controller: true,
            log_end_offset: applied,
            last_applied_offset: applied,
            leader_epoch: 0,
            quorum_leader: i64::from(b.node_id),
            high_watermark: applied,
            registered_brokers,
            fenced_brokers,
            ..Default::default()
        };
    };
    let status = cluster.raft.status();
    let replica_lag = cluster
        .described
        .lock()
        .ok()
        .and_then(|d| d.clone())
        .map(|d| {
            let end = d.voters.iter().find(|r| r.replica_id == d.leader_id).and_then(|r| r.log_end_offset).map_or(0, |o| o.0);
            let lag = |r: &blumfeld::raft::ReplicaDescription| (end - r.log_end_offset.map_or(0, |o| o.0)).max(0);
            let voters = d.voters.iter().filter(|r| r.replica_id != d.leader_id).map(|r| metrics::QuorumReplicaLag { node: r.replica_id.0, role: "voter", lag_records: lag(r) });
            let observers = d.observers.iter().map(|r| metrics::QuorumReplicaLag { node: r.replica_id.0, role: "observer", lag_records: lag(r) });
            voters.chain(observers).collect()
        })
        .unwrap_or_default();
    metrics::MetadataSnapshot {
        active_controller: cluster.is_controller && cluster.is_active_controller(),
        // The records this node could apply: the committed end it knows.
        log_end_offset: status.high_watermark.0.max(applied),
        last_applied_offset: applied,
        leader_epoch: i64::from(status.epoch.0),
        quorum_leader: status.leader.map_or(-1, |l| i64::from(l.0)),
        high_watermark: status.high_watermark.0,
        elections: status.elections,
        registered_brokers,
        fenced_brokers,
        replica_lag,
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Starts the Prometheus endpoint (`metrics.listener`) with a snapshot of the broker taken at
/// each scrape: partitions, metadata, disk, groups and consumer lag.
async fn start_metrics(
    broker: &Arc<Broker>,
    groups: &Arc<GroupCoordinator>,
    txns: &Arc<blumfeld::txn::TransactionCoordinator>,
    accepting: Arc<std::sync::atomic::AtomicBool>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<metrics::MetricsServer> {
    let addr: std::net::SocketAddr = broker
        .config
        .get("metrics.listener")
        .unwrap_or("127.0.0.1:9644")
        .parse()
        .context("metrics.listener is not host:port")?;
    let weak = Arc::downgrade(broker);
    let weak_groups = Arc::downgrade(groups);
    let weak_txns = Arc::downgrade(txns);
    broker.metrics.set_snapshot_source(Box::new(move || {
        let Some(b) = weak.upgrade() else { return metrics::BrokerSnapshot::default() };
        let image = b.image();
        let partitions = b
            .partitions()
            .iter()
            .map(|p| {
                let positions = metrics::LogPositions {
                    log_start_offset: p.log_start_offset().0,
                    last_stable_offset: p.last_stable_offset().0,
                    high_watermark: p.high_watermark().0,
                    log_end_offset: p.log_end_offset().0,
                };
                let mut snapshot = metrics::PartitionSnapshot::single_node(&p.tp.topic, p.tp.partition.0, positions, p.size_bytes());
                // Replication's view: the leader knows the ISR; a follower reports the
                // registration's, and whether the partition has a live leader at all.
                let registration = image.topic(&p.tp.topic).and_then(|t| t.partition(p.tp.partition.0)).filter(|r| !r.is_unknown());
                snapshot.min_isr = u32::try_from(p.config().min_insync_replicas.max(1)).unwrap_or(1);
                match (p.isr(), registration) {
                    (Some((isr, replicas)), Some(_)) => {
                        snapshot.replicas = u32::try_from(replicas.len()).unwrap_or(u32::MAX);
                        snapshot.isr = u32::try_from(isr.len()).unwrap_or(u32::MAX);
                        let now = b.clock.now_ms().max(0) as u64;
                        snapshot.followers = p
                            .follower_lags(now)
                            .into_iter()
                            .map(|f| metrics::FollowerLag { replica: f.replica.0, lag_records: f.records, lag_ms: f.ms })
                            .collect();
                    }
                    (None, Some(r)) => {
                        snapshot.is_leader = false;
                        snapshot.replicas = u32::try_from(r.replicas.len()).unwrap_or(u32::MAX);
                        snapshot.isr = u32::try_from(r.isr.len()).unwrap_or(u32::MAX);
                        snapshot.offline = r.leader.is_none();
                    }
                    _ => {}
                }
                snapshot
            })
            .collect();
        let log_dirs = metrics::log_dir_space(b.data_dir())
            .map(|s| {
                vec![metrics::LogDirSnapshot {
                    dir: b.data_dir().display().to_string(),
                    total_bytes: s.total_bytes,
                    free_bytes: s.free_bytes,
                }]
            })
            .unwrap_or_default();
        let offset = image.offset;
        let (groups_by_state, group_offsets) = match weak_groups.upgrade() {
            Some(g) => (
                g.counts_by_state().into_iter().map(|(s, n)| (s.to_string(), n as u64)).collect(),
                Some(
                    g.all_committed()
                        .into_iter()
                        .map(|(group, topic, partition, committed_offset)| metrics::GroupOffset { group, topic, partition, committed_offset })
                        .collect(),
                ),
            ),
            None => (vec![], None),
        };
        let transactions_by_state = weak_txns
            .upgrade()
            .map(|t| t.counts_by_state().into_iter().map(|(s, n)| (s.to_string(), n as u64)).collect())
            .unwrap_or_default();
        metrics::BrokerSnapshot {
            partitions,
            metadata: metadata_snapshot(&b, offset),
            log_dirs,
            groups_by_state,
            transactions_by_state,
            group_offsets,
            marker_queue_transactions: weak_txns.upgrade().map_or(0, |t| t.markers_pending() as u64),
        }
    }));
    // Single node: metadata is local, so ready means accepting clients.
    let health: metrics::HealthCheck = Arc::new(move || {
        if accepting.load(std::sync::atomic::Ordering::Acquire) {
            metrics::Health::ready()
        } else {
            metrics::Health::not_ready("not accepting client connections")
        }
    });
    metrics::serve(addr, broker.metrics.clone(), health, shutdown)
        .await
        .with_context(|| format!("binding the metrics listener {addr}"))
}
