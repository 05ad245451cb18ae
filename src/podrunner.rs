//! `atrium pod-runner`: test and demo support for the local control plane, not part of the
//! operator. KWOK nodes never start containers; this watches the pods scheduled on them and,
//! for containers whose image names a known demo program (`demo-backend`), runs that program
//! as a local process bound to the pod's IP and port, the way a kubelet would: with the
//! container's arguments, its environment (literal values and `envFrom`/`configMapKeyRef`
//! ConfigMaps) and its ConfigMap volumes written to a directory per pod (kept up to date, as a
//! kubelet does). It marks the pod `Ready` only while the process answers its readiness path,
//! restarts a process that exits, and stops it a drain period after the pod goes away.
//!
//! Pod IPs must be inside the network namespace this run created (198.18.0.0/16 on `lo`, see
//! `tools/netns-run.sh`); the runner refuses any other address.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::process::{Child, Command};
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
    /// Seconds a process keeps serving after its pod is gone (like a preStop pause).
    #[arg(long, default_value_t = 2, env = "ATRIUM_POD_RUNNER_DRAIN")]
    pub drain_seconds: u64,
    /// Only pods of this namespace (default: every namespace).
    #[arg(long, env = "ATRIUM_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
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

/// A program the runner knows how to run for a container image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Program {
    /// `demo-backend` images: `atrium demo-backend` with the container's args.
    Demo,
    /// `atrium` images (the Helm chart's controller and gateway): `atrium` with the
    /// container's args, listening on the pod IP, with a kubeconfig for the pod's
    /// ServiceAccount.
    Atrium,
}

/// The program a container image names, if any.
fn program_of(image: &str) -> Option<Program> {
    let name = image.rsplit('/').next().unwrap_or(image);
    match name.split([':', '@']).next().unwrap_or(name) {
        "demo-backend" => Some(Program::Demo),
        "atrium" => Some(Program::Atrium),
        _ => None,
    }
}

struct Running {
    child: Child,
    addr: SocketAddr,
    readiness: String,
    ready: Option<bool>,
    started: Instant,
    restarts: u32,
    /// When the process exited (it restarts after a back-off).
    exited_at: Option<Instant>,
    /// Exits in a row.
    crashes: u32,
    spec: Launch,
}

#[derive(Clone)]
struct Launch {
    program: Program,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    /// ConfigMap name → directory its files are written to.
    volumes: Vec<(String, PathBuf)>,
    /// Where the process's output goes (`<work-dir>/<namespace>/<pod>/<container>.log`).
    log: PathBuf,
}

/// Runs until the process is stopped.
pub async fn run(args: PodRunnerArgs) -> Result<(), RunnerError> {
    let client = Client::try_default().await.map_err(RunnerError::Client)?;
    let pods_api: Api<Pod> = crate::scope::api(&client, args.namespace.as_deref());
    let cms_api: Api<ConfigMap> = crate::scope::api(&client, args.namespace.as_deref());
    let (pods, pw) = reflector::store::<Pod>();
    let (cms, cw) = reflector::store::<ConfigMap>();
    let pod_events = reflector::reflector(pw, watcher(pods_api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    let cm_events = reflector::reflector(cw, watcher(cms_api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    tokio::spawn(cm_events.for_each(|_| async {}));
    tokio::spawn(pod_events.for_each(|_| async {}));
    let _ = pods.wait_until_ready().await;
    let _ = cms.wait_until_ready().await;
    info!("pod-runner: watching pods");
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut draining: HashMap<SocketAddr, (Child, Instant)> = HashMap::new();
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
            &cms,
            &mut running,
            &mut draining,
            &http,
        )
        .await;
    }
}

async fn reconcile(
    args: &PodRunnerArgs,
    client: &Client,
    pods: &Store<Pod>,
    cms: &Store<ConfigMap>,
    running: &mut HashMap<String, Running>,
    draining: &mut HashMap<SocketAddr, (Child, Instant)>,
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
            draining.insert(r.addr, (r.child, until));
        }
    }
    // KWOK hands a freed pod IP to the next pod at once: a draining process on an address a
    // new pod needs stops now, so the new pod's own process binds it (and answers its probes).
    let wanted: Vec<SocketAddr> = current.values().filter_map(|p| pod_addr(p)).collect();
    let due: Vec<SocketAddr> = draining
        .iter()
        .filter(|(addr, (_, until))| wanted.contains(addr) || Instant::now() >= *until)
        .map(|(addr, _)| *addr)
        .collect();
    for addr in due {
        if let Some((child, _)) = draining.remove(&addr) {
            stop(child).await;
        }
    }
    for (uid, pod) in &current {
        if !running.contains_key(uid) && demo_container(pod).is_some() {
            // KWOK marks a pod Ready as soon as it runs; the process is not listening yet.
            // Take that back before starting it, so no traffic arrives early.
            let _ = set_ready(client, pod, false, 0).await;
            if let Some(r) = start(args, client, pod, cms).await {
                running.insert(uid.clone(), r);
            }
        }
        let Some(r) = running.get_mut(uid) else {
            continue;
        };
        write_volumes(&r.spec, pod, cms);
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
        let url = format!("http://{}{}", r.addr, r.readiness);
        let ok = http
            .get(&url)
            .send()
            .await
            .is_ok_and(|resp| resp.status().is_success());
        let kwok_says_ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        if (r.ready != Some(ok) || kwok_says_ready != ok)
            && set_ready(client, pod, ok, r.restarts).await
        {
            r.ready = Some(ok);
        }
    }
}

