//! `atrium pod-runner`: test and demo support for the local control plane, not part of the
//! operator. KWOK nodes never start containers; this watches the pods scheduled on them and,
//! for containers whose image names a known demo program (`demo-backend`), runs that program
//! as a local process bound to the pod's IP and port, the way a kubelet would: with the
//! container's arguments, its environment (literal values and `envFrom`/`configMapKeyRef`
//! ConfigMaps) and its ConfigMap volumes written to a directory per pod (kept up to date, as a
//! kubelet does). It marks the pod `Ready` only while the process answers its readiness path
//! (probed on every pass until it is Ready, then every `periodSeconds`, many pods at once),
//! restarts a process that exits, and stops it a drain period after the pod goes away (a new
//! pod that KWOK gives the same IP meanwhile starts once the old process is gone).
//!
//! Pod IPs must be inside the network namespace this run created (198.18.0.0/16 on `lo`, see
//! `tools/run-local.sh`); the runner refuses any other address.

mod launch;
mod services;
mod status;

use self::launch::{Launch, pod_addr, spawn, start, write_volumes};
use self::status::set_ready;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::watch::resilient;
use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::process::Child;
use tracing::{info, warn};

/// Flags of `atrium pod-runner`.
#[derive(Clone, Debug, Args)]
pub struct PodRunnerArgs {
    /// Where per-pod ConfigMap volumes are written.
    #[arg(
        long,
        default_value = "/tmp/atrium-pods",
        env = "ATRIUM_POD_RUNNER_DIR"
    )]
    pub work_dir: PathBuf,
    /// Seconds a process keeps serving after its pod is gone (like a preStop pause): long
    /// enough for kube-proxy to stop sending new connections there.
    #[arg(long, default_value_t = 5, env = "ATRIUM_POD_RUNNER_DRAIN")]
    pub drain_seconds: u64,
    /// Only pods of this namespace (default: every namespace).
    #[arg(long, env = "ATRIUM_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// The cluster DNS Service's IP (a kubelet's `clusterDNS`): each pod process then sees a
    /// `resolv.conf` naming it, with the pod namespace's search path. Unset: the machine's.
    #[arg(long, env = "ATRIUM_POD_RUNNER_CLUSTER_DNS")]
    pub cluster_dns: Option<IpAddr>,
    /// The cluster's DNS domain (a kubelet's `clusterDomain`).
    #[arg(
        long,
        default_value = "cluster.local",
        env = "ATRIUM_POD_RUNNER_CLUSTER_DOMAIN"
    )]
    pub cluster_domain: String,
}

/// The runner could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// No Kubernetes configuration.
    #[error("pod-runner needs a cluster (KUBECONFIG): {0}")]
    Client(#[source] kube::Error),
}

/// The only range pod processes may bind: the run's own network namespace.
fn is_local_pod_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 198 && v4.octets()[1] == 18,
        IpAddr::V6(_) => false,
    }
}

struct Running {
    child: Child,
    addr: SocketAddr,
    readiness: String,
    /// The readiness probe's `periodSeconds`: how often a Ready pod is probed (one that is
    /// not Ready is probed on every pass, so it turns Ready soon after its process answers).
    probe_period: Duration,
    next_probe: Instant,
    ready: Option<bool>,
    /// When this runner last wrote the pod's readiness: until the watch shows that write (or
    /// [`REASSERT_AFTER`] passes), a pod that still looks otherwise is not written again.
    written_at: Option<Instant>,
    started: Instant,
    restarts: u32,
    /// When the process exited (it restarts after a back-off).
    exited_at: Option<Instant>,
    /// Exits in a row.
    crashes: u32,
    spec: Launch,
}

/// How long a readiness write may take to come back through the watch before it is written
/// again (KWOK's stages may also have overwritten it).
const REASSERT_AFTER: Duration = Duration::from_secs(5);
/// Readiness probes in flight at once.
const PARALLEL_PROBES: usize = 64;
/// Pod status writes in flight at once (each pod's kubelet would write its own).
const PARALLEL_STATUS_WRITES: usize = 16;

