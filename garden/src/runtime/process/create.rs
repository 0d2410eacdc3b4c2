//! `create`, parent side: decide everything, fork the set-up children, play
//! the parent's part (cgroup, id maps, hooks), and record the container.

use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use garden_cgroups::{Cgroup, CgroupError, CgroupMode};
use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{Hooks, LinuxNamespaceType, Spec};

use super::super::bundle::{Bundle, BundleError};
use super::super::hooks::{self, HookError};
use super::super::namespaces::{self, NamespaceError, Plan};
use super::super::rootfs::CgroupView;
use super::super::sealed_exe::{self, SealedExeError};
use super::super::state::{self, Record, StateError, StateRoot, CONFIG_FILE, EXIT_FILE, FIFO_FILE};
use super::super::sysctl::{self, Private, SysctlError};
use super::super::{oci_state, sys};
use super::channel::{self, Channel, ChannelError, Message};
use super::context::InitContext;
use super::timings::Timings;
use super::user::{ProcessError, ProcessPlan};
use super::{init, stage1};

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("seccomp profile: {0}")]
    Seccomp(#[from] garden_seccomp::SeccompError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("container set-up failed: {0}")]
    Init(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{step}: {source}")]
    Sys {
        step: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    SealedExe(#[from] SealedExeError),
    #[error("process.terminal is set but no console socket was given (--console-socket)")]
    NoConsoleSocket,
}

/// Options of `create` (and of `run`, which creates first).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
}

/// Creates the container; on return its init waits for `start`.
pub fn create(root: &StateRoot, opts: &CreateOptions) -> Result<Record, CreateError> {
    let t0 = Instant::now();
    let bundle = Bundle::load(&opts.bundle)?;
    create_loaded(root, opts, bundle, t0)
}

/// [`create`] of the bundle at `opts.bundle`, which the caller has already
/// loaded, starting at `t0` (for the timings).
pub fn create_loaded(
    root: &StateRoot,
    opts: &CreateOptions,
    bundle: Bundle,
    t0: Instant,
) -> Result<Record, CreateError> {
    let spec_us = t0.elapsed().as_micros() as u64;
    let dir = root.claim(&opts.id)?;
    let mut undo = Undo {
        root,
        id: &opts.id,
        cgroup: None,
        pids: Vec::new(),
    };
    let mut record = build(root, &dir, bundle, opts, &mut undo)?;
    record.timings.spec_us = spec_us;
    record.timings.create_us = t0.elapsed().as_micros() as u64;
    root.save(&record)?;
    if let Some(pid_file) = &opts.pid_file {
        write_pid_file(pid_file, record.pid)?;
    }
    undo.disarm();
    Ok(record)
}

/// Cleans up a failed create: nothing is left behind.
struct Undo<'a> {
    root: &'a StateRoot,
    id: &'a str,
    cgroup: Option<Cgroup>,
    pids: Vec<Pid>,
}

impl Undo<'_> {
    fn disarm(&mut self) {
        self.pids.clear();
        self.cgroup = None;
        self.id = "";
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.id.is_empty() {
            return;
        }
        for pid in &self.pids {
            let _ = nix::sys::signal::kill(*pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(*pid, None);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.kill_all();
            let _ = cg.destroy();
        }
        let _ = self.root.remove(self.id);
    }
}

fn build(
    root: &StateRoot,
    dir: &Path,
    bundle: Bundle,
    opts: &CreateOptions,
    undo: &mut Undo<'_>,
) -> Result<Record, CreateError> {
    let mut timings = Timings::default();
    let spec = bundle.spec.clone();
    let linux = spec.linux().clone().unwrap_or_default();
    let process = spec.process().clone().ok_or(BundleError::NoProcess)?;

    let namespaces = Plan::for_spec(&spec)?;
    let has = |t: LinuxNamespaceType| linux.namespaces().iter().flatten().any(|n| n.typ() == t);
    let private = Private {
        ipc: has(LinuxNamespaceType::Ipc),
        net: has(LinuxNamespaceType::Network),
        uts: has(LinuxNamespaceType::Uts),
    };
    if let Some(s) = linux.sysctl() {
        sysctl::validate(s, private)?;
    }

    let t = Instant::now();
    let seccomp = super::super::bundle::seccomp_profile(&spec)?;
    timings.seccomp_us = t.elapsed().as_micros() as u64;
    let plan = ProcessPlan::from_spec(&process, seccomp, opts.preserve_fds)?;
    let console_socket = match (&opts.console_socket, plan.terminal) {
        (Some(path), true) => Some(connect_console(path)?),
        (None, true) => return Err(CreateError::NoConsoleSocket),
        _ => None,
    };

    let cgroup_path = linux
        .cgroups_path()
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("garden/{}", opts.id));
    let resources = super::super::device_rules::with_defaults(
        linux.resources().as_ref(),
        linux.devices().as_deref().unwrap_or(&[]),
    );
    let resources = resources.as_ref().or(linux.resources().as_ref());
    let cgroup = Cgroup::lookup(&cgroup_path)?;
    let cgroups = CgroupView {
        unified: cgroup.mode() == CgroupMode::Unified,
        dirs: cgroup.host_dirs(),
        namespaced: namespaces.new_cgroup,
    };
    // Usually stage 1 creates its namespaces while we create the cgroup,
    // and joins it when we say Proceed; otherwise it joins first thing.
    let cgroup_after_fork = namespaces.cgroup_join_can_wait();
    if !cgroup_after_fork {
        materialize(&cgroup, resources, undo, &mut timings)?;
    }

    std::fs::write(
        dir.join(CONFIG_FILE),
        serde_json::to_vec(&spec).unwrap_or_default(),
    )
    .map_err(io("writing", dir.join(CONFIG_FILE)))?;
    let fifo_path = dir.join(FIFO_FILE);
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o600)).map_err(|source| {
        CreateError::Sys {
            step: "creating the exec FIFO",
            source,
        }
    })?;
    let fifo = open_fd(
        &fifo_path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
    )?;
    let exit_path = dir.join(EXIT_FILE);
    let exit_file: OwnedFd = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&exit_path)
        .map_err(io("creating", exit_path.clone()))?
        .into();

    let hooks_spec = spec.hooks().clone().unwrap_or_default();
    let parent_hooks = [
        hooks_spec.prestart().clone(),
        hooks_spec.create_runtime().clone(),
    ];
    let create_container_hooks = hooks_spec.create_container().clone().unwrap_or_default();
    let start_container_hooks = hooks_spec.start_container().clone().unwrap_or_default();
    let pause_for_hooks =
        parent_hooks.iter().flatten().any(|h| !h.is_empty()) || !create_container_hooks.is_empty();
    let user_joined = namespaces
        .join
        .iter()
        .any(|(k, _)| *k == LinuxNamespaceType::User);
    // Init re-executes from this read-only copy once set-up is done (see
    // `resume`), unless we already run from one.
    let sealed_exe = if sealed_exe::is_sealed() {
        None
    } else {
        Some(sealed_exe::read_only_copy()?)
    };
    let ctx = InitContext {
        sealed_exe,
        in_user_namespace: namespaces.new_user || user_joined,
        bundle,
        namespaces,
        process: plan,
        cgroup,
        cgroups,
        private,
        fifo,
        exit_file,
        console_socket,
        pause_for_hooks,
        create_container_hooks,
        start_container_hooks,
        forked_at_ns: sys::monotonic_ns(),
    };

    let (parent_ch, child_ch) = channel::pair()?;
    let stage1_pid = match sys::fork().map_err(|source| CreateError::Sys {
        step: "fork",
        source,
    })? {
        ForkResult::Child => {
            drop(parent_ch);
            child_main(&ctx, child_ch)
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_ch);
    undo.pids.push(stage1_pid);
    if cgroup_after_fork {
        materialize(&ctx.cgroup, resources, undo, &mut timings)?;
    }
    if ctx.namespaces.new_user {
        expect(&parent_ch, "user-namespace-ready", |m| {
            matches!(m, Message::UserNamespaceReady)
        })?;
        namespaces::write_id_maps(
            stage1_pid.as_raw(),
            linux.uid_mappings().as_deref().unwrap_or(&[]),
            linux.gid_mappings().as_deref().unwrap_or(&[]),
        )?;
    }
    parent_ch.send(&Message::Proceed)?;
    let init_pid = match parent_ch.expect("the container's init pid")? {
        Message::InitPid(pid) => Pid::from_raw(pid),
        Message::Failed(msg) => return Err(CreateError::Init(msg)),
        got => {
            return Err(ChannelError::Unexpected {
                wanted: "init-pid",
                got,
            }
            .into())
        }
    };
    if init_pid != stage1_pid {
        undo.pids.insert(0, init_pid);
        // Stage 1 exits right after reporting; its init was re-parented to
        // us (or our subreaper).
        let _ = nix::sys::wait::waitpid(stage1_pid, None);
        undo.pids.retain(|p| *p != stage1_pid);
    }
    let mut record = Record {
        id: opts.id.clone(),
        pid: init_pid.as_raw(),
        pid_start_time: state::process_start_time(init_pid.as_raw()).unwrap_or(0),
        bundle: ctx.bundle.dir.clone(),
        rootfs: ctx.bundle.rootfs.target().to_path_buf(),
        created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        owner: "root".into(),
        cgroup_path,
        annotations: spec.annotations().clone().unwrap_or_default(),
        timings,
        has_poststart: hooks_spec
            .poststart()
            .as_ref()
            .is_some_and(|h| !h.is_empty()),
        has_poststop: hooks_spec
            .poststop()
            .as_ref()
            .is_some_and(|h| !h.is_empty()),
    };
    loop {
        match parent_ch.expect("the container's init to finish set-up")? {
            Message::RuntimeHooks => {
                let state = oci_state::render(&record, super::super::state::Status::Creating);
                for (kind, list) in ["prestart", "createRuntime"].into_iter().zip(&parent_hooks) {
                    hooks::run_all(kind, list.as_deref().unwrap_or(&[]), &state)?;
                }
                parent_ch.send(&Message::HooksDone(state))?;
            }
            Message::Ready(child_t) => {
                record.timings.namespaces_us = child_t.namespaces_us;
                record.timings.mounts_us = child_t.mounts_us;
                break;
            }
            Message::Failed(msg) => return Err(CreateError::Init(msg)),
            got => {
                return Err(ChannelError::Unexpected {
                    wanted: "ready",
                    got,
                }
                .into())
            }
        }
    }
    let _ = root;
    Ok(record)
}