/// The address a pod's demo process listens on.
fn pod_addr(pod: &Pod) -> Option<SocketAddr> {
    let (container, _) = demo_container(pod)?;
    let ip: IpAddr = pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
    Some(SocketAddr::new(ip, probe_port(container)?))
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

fn demo_container(pod: &Pod) -> Option<(&Container, Program)> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find_map(|c| program_of(c.image.as_deref()?).map(|p| (c, p)))
}

/// The port a probe names (a number or a container port's name), else the first port.
fn probe_port(container: &Container) -> Option<u16> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let ports = container.ports.as_ref()?;
    let named = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .and_then(|h| match &h.port {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(name) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port),
        });
    u16::try_from(named.unwrap_or(ports.first()?.container_port)).ok()
}

/// A `fieldRef` of the downward API.
fn field(pod: &Pod, path: &str) -> Option<String> {
    match path {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => pod.metadata.namespace.clone(),
        "status.podIP" => pod.status.as_ref()?.pod_ip.clone(),
        "spec.nodeName" => pod.spec.as_ref()?.node_name.clone(),
        "spec.serviceAccountName" => pod.spec.as_ref()?.service_account_name.clone(),
        _ => None,
    }
}

/// A kubeconfig for the pod's ServiceAccount (a token from the TokenRequest API), in `dir`.
async fn service_account_kubeconfig(
    client: &Client,
    pod: &Pod,
    dir: &std::path::Path,
) -> Option<PathBuf> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let ns = pod.namespace()?;
    let sa = pod
        .spec
        .as_ref()?
        .service_account_name
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(86_400),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create_token_request(&sa, &kube::api::PostParams::default(), &request)
        .await
        .map_err(
            |e| warn!(pod = %pod.name_any(), error = %e, "no token for the pod's ServiceAccount"),
        )
        .ok()?
        .status?
        .token;
    let own = kube::config::Kubeconfig::read().ok()?;
    let cluster = own.clusters.first()?.cluster.clone()?;
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": cluster.server,
            "certificate-authority-data": cluster.certificate_authority_data,
        }}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": sa, "namespace": ns}}],
        "current-context": "local",
    });
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join("kubeconfig");
    std::fs::write(&path, config.to_string()).ok()?;
    Some(path)
}

