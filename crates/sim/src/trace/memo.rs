//! Work shared between the traces of one model (`kubepath check`'s many flows).
//!
//! A fix is verified by applying its changes to a copy of the model ([`whatif::apply`]) and
//! re-running the trace; `check` traces every entry point of a client address, and each trace
//! verifies the same fixes (the same [`Change`] values) on its own request, then `check`
//! re-simulates each verified fix on every address class of the prefix. Within
//! [`with_memo`], the changed model of a change list and the result of a run on it are kept
//! (a few of each, most recent first) and handed out again for the *same* base model, the
//! *same* changes and the *same* request: a pure function computed once, so the output is the
//! same byte for byte. Outside [`with_memo`], or for another base model (a `--what-if` trace
//! runs on a changed copy), everything is computed as before.
//!
//! The memo is shared by the threads `check` traces on ([`current`], [`with_shared`]): a
//! lookup or an insert holds its lock, a computation does not (two threads may compute the
//! same value; either copy is the same).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use kubepath_model::Model;

use super::whatif::{self, Change};
use super::{run, TraceRequest, TraceResult};

/// Changed models kept (each a copy of the whole model).
const MODELS: usize = 4;
/// Run results kept.
const RUNS: usize = 64;

/// A changed model, its notes, and its nodes' routing indexes (shared by every run on it: the
/// model cannot change while it is here).
pub struct Changed {
    pub model: Model,
    pub notes: Vec<String>,
    routes: Arc<super::RoutesCache>,
}

type Applied = Arc<Changed>;

#[derive(Default)]
struct Entries {
    models: VecDeque<(Vec<Change>, Applied)>,
    runs: VecDeque<(Vec<Change>, TraceRequest, Arc<TraceResult>)>,
}

/// The memo of one base model.
pub struct Memo {
    /// The address of the model every entry was derived from (only compared).
    base: usize,
    entries: Mutex<Entries>,
}

thread_local! {
    static MEMO: RefCell<Option<Arc<Memo>>> = const { RefCell::new(None) };
}

fn same_request(a: &TraceRequest, b: &TraceRequest) -> bool {
    a.client == b.client
        && a.client_port == b.client_port
        && a.target == b.target
        && a.proto == b.proto
        && a.what_if == b.what_if
}

/// Restores the previous memo (none) when the scope ends, even by unwinding.
struct Scope {
    prev: Option<Arc<Memo>>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let prev = self.prev.take();
        MEMO.with(|m| {
            if let Ok(mut m) = m.try_borrow_mut() {
                *m = prev;
            }
        });
    }
}

/// Runs `f` with changed models and runs derived from `model` shared (see the module).
pub fn with_memo<R>(model: &Model, f: impl FnOnce() -> R) -> R {
    let memo = Arc::new(Memo {
        base: model as *const Model as usize,
        entries: Mutex::new(Entries::default()),
    });
    with_shared(memo, f)
}

/// The memo in force on this thread for `model`, to hand to other threads ([`with_shared`]).
pub fn current(model: &Model) -> Option<Arc<Memo>> {
    MEMO.with(|m| {
        m.try_borrow().ok().and_then(|m| {
            m.as_ref()
                .filter(|m| m.base == model as *const Model as usize)
                .cloned()
        })
    })
}

/// Runs `f` with `memo` (from [`current`] on another thread, whose base model outlives `f`).
pub fn with_shared<R>(memo: Arc<Memo>, f: impl FnOnce() -> R) -> R {
    let prev = MEMO.with(|m| m.try_borrow_mut().ok().and_then(|mut m| m.replace(memo)));
    let _scope = Scope { prev };
    f()
}

fn memo_for(model: &Model) -> Option<Arc<Memo>> {
    current(model)
}

fn apply(model: &Model, changes: &[Change]) -> Applied {
    let (model, notes) = whatif::apply(model, changes);
    let mut a = Arc::new(Changed {
        model,
        notes,
        routes: Arc::default(),
    });
    // Indexed where the model lives from now on (inside the `Arc`, never moved again).
    if let Some(c) = Arc::get_mut(&mut a) {
        c.routes = Arc::new(super::RoutesCache::new(&c.model));
    }
    a
}

/// `whatif::apply(model, changes)`, shared within [`with_memo`].
pub fn applied(model: &Model, changes: &[Change]) -> Applied {
    let Some(memo) = memo_for(model) else {
        return apply(model, changes);
    };
    let hit = memo.entries.lock().ok().and_then(|e| {
        e.models
            .iter()
            .find(|(c, _)| c.as_slice() == changes)
            .map(|(_, a)| a.clone())
    });
    if let Some(a) = hit {
        return a;
    }
    let a = apply(model, changes);
    if let Ok(mut e) = memo.entries.lock() {
        e.models.push_front((changes.to_vec(), a.clone()));
        e.models.truncate(MODELS);
    }
    a
}

/// `run(&whatif::apply(model, changes).0, req)` and the apply's notes, shared within
/// [`with_memo`].
pub fn run_changed(
    model: &Model,
    changes: &[Change],
    req: &TraceRequest,
) -> (Arc<TraceResult>, Vec<String>) {
    let a = applied(model, changes);
    (run_applied(model, changes, &a, req), a.notes.clone())
}

/// `run(&changed.model, req)` where `changed` is [`applied`]`(model, changes)`, shared within
/// [`with_memo`].
pub fn run_applied(
    model: &Model,
    changes: &[Change],
    changed: &Changed,
    req: &TraceRequest,
) -> Arc<TraceResult> {
    let run_it = || {
        Arc::new(super::with_shared_routes(
            &changed.model,
            changed.routes.clone(),
            || run(&changed.model, req),
        ))
    };
    let Some(memo) = memo_for(model) else {
        return run_it();
    };
    let hit = memo.entries.lock().ok().and_then(|e| {
        e.runs
            .iter()
            .find(|(c, r, _)| c.as_slice() == changes && same_request(r, req))
            .map(|(_, _, x)| x.clone())
    });
    if let Some(r) = hit {
        return r;
    }
    let r = run_it();
    if let Ok(mut e) = memo.entries.lock() {
        e.runs
            .push_front((changes.to_vec(), req.clone(), r.clone()));
        e.runs.truncate(RUNS);
    }
    r
}
