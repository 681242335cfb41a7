//! Work the loader's sequential pass hands to the other cores (issue #15, docs/PERFORMANCE.md).
//!
//! The loader reads files into one model in path order (`snapshot::load_inputs`): what a file
//! means may depend on the files before it (a second capture of a node's rules is compared
//! with the first, a Service given twice is warned about), so that pass stays one thread. The
//! costly part of two kinds of files does not depend on anything read before, and is done here
//! ahead of the pass, on every core, as pure functions of the file's bytes:
//!
//! * a cluster file (YAML/JSON) is lowered into a model of its own ([`ClusterPart`]); the pass
//!   merges it ([`merge_cluster`]) where merging gives what lowering into the shared model
//!   would have (no MetalLB configuration, whose readers look at what earlier files
//!   configured, and no Service an earlier file holds), and reads the file itself otherwise;
//! * a node's `iptables-save` is parsed into a ruleset ([`PreparsedRuleset`]); the node
//!   reader takes it where it would have parsed exactly that text, for that file, into an
//!   empty IPv4 ruleset without a default table ([`take_ruleset`]), and parses itself
//!   otherwise.
//!
//! Either way the answer is the one the sequential pass gives; only where the time is spent
//! changes. The pass takes each result in its own order: a job no thread has started yet it
//! runs itself, and while a job it needs is running elsewhere it runs other pending jobs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use kubepath_model::k8s::{Cluster, LoadBalancer};
use kubepath_model::Model;

use crate::diag::{Diagnostic, ParseError, SourceFile};

/// A file worth preparing, with its contents.
pub(crate) enum Job {
    /// A file under `cluster/`.
    Cluster { path: Arc<str>, bytes: Arc<Vec<u8>> },
    /// A node's file whose contents look like a whole `iptables-save`.
    Ruleset { path: Arc<str>, bytes: Arc<Vec<u8>> },
    /// An `nginx.conf` under `ingress/`.
    Nginx { path: Arc<str>, bytes: Arc<Vec<u8>> },
}

/// What a job gave.
pub(crate) enum Prepared {
    Cluster(Option<ClusterPart>),
    Ruleset(Option<PreparsedRuleset>),
    Nginx(Option<PreparsedNginx>),
}

/// An `nginx.conf` read by [`crate::net::nginx::read`] for the pod its path names.
pub(crate) struct PreparsedNginx {
    res: Result<Option<kubepath_model::nginx::NginxConf>, ParseError>,
    diags: Vec<Diagnostic>,
}

impl PreparsedNginx {
    /// What `crate::dispatch::read_nginx_file` does with the file, from the result read ahead.
    pub(crate) fn apply(
        self,
        model: &mut Model,
        diags: &mut Vec<Diagnostic>,
    ) -> Result<Option<&'static str>, ParseError> {
        diags.extend(self.diags);
        match self.res? {
            Some(conf) => {
                model.nginx.push(conf);
                Ok(Some("nginx-conf"))
            }
            None => Ok(None),
        }
    }
}

/// A cluster file lowered into a model of its own by [`crate::k8s::read_cluster_file`].
pub(crate) struct ClusterPart {
    res: Result<Option<&'static str>, ParseError>,
    cluster: Cluster,
    diags: Vec<Diagnostic>,
    objects: Vec<String>,
}

/// A node file's text parsed as `Ruleset::new(Ipv4).add_shared_text(path, text, None)`.
pub(crate) struct PreparsedRuleset {
    path: Arc<str>,
    /// The text parsed (the ruleset shares it): the file's bytes are not kept, so the loader
    /// can take them without a copy.
    text: Arc<String>,
    result: Result<
        (
            kubepath_netfilter::Ruleset,
            Vec<kubepath_netfilter::Diagnostic>,
        ),
        kubepath_netfilter::ParseError,
    >,
}

/// The smallest node file worth parsing ahead (smaller ones parse in well under a millisecond).
const MIN_RULESET_BYTES: usize = 256 * 1024;