async fn start(
    args: &PodRunnerArgs,
    client: &Client,
    pod: &Pod,
    cms: &Store<ConfigMap>,
) -> Option<Running> {
    let (container, program) = demo_container(pod)?;
    let addr = pod_addr(pod)?;
    if !is_local_pod_ip(addr.ip()) {
        warn!(pod = %pod.name_any(), %addr, "refusing to bind a pod IP outside this run's network namespace");
        return None;
    }
    let ns = pod.namespace().unwrap_or_default();
    let mut env = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref
            && let Some(cm) = cms.get(&ObjectRef::new(&r.name).within(&ns))
        {
            let prefix = from.prefix.clone().unwrap_or_default();
            for (k, v) in cm.data.iter().flatten() {
                env.insert(format!("{prefix}{k}"), v.clone());
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(from)) => from
                .config_map_key_ref
                .as_ref()
                .and_then(|r| {
                    cms.get(&ObjectRef::new(&r.name).within(&ns))
                        .and_then(|cm| cm.data.as_ref()?.get(&r.key).cloned())
                })
                .or_else(|| field(pod, &from.field_ref.as_ref()?.field_path)),
            _ => None,
        };
        if let Some(v) = value {
            env.insert(e.name.clone(), v);
        }
    }
    let pod_dir = args.work_dir.join(&ns).join(pod.name_any());
    let mut volumes = vec![];
    let mut extra = vec![];
    for mount in container.volume_mounts.iter().flatten() {
        let source = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .and_then(|v| v.iter().find(|v| v.name == mount.name))
            .and_then(|v| v.config_map.as_ref());
        if let Some(cm) = source {
            let dir = pod_dir.join(&mount.name);
            extra.push(format!("--config-dir={}", dir.display()));
            volumes.push((cm.name.clone(), dir));
        }
    }
    let ip = addr.ip().to_string();
    // Listen addresses like 0.0.0.0:9000 become the pod's own IP.
    let mut argv: Vec<String> = container
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.replace("0.0.0.0:", &format!("{ip}:")))
        .collect();
    argv.extend(extra);
    if program == Program::Atrium {
        let kubeconfig = service_account_kubeconfig(client, pod, &pod_dir).await?;
        env.insert("KUBECONFIG".to_owned(), kubeconfig.display().to_string());
    }
    let readiness = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .and_then(|h| h.path.clone())
        .unwrap_or_else(|| "/healthz".to_owned());
    let _ = std::fs::create_dir_all(&pod_dir);
    let spec = Launch {
        program,
        args: argv,
        env,
        volumes,
        log: pod_dir.join(format!("{}.log", container.name)),
    };
    write_volumes(&spec, pod, cms);
    let child = spawn(&spec, addr)?;
    info!(pod = %format!("{ns}/{}", pod.name_any()), %addr, ?program, "started a pod process");
    Some(Running {
        child,
        addr,
        readiness,
        ready: None,
        started: Instant::now(),
        restarts: 0,
        exited_at: None,
        crashes: 0,
        spec,
    })
}

fn write_volumes(spec: &Launch, pod: &Pod, cms: &Store<ConfigMap>) {
    let ns = pod.namespace().unwrap_or_default();
    for (name, dir) in &spec.volumes {
        let Some(cm) = cms.get(&ObjectRef::new(name).within(&ns)) else {
            continue;
        };
        let _ = std::fs::create_dir_all(dir);
        for (k, v) in cm.data.iter().flatten() {
            let path = dir.join(k);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(v.as_str()) {
                let tmp = dir.join(format!(".{k}.tmp"));
                if std::fs::write(&tmp, v).is_ok() {
                    let _ = std::fs::rename(&tmp, &path);
                }
            }
        }
    }
}

fn spawn(spec: &Launch, addr: SocketAddr) -> Option<Child> {
    let exe = std::env::current_exe().ok()?;
    let mut cmd = Command::new(exe);
    match spec.program {
        Program::Demo => {
            cmd.arg("demo-backend")
                .args(&spec.args)
                .arg(format!("--listen={addr}"));
        }
        Program::Atrium => {
            cmd.args(&spec.args);
        }
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .ok()?;
    let log_err = log.try_clone().ok()?;
    cmd.stdout(log).stderr(log_err);
    if !spec.env.contains_key("ATRIUM_LOG_LEVEL") {
        cmd.env("ATRIUM_LOG_LEVEL", "warn");
    }
    cmd.envs(&spec.env)
        .env(
            "ATRIUM_DEMO_ENV_KEYS",
            spec.env.keys().cloned().collect::<Vec<_>>().join(","),
        )
        .env("ATRIUM_EXIT_WITH_PARENT", "true")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match cmd.spawn() {
        Ok(c) => Some(c),
        Err(e) => {
            warn!(%addr, error = %e, "could not start a pod process");
            None
        }
    }
}

/// Sets the pod's Ready and ContainersReady conditions; true when the API server took it.
async fn set_ready(client: &Client, pod: &Pod, ready: bool, restarts: u32) -> bool {
    let ns = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = if ready { "True" } else { "False" };
    let mut statuses = vec![];
    if let Some(c) = pod.spec.as_ref().and_then(|s| s.containers.first()) {
        statuses.push(json!({
            "name": c.name, "image": c.image, "imageID": "", "ready": ready,
            "restartCount": restarts, "started": ready,
            "state": {"running": {"startedAt": now}},
        }));
    }
    let patch = json!({"status": {
        "conditions": [
            {"type": "Ready", "status": status, "lastTransitionTime": now},
            {"type": "ContainersReady", "status": status, "lastTransitionTime": now},
        ],
        "containerStatuses": statuses,
    }});
    match api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
    {
        Ok(_) => true,
        Err(e) => {
            warn!(pod = %pod.name_any(), error = %e, "could not set pod readiness");
            false
        }
    }
}

#[cfg(test)]
mod tests {
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
        assert!(is_local_pod_ip("198.18.3.4".parse().expect("ip")));
        assert!(!is_local_pod_ip("10.0.0.1".parse().expect("ip")));
    }
}