/// Runs until the process is stopped.
pub async fn run(args: PodRunnerArgs) -> Result<(), RunnerError> {
    let client = Client::try_default().await.map_err(RunnerError::Client)?;
    let pods_api: Api<Pod> = crate::scope::api(&client, args.namespace.as_deref());
    let cms_api: Api<ConfigMap> = crate::scope::api(&client, args.namespace.as_deref());
    let (pods, pw) = reflector::store::<Pod>();
    let (cms, cw) = reflector::store::<ConfigMap>();
    let (services, sw) = reflector::store::<Service>();
    let svc_api: Api<Service> = crate::scope::api(&client, args.namespace.as_deref());
    let health = crate::watch::WatchHealth::new();
    let cfg = watcher::Config::default();
    let pod_events = reflector::reflector(pw, resilient("pods", pods_api, cfg.clone(), &health))
        .touched_objects();
    let svc_events = reflector::reflector(sw, resilient("services", svc_api, cfg.clone(), &health))
        .touched_objects();
    let cm_events =
        reflector::reflector(cw, resilient("configmaps", cms_api, cfg, &health)).touched_objects();
    tokio::spawn(cm_events.for_each(|_| async {}));
    tokio::spawn(svc_events.for_each(|_| async {}));
    tokio::spawn(pod_events.for_each(|_| async {}));
    let _ = pods.wait_until_ready().await;
    let _ = cms.wait_until_ready().await;
    let _ = services.wait_until_ready().await;
    if args.cluster_dns.is_some() && !std::path::Path::new("/etc/resolv.conf").exists() {
        warn!("no /etc/resolv.conf to mount each pod's over; pod processes use the machine's DNS");
    }
    let stores = Stores { cms, services };
    info!("pod-runner: watching pods");
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut draining = Draining::default();
    let http = Arc::new(
        reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .no_proxy()
            .build()
            .unwrap_or_default(),
    );
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tick.tick().await;
        reconcile(
            &args,
            &client,
            &pods,
            &stores,
            &mut running,
            &mut draining,
            &http,
        )
        .await;
    }
}

/// What a pod's process is built from besides the pod itself.
pub(super) struct Stores {
    cms: Store<ConfigMap>,
    services: Store<Service>,
}

async fn reconcile(
    args: &PodRunnerArgs,
    client: &Client,
    pods: &Store<Pod>,
    stores: &Stores,
    running: &mut HashMap<String, Running>,
    draining: &mut Draining,
    http: &reqwest::Client,
) {
    let current: HashMap<String, Arc<Pod>> = pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| Some((p.uid()?, p)))
        .collect();
    // Pods that went away: drain, then stop.
    let gone: Vec<String> = running
        .keys()
        .filter(|uid| !current.contains_key(*uid))
        .cloned()
        .collect();
    for uid in gone {
        if let Some(r) = running.remove(&uid) {
            info!(addr = %r.addr, "pod gone; stopping its process after the drain period");
            let until = Instant::now() + Duration::from_secs(args.drain_seconds);
            draining.serving.insert(r.addr, (r.child, until));
        }
    }
    // A drained process stops in a task of its own (SIGTERM, up to 5 s to finish), so this
    // loop keeps probing the other pods meanwhile.
    draining.stop_due();
    let wanted: Vec<SocketAddr> = current.values().filter_map(|p| pod_addr(p)).collect();
    // Two live pods with one IP would have one process answer for both: start neither.
    let mut owners: HashMap<SocketAddr, usize> = HashMap::new();
    for addr in &wanted {
        *owners.entry(*addr).or_default() += 1;
    }
    let mut probes = Vec::new();
    for (uid, pod) in &current {
        // Only pods KWOK has finished starting (Running, with an IP); a Pending pod is KWOK's
        // to update, and its stage leaves these pods unready until the process answers.
        let running_phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Running");
        if !running.contains_key(uid)
            && running_phase
            && let Some(addr) = pod_addr(pod)
        {
            if owners.get(&addr).copied().unwrap_or(0) > 1 {
                warn!(pod = %pod.name_any(), %addr, "another live pod has this IP; not starting a process for either");
                continue;
            }
            // KWOK hands a freed pod IP to the next pod at once, where a kubelet would still
            // be draining the old pod: the old process serves out its drain period (clients
            // that have not yet seen it go keep working) and the new pod stays unready until
            // its own process can bind the address.
            if draining.holds(addr) {
                continue;
            }
            if let Some(r) = start(args, client, pod, stores).await {
                running.insert(uid.clone(), r);
            }
        }
        let Some(r) = running.get_mut(uid) else {
            continue;
        };
        write_volumes(&r.spec, pod, &stores.cms);
        // A process that exited is restarted after a back-off (2 s, doubling up to 30 s, like a
        // kubelet's), so its pod is visibly unready in between.
        if r.exited_at.is_none()
            && let Ok(Some(status)) = r.child.try_wait()
        {
            warn!(addr = %r.addr, %status, "pod process exited; restarting it after a back-off");
            if r.started.elapsed() > Duration::from_secs(30) {
                r.crashes = 0;
            }
            r.crashes += 1;
            r.exited_at = Some(Instant::now());
        }
        let backoff = Duration::from_secs(2u64 << r.crashes.saturating_sub(1).min(4))
            .min(Duration::from_secs(30));
        if r.exited_at.is_some_and(|t| t.elapsed() >= backoff)
            && let Some(child) = spawn(&r.spec, r.addr)
        {
            r.child = child;
            r.started = Instant::now();
            r.exited_at = None;
            r.restarts += 1;
        }
        let steady = r.ready == Some(true) && marked_ready(pod) && r.exited_at.is_none();
        if !steady || Instant::now() >= r.next_probe {
            probes.push((uid.clone(), format!("http://{}{}", r.addr, r.readiness)));
        }
    }
    // Probes run side by side, as each pod's kubelet worker would: one slow pod must not
    // delay every other pod's readiness (and a pass over thousands of pods stays short).
    let results: Vec<(String, bool)> = futures::stream::iter(probes)
        .map(|(uid, url)| async move {
            let ok = http
                .get(&url)
                .send()
                .await
                .is_ok_and(|resp| resp.status().is_success());
            (uid, ok)
        })
        .buffer_unordered(PARALLEL_PROBES)
        .collect()
        .await;
    let mut changes = Vec::new();
    for (uid, ok) in results {
        let (Some(r), Some(pod)) = (running.get_mut(&uid), current.get(&uid)) else {
            continue;
        };
        r.next_probe = Instant::now() + r.probe_period;
        let awaiting_watch = r.written_at.is_some_and(|t| t.elapsed() < REASSERT_AFTER);
        if r.ready != Some(ok) || (marked_ready(pod) != ok && !awaiting_watch) {
            changes.push((uid, pod.clone(), ok, r.restarts));
        }
    }
    let written: Vec<(String, bool)> = futures::stream::iter(changes)
        .map(|(uid, pod, ok, restarts)| async move {
            (
                uid,
                set_ready(client, &pod, ok, restarts).await.then_some(ok),
            )
        })
        .buffer_unordered(PARALLEL_STATUS_WRITES)
        .filter_map(|(uid, ok)| async move { Some((uid, ok?)) })
        .collect()
        .await;
    for (uid, ok) in written {
        if let Some(r) = running.get_mut(&uid) {
            r.ready = Some(ok);
            r.written_at = Some(Instant::now());
        }
    }
}