impl Job {
    /// The job for a file at `place` with these bytes, if it is worth one.
    pub(crate) fn for_file(
        is_cluster: bool,
        is_node: bool,
        path: &Arc<str>,
        bytes: &Arc<Vec<u8>>,
    ) -> Option<Job> {
        if matches!(
            crate::snapshot::place(path),
            crate::snapshot::Place::Nginx(_)
        ) {
            return Some(Job::Nginx {
                path: path.clone(),
                bytes: bytes.clone(),
            });
        }
        if is_cluster {
            return Some(Job::Cluster {
                path: path.clone(),
                bytes: bytes.clone(),
            });
        }
        if is_node && bytes.len() >= MIN_RULESET_BYTES {
            let head = &bytes[..bytes.len().min(64 * 1024)];
            let head = match std::str::from_utf8(head) {
                Ok(h) => h,
                Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""),
            };
            if kubepath_netfilter::Ruleset::sniff(head) == Some(kubepath_netfilter::Format::Save) {
                return Some(Job::Ruleset {
                    path: path.clone(),
                    bytes: bytes.clone(),
                });
            }
        }
        None
    }

    fn run(self) -> Prepared {
        match self {
            Job::Cluster { path, bytes } => Prepared::Cluster(cluster_part(path, &bytes)),
            Job::Nginx { path, bytes } => Prepared::Nginx(nginx(path, &bytes)),
            Job::Ruleset { path, bytes } => {
                let text = std::str::from_utf8(&bytes)
                    .ok()
                    .map(|t| Arc::new(t.to_owned()));
                drop(bytes);
                Prepared::Ruleset(text.map(|text| {
                    let mut rs = kubepath_netfilter::Ruleset::new(kubepath_netfilter::Family::Ipv4);
                    let result = rs
                        .add_shared_text(&path, text.clone(), None)
                        .map(|d| (rs, d));
                    PreparsedRuleset { path, text, result }
                }))
            }
        }
    }
}

/// The cluster file lowered into a model of its own: None where the loader does not hand it
/// to the reader as it is (not UTF-8, a NUL byte, no final newline: the loader's own checks).
fn cluster_part(path: Arc<str>, bytes: &[u8]) -> Option<ClusterPart> {
    let text = std::str::from_utf8(bytes).ok()?;
    if memchr::memchr(0, bytes).is_some() || crate::snapshot::unterminated_last_line(text).is_some()
    {
        return None;
    }
    let file = SourceFile {
        path,
        text: text.to_owned(),
    };
    let mut model = Model::default();
    let mut diags = Vec::new();
    let mut objects = Vec::new();
    let res = crate::k8s::read_cluster_file_fresh(&file, &mut model, &mut diags, &mut objects);
    Some(ClusterPart {
        res,
        cluster: model.cluster,
        diags,
        objects,
    })
}

/// The `nginx.conf` read as the loader reads it: None where the loader does not hand it to the
/// reader as it is (not UTF-8, a NUL byte).
fn nginx(path: Arc<str>, bytes: &[u8]) -> Option<PreparsedNginx> {
    let text = std::str::from_utf8(bytes).ok()?;
    if memchr::memchr(0, bytes).is_some() {
        return None;
    }
    let crate::snapshot::Place::Nginx(pod) = crate::snapshot::place(&path) else {
        return None;
    };
    let file = SourceFile {
        path: path.clone(),
        text: text.to_owned(),
    };
    let mut diags = Vec::new();
    let res = crate::net::nginx::read(pod, &file, &mut diags);
    Some(PreparsedNginx { res, diags })
}

/// Adds a cluster file's part to `model` as lowering it into `model` would have, and gives the
/// reader's answer; or gives the part back (None) where the two could differ: the part holds
/// MetalLB configuration (its readers compare with what earlier files configured) or a Service
/// `model` already holds (lowering it warns that it appears twice). The caller then reads the
/// file into `model` itself.
pub(crate) fn merge_cluster(
    part: ClusterPart,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
    objects: &mut Vec<String>,
) -> Option<Result<Option<&'static str>, ParseError>> {
    let c = &mut model.cluster;
    if part.cluster.lb != LoadBalancer::default()
        || part
            .cluster
            .services
            .keys()
            .any(|k| c.services.contains_key(k))
    {
        return None;
    }
    // Every field, so that a new one is a compile error here until it is merged.
    let Cluster {
        namespaces,
        services,
        pods,
        nodes,
        endpoints,
        ingresses,
        ingress_classes,
        config_maps,
        lb: _,
        other,
        collected,
        left_out,
    } = part.cluster;
    debug_assert!(left_out.is_empty(), "the reader does not leave files out");
    // Maps: a later file's object replaces an earlier one of the same key, as an insert does.
    c.namespaces.extend(namespaces);
    c.services.extend(services);
    c.nodes.extend(nodes);
    c.ingress_classes.extend(ingress_classes);
    c.pods.extend(pods);
    c.endpoints.extend(endpoints);
    c.ingresses.extend(ingresses);
    c.config_maps.extend(config_maps);
    c.other.extend(other);
    c.collected.extend(collected);
    diags.extend(part.diags);
    objects.extend(part.objects);
    Some(part.res)
}

