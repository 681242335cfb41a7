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

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use kubepath_model::Model;

use super::whatif::{self, Change};
use super::{run, TraceRequest, TraceResult};

/// Changed models kept (each a copy of the whole model).
const MODELS: usize = 4;
/// Run results kept.
const RUNS: usize = 64;

type Applied = Rc<(Model, Vec<String>)>;

struct Memo {
    /// The model every entry was derived from (its address; only compared, never read).
    base: *const Model,
    models: VecDeque<(Vec<Change>, Applied)>,
    runs: VecDeque<(Vec<Change>, TraceRequest, Rc<TraceResult>)>,
}

thread_local! {
    static MEMO: RefCell<Option<Memo>> = const { RefCell::new(None) };
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
    prev: Option<Memo>,
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
    let memo = Memo {
        base: model as *const Model,
        models: VecDeque::new(),
        runs: VecDeque::new(),
    };
    let prev = MEMO.with(|m| m.try_borrow_mut().ok().and_then(|mut m| m.replace(memo)));
    let _scope = Scope { prev };
    f()
}

fn active_for(model: &Model) -> bool {
    MEMO.with(|m| {
        m.try_borrow()
            .ok()
            .is_some_and(|m| m.as_ref().is_some_and(|m| std::ptr::eq(m.base, model)))
    })
}

/// `whatif::apply(model, changes)`, shared within [`with_memo`].
pub fn applied(model: &Model, changes: &[Change]) -> Applied {
    if !active_for(model) {
        return Rc::new(whatif::apply(model, changes));
    }
    let hit = MEMO.with(|m| {
        m.try_borrow().ok().and_then(|m| {
            m.as_ref().and_then(|m| {
                m.models
                    .iter()
                    .find(|(c, _)| c.as_slice() == changes)
                    .map(|(_, a)| a.clone())
            })
        })
    });
    if let Some(a) = hit {
        return a;
    }
    let a: Applied = Rc::new(whatif::apply(model, changes));
    MEMO.with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            if let Some(m) = m.as_mut() {
                m.models.push_front((changes.to_vec(), a.clone()));
                m.models.truncate(MODELS);
            }
        }
    });
    a
}

/// `run(&whatif::apply(model, changes).0, req)` and the apply's notes, shared within
/// [`with_memo`].
pub fn run_changed(
    model: &Model,
    changes: &[Change],
    req: &TraceRequest,
) -> (Rc<TraceResult>, Vec<String>) {
    let a = applied(model, changes);
    (run_applied(model, changes, &a.0, req), a.1.clone())
}

/// `run(changed, req)` where `changed` is `whatif::apply(model, changes).0`, shared within
/// [`with_memo`].
pub fn run_applied(
    model: &Model,
    changes: &[Change],
    changed: &Model,
    req: &TraceRequest,
) -> Rc<TraceResult> {
    if !active_for(model) {
        return Rc::new(run(changed, req));
    }
    let hit = MEMO.with(|m| {
        m.try_borrow().ok().and_then(|m| {
            m.as_ref().and_then(|m| {
                m.runs
                    .iter()
                    .find(|(c, r, _)| c.as_slice() == changes && same_request(r, req))
                    .map(|(_, _, x)| x.clone())
            })
        })
    });
    if let Some(r) = hit {
        return r;
    }
    let r = Rc::new(run(changed, req));
    MEMO.with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            if let Some(m) = m.as_mut() {
                m.runs
                    .push_front((changes.to_vec(), req.clone(), r.clone()));
                m.runs.truncate(RUNS);
            }
        }
    });
    r
}
