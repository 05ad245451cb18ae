//! Turning a pod into a process: the program its image names, its arguments, environment,
//! ConfigMap volumes, probe address and (for `atrium` images) a ServiceAccount kubeconfig.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod};
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::process::{Child, Command};
use tracing::{info, warn};

use super::services::{private_resolv_conf, resolv_conf, service_env};
use super::{PodRunnerArgs, Running, Stores, is_local_pod_ip};

/// A program the runner knows how to run for a container image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Program {
    /// `demo-backend` images: `atrium demo-backend` with the container's args.
    Demo,
    /// `atrium` images (the Helm chart's controller and gateway): `atrium` with the
    /// container's args, listening on the pod IP, with a kubeconfig for the pod's
    /// ServiceAccount.
    Atrium,
    /// `echo-basic` images (the Gateway API conformance suite's backends): `atrium
    /// echo-backend` on `HTTP_PORT` (default 3000), ready when `/health` answers.
    Echo,
}

/// The program a container image names, if any.
pub(super) fn program_of(image: &str) -> Option<Program> {
    let name = image.rsplit('/').next().unwrap_or(image);
    match name.split([':', '@']).next().unwrap_or(name) {
        "demo-backend" => Some(Program::Demo),
        "atrium" => Some(Program::Atrium),
        "echo-basic" => Some(Program::Echo),
        _ => None,
    }
}

#[derive(Clone)]
pub(super) struct Launch {
    pub(super) program: Program,
    pub(super) args: Vec<String>,
    pub(super) env: BTreeMap<String, String>,
    /// ConfigMap name → directory its files are written to.
    pub(super) volumes: Vec<(String, PathBuf)>,
    /// Where the process's output goes (`<work-dir>/<namespace>/<pod>/<container>.log`).
    pub(super) log: PathBuf,
    /// The variables of the cluster's Services (the pod's own `env` wins over them).
    pub(super) service_env: BTreeMap<String, String>,
    /// The pod's `resolv.conf`, mounted at `/etc/resolv.conf` for the process alone.
    pub(super) resolv_conf: Option<PathBuf>,
}

/// The address a pod's demo process listens on.
pub(super) fn pod_addr(pod: &Pod) -> Option<SocketAddr> {
    let (container, program) = demo_container(pod)?;
    let ip: IpAddr = pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
    let port = match program {
        Program::Echo => echo_port(container),
        _ => probe_port(container)?,
    };
    Some(SocketAddr::new(ip, port))
}

/// The port an echo container serves: its `HTTP_PORT`, else 3000.
fn echo_port(container: &Container) -> u16 {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "HTTP_PORT")
        .and_then(|e| e.value.as_deref()?.parse().ok())
        .unwrap_or(3000)
}

pub(super) fn demo_container(pod: &Pod) -> Option<(&Container, Program)> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find_map(|c| program_of(c.image.as_deref()?).map(|p| (c, p)))
}