enum Slot {
    Pending(Job),
    Running,
    Done(Box<Prepared>),
    Taken,
}

/// The jobs of one load, shared by the loader's pass and the threads that work ahead of it.
pub(crate) struct Prefetch {
    slots: Mutex<Vec<Slot>>,
    done: Condvar,
    /// Ruleset jobs by file path.
    rulesets: HashMap<Arc<str>, usize>,
}

impl Prefetch {
    /// The jobs, each with the index of the file it is for (the order they are started in).
    pub(crate) fn new(jobs: Vec<Job>) -> Prefetch {
        let rulesets = jobs
            .iter()
            .enumerate()
            .filter_map(|(i, j)| match j {
                Job::Ruleset { path, .. } => Some((path.clone(), i)),
                Job::Cluster { .. } | Job::Nginx { .. } => None,
            })
            .collect();
        Prefetch {
            slots: Mutex::new(jobs.into_iter().map(Slot::Pending).collect()),
            done: Condvar::new(),
            rulesets,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        // A job that panicked leaves its slot Running; the pass then runs into the panic of
        // its own thread's join: the data is still consistent.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the first pending job, if any; false when none is pending.
    pub(crate) fn work_one(&self) -> bool {
        let job = {
            let mut slots = self.lock();
            let Some(i) = slots.iter().position(|s| matches!(s, Slot::Pending(_))) else {
                return false;
            };
            match std::mem::replace(&mut slots[i], Slot::Running) {
                Slot::Pending(j) => (i, j),
                _ => return false,
            }
        };
        self.finish(job.0, job.1.run());
        true
    }

    fn finish(&self, i: usize, out: Prepared) {
        self.lock()[i] = Slot::Done(Box::new(out));
        self.done.notify_all();
    }

    /// The result of job `i`, once (None after it was taken).
    pub(crate) fn take(&self, i: usize) -> Option<Prepared> {
        loop {
            let mut slots = self.lock();
            match std::mem::replace(&mut slots[i], Slot::Taken) {
                Slot::Done(out) => return Some(*out),
                Slot::Taken => return None,
                Slot::Pending(job) => {
                    slots[i] = Slot::Running;
                    drop(slots);
                    return Some(job.run());
                }
                Slot::Running => {
                    slots[i] = Slot::Running;
                    drop(slots);
                    // Help with the others while it runs elsewhere.
                    if !self.work_one() {
                        let slots = self.lock();
                        if matches!(slots[i], Slot::Running) {
                            drop(self.done.wait(slots));
                        }
                    }
                }
            }
        }
    }

    /// Every job not taken is dropped (the pass is over): the threads stop after their current
    /// one.
    pub(crate) fn cancel(&self) {
        for s in self.lock().iter_mut() {
            if matches!(s, Slot::Pending(_) | Slot::Done(_)) {
                *s = Slot::Taken;
            }
        }
    }
}

thread_local! {
    /// The prefetch of the load running on this thread, for the node readers below.
    static CURRENT: RefCell<Option<Arc<Prefetch>>> = const { RefCell::new(None) };
}

/// Makes `p` the prefetch the node readers of this thread look in, until the guard is dropped.
pub(crate) fn enter(p: Arc<Prefetch>) -> impl Drop {
    struct Guard;
    impl Drop for Guard {
        fn drop(&mut self) {
            CURRENT.with(|c| c.borrow_mut().take());
        }
    }
    CURRENT.with(|c| *c.borrow_mut() = Some(p));
    Guard
}

/// The ruleset `file`'s `text` parses into, as
/// `Ruleset::new(Ipv4).add_shared_text(file, text, None)` gives it, when it was parsed ahead
/// from exactly this file and text.
pub(crate) fn take_ruleset(
    file: &str,
    text: &str,
) -> Option<
    Result<
        (
            kubepath_netfilter::Ruleset,
            Vec<kubepath_netfilter::Diagnostic>,
        ),
        kubepath_netfilter::ParseError,
    >,
> {
    let p = CURRENT.with(|c| c.borrow().clone())?;
    let i = *p.rulesets.get(file)?;
    match p.take(i)? {
        Prepared::Ruleset(Some(r)) if &*r.path == file && r.text.as_str() == text => Some(r.result),
        _ => None,
    }
}