/// Creates the cgroup with its limits; from then on a failed create
/// removes it again.
fn materialize(
    cgroup: &Cgroup,
    resources: Option<&oci_spec::runtime::LinuxResources>,
    undo: &mut Undo<'_>,
    timings: &mut Timings,
) -> Result<(), CreateError> {
    let t = Instant::now();
    cgroup.materialize(resources)?;
    undo.cgroup = Some(cgroup.clone());
    timings.cgroups_us = t.elapsed().as_micros() as u64;
    Ok(())
}

fn expect(
    ch: &Channel,
    wanted: &'static str,
    ok: impl Fn(&Message) -> bool,
) -> Result<(), CreateError> {
    match ch.expect(wanted)? {
        m if ok(&m) => Ok(()),
        Message::Failed(msg) => Err(CreateError::Init(msg)),
        got => Err(ChannelError::Unexpected { wanted, got }.into()),
    }
}

/// Stage 1 and, after its fork, init. Never returns.
fn child_main(ctx: &InitContext, ch: Channel) -> ! {
    match stage1::enter(&ctx.namespaces, &ctx.cgroup, &ch) {
        Ok(Some(())) => init::run(ctx, ch),
        Ok(None) => sys::exit_now(0),
        Err(e) => {
            let _ = ch.send(&Message::Failed(e.to_string()));
            sys::exit_now(1)
        }
    }
}

fn connect_console(path: &Path) -> Result<OwnedFd, CreateError> {
    std::os::unix::net::UnixStream::connect(path)
        .map(OwnedFd::from)
        .map_err(io("connecting to console socket", path.to_path_buf()))
}

fn open_fd(path: &Path, flags: OFlag) -> Result<OwnedFd, CreateError> {
    nix::fcntl::open(path, flags, Mode::empty()).map_err(|source| CreateError::Sys {
        step: "opening the exec FIFO",
        source,
    })
}

fn io(action: &'static str, path: PathBuf) -> impl FnOnce(std::io::Error) -> CreateError {
    move |source| CreateError::Io {
        action,
        path,
        source,
    }
}

fn write_pid_file(path: &Path, pid: i32) -> Result<(), CreateError> {
    // Written atomically: tools poll for it.
    let tmp = path.with_extension("tmp-garden");
    std::fs::write(&tmp, pid.to_string()).map_err(io("writing pid file", tmp.clone()))?;
    std::fs::rename(&tmp, path).map_err(io("writing pid file", path.to_path_buf()))
}

/// The hooks of a spec (empty when it has none).
pub fn spec_hooks(spec: &Spec) -> Hooks {
    spec.hooks().clone().unwrap_or_default()
}