/// The port a probe names (a number or a container port's name), else the first port.
pub(super) fn probe_port(container: &Container) -> Option<u16> {
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
pub(super) fn field(pod: &Pod, path: &str) -> Option<String> {
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
pub(super) async fn service_account_kubeconfig(
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

pub(super) async fn start(
    args: &PodRunnerArgs,
    client: &Client,
    pod: &Pod,
    stores: &Stores,
) -> Option<Running> {
    let cms = &stores.cms;
    let (container, program) = demo_container(pod)?;
    let addr = pod_addr(pod)?;
    if !is_local_pod_ip(addr.ip()) {
        warn!(pod = %pod.name_any(), %addr, "refusing to bind a pod IP outside this run's network namespace");
        return None;
    }
    let ns = pod.namespace().unwrap_or_default();
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let services = stores.services.state();
    // The pod's namespace's Services, and the master Service as a kubelet adds it; the pod's
    // own env (below) wins over them.
    let service_vars = service_env(services.iter().map(AsRef::as_ref).filter(|s| {
        let s_ns = s.namespace().unwrap_or_default();
        (links && s_ns == ns) || (s_ns == "default" && s.name_any() == "kubernetes")
    }));
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
    // `$(VAR)` references expand from the environment, as a kubelet expands them; listen
    // addresses like 0.0.0.0:9000 become the pod's own IP.
    let mut argv: Vec<String> = container
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            let all = |k: &str| env.get(k).or_else(|| service_vars.get(k));
            expand_vars(&a, all).replace("0.0.0.0:", &format!("{ip}:"))
        })
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
        .unwrap_or_else(|| {
            if program == Program::Echo {
                "/health"
            } else {
                "/healthz"
            }
            .to_owned()
        });
    // A kubelet's period between readiness probes (default 10 s).
    let probe_period = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.period_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(10)
        .max(1);
    let _ = std::fs::create_dir_all(&pod_dir);
    let resolv = args
        .cluster_dns
        .filter(|_| std::path::Path::new("/etc/resolv.conf").exists())
        .and_then(|dns| resolv_conf(pod, dns, &args.cluster_domain))
        .and_then(|conf| {
            let path = pod_dir.join("resolv.conf");
            std::fs::write(&path, conf)
                .map_err(|e| warn!(pod = %pod.name_any(), error = %e, "cannot write the pod's resolv.conf"))
                .ok()?;
            Some(path)
        });
    let spec = Launch {
        program,
        args: argv,
        env,
        volumes,
        log: pod_dir.join(format!("{}.log", container.name)),
        service_env: service_vars,
        resolv_conf: resolv,
    };
    write_volumes(&spec, pod, cms);
    let child = spawn(&spec, addr)?;
    info!(pod = %format!("{ns}/{}", pod.name_any()), %addr, ?program, "started a pod process");
    Some(Running {
        child,
        addr,
        readiness,
        probe_period: Duration::from_secs(probe_period),
        next_probe: Instant::now(),
        ready: None,
        written_at: None,
        started: Instant::now(),
        restarts: 0,
        exited_at: None,
        crashes: 0,
        spec,
    })
}

/// Kubernetes's `$(VAR)` expansion of a container's args: a defined variable is replaced,
/// `$$` is a literal `$`, anything else stays as written.
pub(super) fn expand_vars<'a>(arg: &str, env: impl Fn(&str) -> Option<&'a String>) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(value) = env(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

pub(super) fn write_volumes(spec: &Launch, pod: &Pod, cms: &Store<ConfigMap>) {
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

pub(super) fn spawn(spec: &Launch, addr: SocketAddr) -> Option<Child> {
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
        Program::Echo => {
            cmd.arg("echo-backend").arg(format!("--listen={addr}"));
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
    cmd.envs(&spec.service_env)
        .envs(&spec.env)
        .env(
            "ATRIUM_DEMO_ENV_KEYS",
            spec.env.keys().cloned().collect::<Vec<_>>().join(","),
        )
        .env("ATRIUM_EXIT_WITH_PARENT", "true")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(conf) = spec.resolv_conf.clone() {
        // SAFETY: the closure runs in the forked child before exec and only makes system
        // calls (unshare, mount) on paths prepared before the fork.
        unsafe {
            cmd.pre_exec(move || private_resolv_conf(&conf));
        }
    }
    match cmd.spawn() {
        Ok(c) => Some(c),
        Err(e) => {
            warn!(%addr, error = %e, "could not start a pod process");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_expand_defined_variables_only() {
        let env = BTreeMap::from([("USERS_URL".to_owned(), "http://users:8080".to_owned())]);
        let get = |k: &str| env.get(k);
        assert_eq!(
            expand_vars("users=$(USERS_URL)", get),
            "users=http://users:8080"
        );
        assert_eq!(expand_vars("$(MISSING)/x", get), "$(MISSING)/x");
        assert_eq!(expand_vars("$$(USERS_URL)", get), "$(USERS_URL)");
        assert_eq!(expand_vars("a$b$(", get), "a$b$(");
    }
}