/// Whether the pod's `Ready` condition (as the API server has it) is True.
fn marked_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Processes of pods that are gone: serving until their drain period ends, then stopping.
#[derive(Default)]
struct Draining {
    serving: HashMap<SocketAddr, (Child, Instant)>,
    stopping: HashMap<SocketAddr, tokio::task::JoinHandle<()>>,
}

impl Draining {
    /// Starts stopping each process whose drain period is over; forgets stopped ones.
    fn stop_due(&mut self) {
        self.stopping.retain(|_, task| !task.is_finished());
        let now = Instant::now();
        let due: Vec<SocketAddr> = self
            .serving
            .iter()
            .filter(|(_, (_, until))| now >= *until)
            .map(|(addr, _)| *addr)
            .collect();
        for addr in due {
            if let Some((child, _)) = self.serving.remove(&addr) {
                self.stopping.insert(addr, tokio::spawn(stop(child)));
            }
        }
    }

    /// Whether a process of a gone pod still holds `addr`.
    fn holds(&self, addr: SocketAddr) -> bool {
        self.serving.contains_key(&addr) || self.stopping.contains_key(&addr)
    }
}

async fn stop(mut child: Child) {
    if let Some(pid) = child.id() {
        // SIGTERM first: the demo backend finishes in-flight requests.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::launch::{Program, program_of};
    use super::*;

    #[test]
    fn demo_images_and_local_addresses() {
        assert_eq!(program_of("atrium/demo-backend:0.1.0"), Some(Program::Demo));
        assert_eq!(
            program_of("registry.local/x/demo-backend@sha256:ab"),
            Some(Program::Demo)
        );
        assert_eq!(program_of("nginx:1.27"), None);
        assert_eq!(program_of("atrium/atrium:0.1.0"), Some(Program::Atrium));
        assert_eq!(
            program_of("registry.k8s.io/gateway-api/echo-basic:v1.5.1"),
            Some(Program::Echo)
        );
        assert!(is_local_pod_ip("198.18.3.4".parse().expect("ip")));
        assert!(!is_local_pod_ip("10.0.0.1".parse().expect("ip")));
    }
}
