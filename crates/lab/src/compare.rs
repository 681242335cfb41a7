//! Predicted vs observed.
//!
//! A [`Prediction`] is what kubepath's trace says for the lab's client and service: the
//! probability of each verdict, of each node receiving the SYN, of each ingress pod and of each
//! backend. [`Prediction::from_trace_json`] reads it from `kubepath trace --json` (the fields
//! the trace issue fixes: `verdicts`, `distribution.nodes`, `distribution.ingress_pods`,
//! `distribution.backends`). [`compare`] checks it against an [`Observation`]:
//!
//! * verdicts: the same set (up to the equivalences in [`compatible`]) and, when several,
//!   consistent shares;
//! * nodes, ingress pods, backends: the same set, and shares consistent with the predicted
//!   probabilities by Pearson's chi-square test at p = 0.001. Pods count only over connections
//!   whose verdict says the SYN reached a pod, backends only over delivered connections;
//! * ECMP: for every connection, the node the routers' `ip route get` names for its 5-tuple
//!   is the node that received it (the kernel's hash is a pure function of the 5-tuple).
//!
//! [`lab_checks`] are the lab's own claims (the scenario's expected verdict, MetalLB's choice of
//! announcing nodes, consistent evidence); they do not need the trace.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::observe::Observation;
use crate::scenario::{Scenario, CLIENT_IP};
use crate::stats::chi_square;

/// The significance level of every chi-square test.
pub const ALPHA: f64 = 0.001;

/// How strict [`compare_with`] is. [`compare`] uses the defaults: every chi-square test at
/// [`ALPHA`], every predicted category must be observed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareOptions {
    /// Significance level of each chi-square test.
    pub alpha: f64,
    /// A predicted category whose expected count (observations of the split x its
    /// probability) is below this need not be observed, and categories expected fewer than 5
    /// times are left out of the chi-square test (Pearson's approximation needs 5), which then
    /// tests the remaining categories' conditional shares. 0: off.
    pub min_expected: f64,
    /// The fuzz harness's reading of the pod distributions: `distribution.ingress_pods` is
    /// compared whatever the verdicts (only over connections whose pod answered: conntrack
    /// past `SYN_SENT`), and per node the DNAT choice only for nodes that
    /// some pod-reaching branch goes through ([`Prediction::pod_nodes`]).
    pub fuzz_pods: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            alpha: ALPHA,
            min_expected: 0.0,
            fuzz_pods: false,
        }
    }
}

/// What kubepath predicts for one scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// verdict -> probability (sums to 1).
    pub verdicts: BTreeMap<String, f64>,
    /// node -> probability that the client's SYN reaches it.
    pub nodes: BTreeMap<String, f64>,
    /// "ns/name" -> probability that the ingress tier's DNAT picks it.
    pub ingress_pods: BTreeMap<String, f64>,
    /// "ns/name" -> probability that this backend pod answers.
    pub backends: BTreeMap<String, f64>,
    /// Every backend any path reaches, delivered or not (`distribution.backends`): with an
    /// `unknown` share, the backends that may turn out to answer.
    #[serde(default)]
    pub backends_any: BTreeMap<String, f64>,
    /// Whether the ingress pod sees the client's own address (None: not predicted).
    pub client_ip_preserved: Option<bool>,
    /// Entry router -> probability that the client's flow enters there (`entries`).
    #[serde(default)]
    pub entry_routers: BTreeMap<String, f64>,
    /// Entry router -> node -> probability of that next hop given the router (`fabric`).
    #[serde(default)]
    pub router_nodes: BTreeMap<String, BTreeMap<String, f64>>,
    /// Node -> ingress pod -> probability of that DNAT target given the node (`nodes[]`).
    #[serde(default)]
    pub node_pods: BTreeMap<String, BTreeMap<String, f64>>,
    /// The fixes the trace proposes (`fixes[]`), with whether it verified them by simulation.
    #[serde(default)]
    pub fixes: Vec<PredictedFix>,
    /// Nodes of the branches that reach an ingress pod (`branches[]` with `ingress_pods`).
    #[serde(default)]
    pub pod_nodes: BTreeSet<String>,
}

/// `branches[]`: the nodes of every branch that names ingress pods.
fn pod_nodes(v: &serde_json::Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for b in v
        .get("branches")
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
    {
        let reaches = b
            .get("ingress_pods")
            .and_then(|p| p.as_array())
            .is_some_and(|p| !p.is_empty());
        if !reaches {
            continue;
        }
        for n in b
            .get("nodes")
            .and_then(|n| n.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(n) = n.as_str() {
                out.insert(n.to_string());
            }
        }
    }
    out
}

/// One entry of the trace's `fixes[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PredictedFix {
    pub commands: Vec<String>,
    /// `verified`: the trace re-simulated the snapshot with the fix and it delivered.
    pub verified: Option<bool>,
    /// `verification`, e.g. "re-simulated with the fix: delivered 100.0%".
    pub verification: Option<String>,
}

/// `fixes[]`: {commands, verified, verification}.
fn fixes(v: &serde_json::Value) -> Vec<PredictedFix> {
    v.get("fixes")
        .and_then(|f| f.as_array())
        .into_iter()
        .flatten()
        .map(|f| PredictedFix {
            commands: f
                .get("commands")
                .and_then(|c| c.as_array())
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect(),
            verified: f.get("verified").and_then(|b| b.as_bool()),
            verification: f
                .get("verification")
                .and_then(|b| b.as_str())
                .map(str::to_string),
        })
        .collect()
}

fn prob_map(v: Option<&serde_json::Value>) -> Result<BTreeMap<String, f64>, String> {
    let mut m = BTreeMap::new();
    let Some(v) = v else { return Ok(m) };
    if v.is_null() {
        return Ok(m);
    }
    let obj = v
        .as_object()
        .ok_or_else(|| format!("expected an object of probabilities, found {v}"))?;
    for (k, p) in obj {
        let p = p
            .as_f64()
            .ok_or_else(|| format!("`{k}`: expected a number, found {p}"))?;
        m.insert(k.clone(), p);
    }
    Ok(m)
}

/// Whether the trace says the ingress pod sees the client's address: no node outcome that
/// reaches a pod masquerades (`nodes[].outcomes[].masquerade`). None when the trace has no
/// such outcome.
fn client_ip_preserved(v: &serde_json::Value) -> Option<bool> {
    if let Some(b) = v.get("client_ip_preserved").and_then(|b| b.as_bool()) {
        return Some(b);
    }
    let mut any = false;
    let mut masq = false;
    for n in v.get("nodes")?.as_array()? {
        for o in n
            .get("outcomes")
            .and_then(|o| o.as_array())
            .into_iter()
            .flatten()
        {
            let reaches_pod = o.get("pod").is_some_and(|p| !p.is_null())
                || o.get("dnat").is_some_and(|p| !p.is_null());
            if !reaches_pod {
                continue;
            }
            any = true;
            masq |= o
                .get("masquerade")
                .and_then(|m| m.as_bool())
                .unwrap_or(false);
        }
    }
    any.then_some(!masq)
}

/// `entries[]`: {router, probability}.
fn entry_routers(v: &serde_json::Value) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for e in v
        .get("entries")
        .and_then(|e| e.as_array())
        .into_iter()
        .flatten()
    {
        if let (Some(r), Some(p)) = (
            e.get("router").and_then(|r| r.as_str()),
            e.get("probability").and_then(|p| p.as_f64()),
        ) {
            *m.entry(r.to_string()).or_insert(0.0) += p;
        }
    }
    m
}

/// `fabric[]`: {router, next_hops: [{node, probability}]}, the next hop's probability given
/// the router.
fn router_nodes(v: &serde_json::Value) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut m: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for f in v
        .get("fabric")
        .and_then(|f| f.as_array())
        .into_iter()
        .flatten()
    {
        let Some(router) = f.get("router").and_then(|r| r.as_str()) else {
            continue;
        };
        for nh in f
            .get("next_hops")
            .and_then(|n| n.as_array())
            .into_iter()
            .flatten()
        {
            if let (Some(node), Some(p)) = (
                nh.get("node").and_then(|n| n.as_str()),
                nh.get("probability").and_then(|p| p.as_f64()),
            ) {
                *m.entry(router.to_string())
                    .or_default()
                    .entry(node.to_string())
                    .or_insert(0.0) += p;
            }
        }
    }
    m
}

/// `nodes[]`: groups of nodes with identical netfilter results, `{nodes: {name: p} | node:
/// name, outcomes: [{probability, pod}]}`; the outcome probabilities are given the node.
fn node_pods(v: &serde_json::Value) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut m: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for g in v
        .get("nodes")
        .and_then(|n| n.as_array())
        .into_iter()
        .flatten()
    {
        let mut names: Vec<String> = g
            .get("nodes")
            .and_then(|n| n.as_object())
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        if let Some(n) = g.get("node").and_then(|n| n.as_str()) {
            names.push(n.to_string());
        }
        for o in g
            .get("outcomes")
            .and_then(|o| o.as_array())
            .into_iter()
            .flatten()
        {
            let (Some(pod), Some(p)) = (
                o.get("pod").and_then(|p| p.as_str()),
                o.get("probability").and_then(|p| p.as_f64()),
            ) else {
                continue;
            };
            for n in &names {
                *m.entry(n.clone())
                    .or_default()
                    .entry(pod.to_string())
                    .or_insert(0.0) += p;
            }
        }
    }
    m
}

impl Prediction {
    /// Reads the trace's JSON output (`kubepath trace ... --json`).
    pub fn from_trace_json(v: &serde_json::Value) -> Result<Prediction, String> {
        let verdicts = prob_map(v.get("verdicts")).map_err(|e| format!("verdicts: {e}"))?;
        if verdicts.is_empty() {
            return Err("the trace output has no `verdicts`".into());
        }
        let d = v.get("distribution");
        let get = |k: &str| {
            prob_map(d.and_then(|d| d.get(k))).map_err(|e| format!("distribution.{k}: {e}"))
        };
        // The client sees an HTTP error whenever the ingress controller answered with one,
        // whatever kubepath says caused it: the lab's `http-error`.
        let mut verdicts = verdicts;
        if let Some(bs) = v.get("branches").and_then(|b| b.as_array()) {
            for b in bs {
                let status = b.get("http_status").and_then(|s| s.as_u64());
                let (Some(s), Some(name), Some(p)) = (
                    status,
                    b.get("verdict").and_then(|x| x.as_str()),
                    b.get("probability").and_then(|x| x.as_f64()),
                ) else {
                    continue;
                };
                if s == 200 {
                    continue;
                }
                if let Some(m) = verdicts.get_mut(name) {
                    *m -= p;
                }
                *verdicts.entry("http-error".to_string()).or_default() += p;
            }
            verdicts.retain(|_, p| *p > 1e-9);
        }
        // Backends are observed over the delivered connections: read the delivered share
        // when the trace gives it.
        let backends = match d.and_then(|d| d.get("backends_delivered")) {
            Some(_) => get("backends_delivered")?,
            None => get("backends")?,
        };
        let backends_any = get("backends")?;
        Ok(Prediction {
            backends_any,
            verdicts,
            nodes: get("nodes")?,
            ingress_pods: get("ingress_pods")?,
            backends,
            client_ip_preserved: client_ip_preserved(v),
            entry_routers: entry_routers(v),
            router_nodes: router_nodes(v),
            node_pods: node_pods(v),
            fixes: fixes(v),
            pod_nodes: pod_nodes(v),
        })
    }
}

/// Whether an observed verdict agrees with a predicted one. Equal names agree; besides, a
/// predicted `no-endpoints` agrees with what the client sees when the Service has no
/// endpoints: no route (MetalLB withdrew the VIP) or a refusal (kube-proxy's REJECT).
pub fn compatible(predicted: &str, observed: &str) -> bool {
    predicted == observed
        || (predicted == "no-endpoints" && (observed == "no-route" || observed == "refused"))
        || (predicted == "dropped" && observed == "refused")
}

/// One row of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub predicted: String,
    pub observed: String,
    pub ok: bool,
}

/// All checks of one scenario.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Comparison {
    pub scenario: String,
    pub checks: Vec<Check>,
}

impl Comparison {
    pub fn agrees(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    fn push(&mut self, name: impl Into<String>, predicted: String, observed: String, ok: bool) {
        self.checks.push(Check {
            name: name.into(),
            predicted,
            observed,
            ok,
        });
    }

    /// The table `kubepath lab test` prints.
    pub fn table(&self) -> String {
        let w0 = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let w1 = self
            .checks
            .iter()
            .map(|c| c.predicted.len())
            .max()
            .unwrap_or(9)
            .max(9);
        let mut s = String::new();
        let failing = self.checks.iter().filter(|c| !c.ok).count();
        let verdict = if failing == 0 {
            "every check passes".to_string()
        } else {
            format!("{failing} check(s) FAIL")
        };
        let _ = writeln!(s, "scenario {}: {verdict}", self.scenario);
        let _ = writeln!(s, "  {:w0$}  {:w1$}  observed", "check", "predicted");
        for c in &self.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(
                s,
                "  {:w0$}  {:w1$}  {}  [{mark}]",
                c.name, c.predicted, c.observed
            );
        }
        s
    }
}

fn fmt_probs(m: &BTreeMap<String, f64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, p)| format!("{k} {p:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_counts(m: &BTreeMap<String, u64>) -> String {
    let n: u64 = m.values().sum();
    if n == 0 {
        return "none".into();
    }
    m.iter()
        .map(|(k, c)| format!("{k} {:.3} ({c})", *c as f64 / n as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compares a distribution: same set of keys (with probability > 0 / count > 0), and a chi-square
/// test of the counts against the probabilities when there are at least two categories.
fn compare_distribution(
    out: &mut Comparison,
    what: &str,
    predicted: &BTreeMap<String, f64>,
    observed: &BTreeMap<String, u64>,
    opts: &CompareOptions,
) {
    let pset: BTreeSet<&String> = predicted
        .iter()
        .filter(|(_, p)| **p > 0.0)
        .map(|(k, _)| k)
        .collect();
    let oset: BTreeSet<&String> = observed
        .iter()
        .filter(|(_, c)| **c > 0)
        .map(|(k, _)| k)
        .collect();
    let n: u64 = observed.values().sum();
    let total_p: f64 = pset.iter().map(|k| predicted[*k]).sum();
    let expected = |k: &String| {
        if total_p > 0.0 {
            n as f64 * predicted.get(k).copied().unwrap_or(0.0) / total_p
        } else {
            0.0
        }
    };
    let same = if opts.min_expected > 0.0 && n > 0 {
        oset.is_subset(&pset)
            && pset
                .iter()
                .filter(|k| expected(k) >= opts.min_expected)
                .all(|k| oset.contains(k))
    } else {
        pset == oset
    };
    out.push(format!("{what}: set"), fmt_set(&pset), fmt_set(&oset), same);
    let tested: BTreeSet<&String> = if opts.min_expected > 0.0 {
        pset.iter()
            .copied()
            .filter(|k| expected(k) >= 5.0)
            .collect()
    } else {
        pset.clone()
    };
    if same && tested.len() >= 2 {
        let alpha = opts.alpha;
        let keys: Vec<&String> = tested.iter().copied().collect();
        let obs: Vec<u64> = keys
            .iter()
            .map(|k| observed.get(*k).copied().unwrap_or(0))
            .collect();
        let probs: Vec<f64> = keys
            .iter()
            .map(|k| predicted.get(*k).copied().unwrap_or(0.0))
            .collect();
        let r = chi_square(&obs, &probs);
        out.push(
            format!("{what}: shares (chi-square, p >= {alpha})"),
            fmt_probs(predicted),
            format!(
                "{}; X2={:.2} df={} p={:.4}",
                fmt_counts(observed),
                r.statistic,
                r.df,
                r.p_value
            ),
            r.p_value >= alpha,
        );
    }
}

fn fmt_set(s: &BTreeSet<&String>) -> String {
    if s.is_empty() {
        "{}".into()
    } else {
        format!(
            "{{{}}}",
            s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
        )
    }
}

/// Compares kubepath's prediction with the observation.
pub fn compare(pred: &Prediction, obs: &Observation) -> Comparison {
    compare_with(pred, obs, &CompareOptions::default())
}

/// Whether a check is a chi-square test (its row name says so).
pub fn is_chi_square(c: &Check) -> bool {
    c.name.contains("(chi-square") || c.name.contains("(binomial")
}

/// The verdict check when kubepath declares a share `unknown` (a fact a snapshot cannot hold,
/// e.g. which next hop a random-seeded multipath hash picks): the unknown share may be any
/// verdict, so each known verdict's observed count must lie between its predicted share and
/// that share plus the unknown one, and verdicts kubepath did not name must fit in the
/// unknown share (one-sided binomial tests at `alpha` each).
fn verdicts_with_unknown(
    out: &mut Comparison,
    pred: &Prediction,
    observed: &BTreeMap<String, u64>,
    unknown: f64,
    alpha: f64,
) {
    let n: u64 = observed.values().sum();
    let known: Vec<(&String, f64)> = pred
        .verdicts
        .iter()
        .filter(|(k, p)| **p > 0.0 && k.as_str() != "unknown")
        .map(|(k, p)| (k, *p))
        .collect();
    let mut ok = n > 0;
    let mut detail = Vec::new();
    // Bonferroni within the check: two tails per known verdict and the rest.
    let alpha = alpha / (2 * known.len() + 1) as f64;
    for (v, p) in &known {
        let k: u64 = observed
            .iter()
            .filter(|(o, _)| compatible(v, o))
            .map(|(_, c)| *c)
            .sum();
        let low = crate::stats::binomial_cdf(k, n, *p);
        let high = crate::stats::binomial_sf(k, n, (p + unknown).min(1.0));
        if low < alpha || high < alpha {
            ok = false;
        }
        detail.push(format!(
            "{v} {k}/{n} in [{p:.3}, {:.3}]",
            (p + unknown).min(1.0)
        ));
    }
    let unexplained: u64 = observed
        .iter()
        .filter(|(o, _)| !known.iter().any(|(v, _)| compatible(v, o)))
        .map(|(_, c)| *c)
        .sum();
    if crate::stats::binomial_sf(unexplained, n, unknown) < alpha {
        ok = false;
    }
    detail.push(format!("others {unexplained}/{n} <= {unknown:.3}"));
    out.push(
        format!("verdict (binomial, with an unknown share, p >= {alpha:.2e})"),
        fmt_probs(&pred.verdicts),
        format!("{}; {}", fmt_counts(observed), detail.join(", ")),
        ok,
    );
}

/// [`compare`] with explicit strictness.
pub fn compare_with(pred: &Prediction, obs: &Observation, opts: &CompareOptions) -> Comparison {
    let mut out = Comparison {
        scenario: obs.scenario.clone(),
        checks: Vec::new(),
    };
    let observed_verdicts = obs.verdicts();

    // Verdicts, by compatibility. A share kubepath declares `unknown` may be any verdict.
    let unknown = pred.verdicts.get("unknown").copied().unwrap_or(0.0);
    if unknown > 0.0 {
        verdicts_with_unknown(&mut out, pred, &observed_verdicts, unknown, opts.alpha);
    }
    let pv: Vec<(&String, f64)> = pred
        .verdicts
        .iter()
        .filter(|(_, p)| **p > 0.0)
        .map(|(k, p)| (k, *p))
        .collect();
    let every_observed_explained = observed_verdicts
        .keys()
        .all(|o| pv.iter().any(|(p, _)| compatible(p, o)));
    let n_obs: u64 = observed_verdicts.values().sum();
    let every_predicted_seen = pv.iter().all(|(p, share)| {
        (opts.min_expected > 0.0 && (n_obs as f64) * share < opts.min_expected)
            || observed_verdicts
                .iter()
                .any(|(o, c)| *c > 0 && compatible(p, o))
    });
    if unknown <= 0.0 {
        out.push(
            "verdict",
            fmt_probs(&pred.verdicts),
            fmt_counts(&observed_verdicts),
            every_observed_explained && every_predicted_seen && !pv.is_empty(),
        );
    }
    let pv: Vec<(&String, f64)> = if opts.min_expected > 0.0 {
        pv.into_iter()
            .filter(|(_, share)| (n_obs as f64) * share >= 5.0)
            .collect()
    } else {
        pv
    };
    if unknown <= 0.0 && pv.len() >= 2 && every_observed_explained && every_predicted_seen {
        let alpha = opts.alpha;
        let obs_counts: Vec<u64> = pv
            .iter()
            .map(|(p, _)| {
                observed_verdicts
                    .iter()
                    .filter(|(o, _)| compatible(p, o))
                    .map(|(_, c)| *c)
                    .sum()
            })
            .collect();
        let probs: Vec<f64> = pv.iter().map(|(_, p)| *p).collect();
        let r = chi_square(&obs_counts, &probs);
        out.push(
            format!("verdict: shares (chi-square, p >= {alpha})"),
            fmt_probs(&pred.verdicts),
            format!("X2={:.2} df={} p={:.4}", r.statistic, r.df, r.p_value),
            r.p_value >= alpha,
        );
    }

    // Entry routers, and each router's choice of node.
    if !pred.entry_routers.is_empty() {
        compare_distribution(
            &mut out,
            "entry routers",
            &pred.entry_routers,
            &obs.leaves(),
            opts,
        );
        for (router, nodes) in &pred.router_nodes {
            if pred.entry_routers.get(router).copied().unwrap_or(0.0) <= 0.0 {
                continue;
            }
            let observed = obs.nodes_via(router);
            compare_distribution(
                &mut out,
                &format!("nodes via {router}"),
                nodes,
                &observed,
                opts,
            );
        }
    }

    // Nodes.
    compare_distribution(&mut out, "nodes", &pred.nodes, &obs.nodes(), opts);

    // Ingress pods: only where the SYN is predicted to reach a pod at all.
    // The trace's ingress pod distribution holds exactly the paths on which the SYN reached an
    // ingress pod, whatever happened to the reply afterwards (a `no-route` on the way back
    // reached the pod; one on the way there did not).
    let pod_mass: f64 = pred.ingress_pods.values().sum();
    let pods_pred = if pod_mass > 0.0 || opts.fuzz_pods {
        pred.ingress_pods.clone()
    } else {
        BTreeMap::new()
    };
    let observed_pods = if opts.fuzz_pods {
        let mut m = BTreeMap::new();
        for c in &obs.connections {
            // Reached: the pod answered (its SYN-ACK moved the node's conntrack entry past
            // SYN_SENT), or it holds the connection in SYN-RECV (it got the SYN but its
            // answer never left, e.g. its gateway's proxy ARP failed).
            let unanswered = matches!(c.verdict.as_str(), "rp-filter" | "refused")
                || c.conntrack_state.as_deref() == Some("SYN_SENT");
            if unanswered && !c.pod_syn_recv {
                continue;
            }
            if let Some(p) = &c.ingress_pod {
                *m.entry(p.clone()).or_insert(0) += 1;
            }
        }
        m
    } else {
        obs.ingress_pods()
    };
    compare_distribution(&mut out, "ingress pods", &pods_pred, &observed_pods, opts);
    // Per node: which pods its DNAT picks (e.g. only the local one with externalTrafficPolicy
    // Local).
    if pod_mass > 0.0 || opts.fuzz_pods {
        for (node, pods) in &pred.node_pods {
            if pred.nodes.get(node).copied().unwrap_or(0.0) <= 0.0 {
                continue;
            }
            if opts.fuzz_pods && !pred.pod_nodes.contains(node) {
                continue;
            }
            compare_distribution(
                &mut out,
                &format!("ingress pods via {node}"),
                pods,
                &obs.pods_via_node(node),
                opts,
            );
        }
    }

    // Backends: only over delivered connections. With an unknown share, any backend a path
    // reaches may answer: only the set is checked, as a subset.
    if unknown > 0.0 {
        let any: BTreeSet<&String> = pred.backends_any.keys().collect();
        let seen = obs.backends();
        let oset: BTreeSet<&String> = seen
            .iter()
            .filter(|(_, c)| **c > 0)
            .map(|(k, _)| k)
            .collect();
        out.push(
            "backends: set (within those any path reaches)",
            fmt_set(&any),
            fmt_set(&oset),
            oset.is_subset(&any),
        );
    }
    let delivered = pred.verdicts.get("delivered").copied().unwrap_or(0.0);
    let backends_pred = if delivered > 0.0 {
        pred.backends.clone()
    } else {
        BTreeMap::new()
    };
    if unknown <= 0.0 {
        compare_distribution(&mut out, "backends", &backends_pred, &obs.backends(), opts);
    }

    // Client address as the ingress pod saw it.
    if let Some(preserved) = pred.client_ip_preserved {
        let seen: BTreeSet<String> = obs
            .connections
            .iter()
            .filter_map(|c| c.seen_client.clone())
            .collect();
        if !seen.is_empty() {
            let obs_preserved = seen.iter().all(|s| *s == CLIENT_IP.to_string());
            out.push(
                "client IP preserved",
                preserved.to_string(),
                format!(
                    "{obs_preserved} (seen: {})",
                    seen.into_iter().collect::<Vec<_>>().join(", ")
                ),
                preserved == obs_preserved,
            );
        }
    }

    ecmp_check(&mut out, obs);
    out
}

/// Every connection's node is the one `ip route get` on the edge and the leaf names.
fn ecmp_check(out: &mut Comparison, obs: &Observation) {
    let with_node: Vec<_> = obs
        .connections
        .iter()
        .filter(|c| c.node.is_some() || c.route_get_node.is_some())
        .collect();
    let leaf_ok = obs
        .connections
        .iter()
        .filter(|c| c.leaf.is_some())
        .filter(|c| c.route_get_leaf == c.leaf)
        .count();
    let leaf_total = obs.connections.iter().filter(|c| c.leaf.is_some()).count();
    out.push(
        "ECMP edge -> leaf per source port (ip route get)",
        format!("{leaf_total} connections"),
        format!("{leaf_ok}/{leaf_total} as predicted"),
        leaf_ok == leaf_total,
    );
    if !with_node.is_empty() {
        let ok = with_node
            .iter()
            .filter(|c| c.route_get_node == c.node)
            .count();
        out.push(
            "ECMP leaf -> node per source port (ip route get)",
            format!("{} connections", with_node.len()),
            format!("{ok}/{} as predicted", with_node.len()),
            ok == with_node.len(),
        );
    }
}

/// The lab's own claims about a scenario, checked against what the kernel did.
pub fn lab_checks(scenario: &Scenario, obs: &Observation) -> Comparison {
    let mut out = Comparison {
        scenario: format!("{} (lab)", scenario.name),
        checks: Vec::new(),
    };
    let v = obs.verdicts();
    let n = obs.connections.len();
    let all = v.get(scenario.expected_verdict).copied().unwrap_or(0) as usize;
    out.push(
        "every connection has the scenario's verdict",
        format!("{} x{n}", scenario.expected_verdict),
        fmt_counts(&v),
        all == n && n > 0,
    );
    let announcing: BTreeSet<String> = scenario
        .announcing_nodes()
        .iter()
        .map(|n| n.om_ip.to_string())
        .collect();
    for (leaf, hops) in &obs.leaf_nexthops {
        let got: BTreeSet<String> = hops.iter().cloned().collect();
        out.push(
            format!("{leaf}: VIP next hops = MetalLB's announcing nodes"),
            format!("{announcing:?}"),
            format!("{got:?}"),
            got == announcing,
        );
    }
    let nodes: BTreeSet<String> = obs.nodes().into_keys().collect();
    let expect_nodes: BTreeSet<String> = scenario
        .announcing_nodes()
        .iter()
        .map(|n| n.name.clone())
        .collect();
    // Each leaf spreads its own flows evenly over its next hops (distinct hash seeds per
    // router; see docs/lab.md on polarization).
    if expect_nodes.len() >= 2 {
        for l in &scenario.leaves {
            let got = obs.nodes_via(l.name);
            let counts: Vec<u64> = expect_nodes
                .iter()
                .map(|n| got.get(n).copied().unwrap_or(0))
                .collect();
            let r = crate::stats::chi_square(&counts, &vec![1.0; counts.len()]);
            out.push(
                format!("{}: nodes uniform (chi-square, p >= {ALPHA})", l.name),
                format!("1/{} each", expect_nodes.len()),
                format!("{}; p={:.4}", fmt_counts(&got), r.p_value),
                r.p_value >= ALPHA && got.keys().all(|k| expect_nodes.contains(k)),
            );
        }
    }
    out.push(
        "nodes receiving SYNs",
        format!("{expect_nodes:?}"),
        format!("{nodes:?}"),
        nodes == expect_nodes,
    );
    // Where the SYN-ACKs went: the traffic router without the fix (the seed's signature; in the
    // leak scenarios the router of the same VRF name that has no route back), the anycast
    // gateway's leaf with it, nowhere when the SYN never reaches a pod.
    let expected_return: Vec<String> =
        if scenario.syn_dropped_by_rp_filter() || !scenario.ingress_has_endpoints {
            Vec::new()
        } else if scenario.return_route_fix {
            scenario
                .leaves
                .iter()
                .filter(|l| l.anycast)
                .map(|l| l.name.to_string())
                .collect()
        } else {
            vec!["trafgw".to_string()]
        };
    let mut synack: BTreeMap<String, u64> = BTreeMap::new();
    for c in &obs.connections {
        for r in &c.synack_seen_at {
            *synack.entry(r.clone()).or_insert(0) += 1;
        }
    }
    let expect_counts: BTreeMap<String, u64> = expected_return
        .iter()
        .map(|r| (r.clone(), n as u64))
        .collect();
    out.push(
        "SYN-ACKs seen by router (nftables)",
        if expect_counts.is_empty() {
            "none".into()
        } else {
            format!("{expect_counts:?}")
        },
        if synack.is_empty() {
            "none".into()
        } else {
            format!("{synack:?}")
        },
        synack == expect_counts,
    );
    // The traffic router: the scenario's VRF name and no route back to the client (issue #9's
    // r2: `ip route get` says Network is unreachable).
    for (r, rr) in &obs.return_routers {
        out.push(
            format!("{r}: VRF, route to {CLIENT_IP} (ip route get)"),
            format!("{}, unreachable", scenario.traffic_vrf),
            format!(
                "{}, {}",
                rr.vrf,
                rr.route_to_client.as_deref().unwrap_or("unreachable")
            ),
            rr.vrf == scenario.traffic_vrf && rr.route_to_client.is_none(),
        );
    }
    let rp_total: u64 = obs.rp_filter_drops.values().sum();
    let rp_conns = v.get("rp-filter").copied().unwrap_or(0);
    let strict_drop = scenario.syn_dropped_by_rp_filter();
    out.push(
        "IPReversePathFilter (all nodes)",
        if strict_drop {
            format!(">= {n} (one per SYN, retransmissions more)")
        } else {
            "0".into()
        },
        rp_total.to_string(),
        if strict_drop {
            rp_total >= rp_conns && rp_conns as usize == n
        } else {
            rp_total == 0
        },
    );
    out.push(
        "consistent evidence",
        "no anomalies".into(),
        if obs.anomalies.is_empty() {
            "no anomalies".into()
        } else {
            obs.anomalies.join("; ")
        },
        obs.anomalies.is_empty(),
    );
    ecmp_check(&mut out, obs);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{ConnObservation, Outcome};

    fn conn(
        sport: u16,
        verdict: &str,
        node: Option<&str>,
        pod: Option<&str>,
        backend: Option<&str>,
    ) -> ConnObservation {
        ConnObservation {
            sport,
            outcome: Outcome::Timeout,
            verdict: verdict.into(),
            leaf: Some("leaf-a".into()),
            node: node.map(String::from),
            ingress_pod: pod.map(String::from),
            backend_pod: backend.map(String::from),
            seen_client: None,
            synack_seen_at: vec![],
            conntrack_state: None,
            route_get_leaf: Some("leaf-a".into()),
            route_get_node: node.map(String::from),
            pod_syn_recv: false,
        }
    }

    fn obs(conns: Vec<ConnObservation>) -> Observation {
        Observation {
            scenario: "t".into(),
            connections: conns,
            rp_filter_drops: BTreeMap::new(),
            leaf_nexthops: BTreeMap::new(),
            anomalies: vec![],
            return_routers: BTreeMap::new(),
        }
    }

    fn delivered_obs() -> Observation {
        let nodes = ["node-1", "node-2", "node-3"];
        let pods = ["i/a", "i/b"];
        let backs = ["w/0", "w/1"];
        obs((0..300u16)
            .map(|i| {
                conn(
                    40000 + i,
                    "delivered",
                    Some(nodes[i as usize % 3]),
                    Some(pods[i as usize % 2]),
                    Some(backs[(i as usize / 2) % 2]),
                )
            })
            .collect())
    }

    fn map(kv: &[(&str, f64)]) -> BTreeMap<String, f64> {
        kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn right_prediction() -> Prediction {
        Prediction {
            verdicts: map(&[("delivered", 1.0)]),
            nodes: map(&[
                ("node-1", 1.0 / 3.0),
                ("node-2", 1.0 / 3.0),
                ("node-3", 1.0 / 3.0),
            ]),
            ingress_pods: map(&[("i/a", 0.5), ("i/b", 0.5)]),
            backends: map(&[("w/0", 0.5), ("w/1", 0.5)]),
            client_ip_preserved: None,
            ..Default::default()
        }
    }

    #[test]
    fn agreement() {
        let c = compare(&right_prediction(), &delivered_obs());
        assert!(c.agrees(), "{}", c.table());
    }

    #[test]
    fn wrong_verdict_is_caught() {
        let mut p = right_prediction();
        p.verdicts = map(&[("asymmetric-return", 1.0)]);
        let c = compare(&p, &delivered_obs());
        assert!(!c.agrees());
        assert!(c.table().contains("check(s) FAIL"));
    }

    #[test]
    fn wrong_shares_are_caught() {
        let mut p = right_prediction();
        p.nodes = map(&[("node-1", 0.8), ("node-2", 0.1), ("node-3", 0.1)]);
        let c = compare(&p, &delivered_obs());
        assert!(!c.agrees(), "{}", c.table());
    }

    #[test]
    fn wrong_set_is_caught() {
        let mut p = right_prediction();
        p.ingress_pods = map(&[("i/a", 1.0)]);
        assert!(!compare(&p, &delivered_obs()).agrees());
    }

    #[test]
    fn pods_compared_by_the_traces_own_pod_distribution() {
        // rp-filter: the trace reaches no pod (empty distribution), nor does the kernel.
        let o = obs((0..30u16)
            .map(|i| conn(40000 + i, "rp-filter", Some("node-1"), None, None))
            .collect());
        let p = Prediction {
            verdicts: map(&[("rp-filter", 1.0)]),
            nodes: map(&[("node-1", 1.0)]),
            ..Default::default()
        };
        assert!(compare(&p, &o).agrees(), "{}", compare(&p, &o).table());
        // A pod predicted where none is reached is a disagreement.
        let wrong = Prediction {
            ingress_pods: map(&[("i/a", 1.0)]),
            ..p.clone()
        };
        assert!(!compare(&wrong, &o).agrees());
        // no-route on the way back: the SYN reached the pod, and the pod set is compared.
        let o = obs((0..30u16)
            .map(|i| conn(40000 + i, "no-route", Some("node-1"), Some("i/a"), None))
            .collect());
        let p = Prediction {
            verdicts: map(&[("no-route", 1.0)]),
            nodes: map(&[("node-1", 1.0)]),
            ingress_pods: map(&[("i/a", 1.0)]),
            ..Default::default()
        };
        assert!(compare(&p, &o).agrees(), "{}", compare(&p, &o).table());
        let missing = Prediction {
            ingress_pods: BTreeMap::new(),
            ..p
        };
        assert!(!compare(&missing, &o).agrees());
    }

    #[test]
    fn no_endpoints_equivalences() {
        assert!(compatible("no-endpoints", "no-route"));
        assert!(compatible("no-endpoints", "refused"));
        assert!(!compatible("delivered", "no-route"));
    }

    #[test]
    fn an_answer_from_the_ingress_with_an_error_status_is_the_labs_http_error() {
        let v = serde_json::json!({
            "verdicts": {"delivered": 0.5, "rp-filter": 0.5},
            "distribution": {"nodes": {"node-1": 1.0}, "ingress_pods": {"i/a": 1.0},
                             "backends": {"w/0": 0.5, "w/1": 0.5},
                             "backends_delivered": {"w/1": 0.5}},
            "branches": [
                {"verdict": "delivered", "probability": 0.5, "http_status": 200},
                {"verdict": "rp-filter", "probability": 0.5, "http_status": 504}]
        });
        let p = Prediction::from_trace_json(&v).unwrap();
        assert_eq!(
            p.verdicts,
            BTreeMap::from([
                ("delivered".to_string(), 0.5),
                ("http-error".to_string(), 0.5)
            ])
        );
        // Backends are compared over the delivered connections.
        assert_eq!(p.backends, BTreeMap::from([("w/1".to_string(), 0.5)]));
        // A trace without `backends_delivered` (older) falls back to `backends`.
        let mut old = v.clone();
        old["distribution"]
            .as_object_mut()
            .unwrap()
            .remove("backends_delivered");
        assert_eq!(Prediction::from_trace_json(&old).unwrap().backends.len(), 2);
    }

    #[test]
    fn an_unknown_share_may_be_any_verdict_but_no_more() {
        let v = serde_json::json!({
            "verdicts": {"no-route": 0.5, "rp-filter": 0.25, "unknown": 0.25},
            "distribution": {"nodes": {}, "ingress_pods": {}, "backends": {}}
        });
        let p = Prediction::from_trace_json(&v).unwrap();
        let run = |counts: &[(&str, u64)]| {
            let obs: BTreeMap<String, u64> =
                counts.iter().map(|(k, c)| (k.to_string(), *c)).collect();
            let mut out = Comparison::default();
            verdicts_with_unknown(&mut out, &p, &obs, 0.25, 1e-3);
            assert_eq!(out.checks.len(), 1);
            out.checks[0].ok
        };
        // Fuzz seed 3: the unknown quarter turned out half delivered, half no-route.
        assert!(run(&[
            ("delivered", 54),
            ("no-route", 122),
            ("rp-filter", 64)
        ]));
        assert!(run(&[("no-route", 180), ("rp-filter", 60)]));
        // More delivered than the unknown share allows, or too few no-route.
        assert!(!run(&[
            ("delivered", 120),
            ("no-route", 60),
            ("rp-filter", 60)
        ]));
        assert!(!run(&[
            ("delivered", 60),
            ("no-route", 60),
            ("rp-filter", 120)
        ]));
    }

    #[test]
    fn ecmp_mismatch_is_caught() {
        let mut o = delivered_obs();
        o.connections[7].route_get_node = Some("node-3".into());
        o.connections[7].node = Some("node-2".into());
        assert!(!compare(&right_prediction(), &o).agrees());
    }

    #[test]
    fn trace_json() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"verdicts": {"asymmetric-return": 1.0},
                "distribution": {"nodes": {"node-1": 0.5, "node-2": 0.5},
                                 "ingress_pods": {"ingress-nginx/a": 1.0},
                                 "backends": {}},
                "branches": []}"#,
        )
        .unwrap();
        let p = Prediction::from_trace_json(&v).unwrap();
        assert_eq!(p.verdicts["asymmetric-return"], 1.0);
        assert_eq!(p.nodes.len(), 2);
        assert_eq!(p.ingress_pods["ingress-nginx/a"], 1.0);
        assert_eq!(p.client_ip_preserved, None);
        assert!(p.entry_routers.is_empty());
        let fabric = serde_json::json!({
            "verdicts": {"delivered": 1.0},
            "entries": [{"router": "leaf-a", "vrf": "om_vr", "probability": 0.5},
                        {"router": "leaf-b", "vrf": "om_vr", "probability": 0.5}],
            "fabric": [{"router": "leaf-a", "vrf": "om_vr", "next_hops": [
                {"address": "10.33.151.68", "node": "node-1", "probability": 0.5},
                {"address": "10.33.151.69", "node": "node-2", "probability": 0.5},
                {"address": "10.33.151.99", "node": null, "probability": 0.0}]}]
        });
        let f = Prediction::from_trace_json(&fabric).unwrap();
        assert_eq!(f.entry_routers["leaf-b"], 0.5);
        assert_eq!(f.router_nodes["leaf-a"]["node-2"], 0.5);
        assert_eq!(f.router_nodes["leaf-a"].len(), 2);
        let groups = serde_json::json!({
            "verdicts": {"delivered": 1.0},
            "nodes": [
                {"nodes": {"node-1": 0.25, "node-2": 0.25}, "probability": 0.5, "outcomes": [
                    {"probability": 0.5, "pod": "i/a"}, {"probability": 0.5, "pod": "i/b"}]},
                {"node": "node-3", "probability": 0.5, "outcomes": [
                    {"probability": 1.0, "pod": "i/a"}, {"probability": 0.0, "pod": null}]}]
        });
        let g = Prediction::from_trace_json(&groups).unwrap();
        assert_eq!(g.node_pods["node-2"]["i/b"], 0.5);
        assert_eq!(g.node_pods["node-3"].len(), 1);
        assert!(Prediction::from_trace_json(&serde_json::json!({})).is_err());
        let local = serde_json::json!({
            "verdicts": {"delivered": 1.0},
            "nodes": [{"node": "node-1", "outcomes": [
                {"probability": 1.0, "verdict": "accept", "dnat": "192.168.1.10:80", "masquerade": false, "pod": "ingress-nginx/a"}]}]
        });
        assert_eq!(
            Prediction::from_trace_json(&local)
                .unwrap()
                .client_ip_preserved,
            Some(true)
        );
        let cluster = serde_json::json!({
            "verdicts": {"delivered": 1.0},
            "nodes": [{"node": "node-1", "outcomes": [
                {"dnat": "192.168.1.10:80", "masquerade": true, "pod": "ingress-nginx/a"},
                {"dnat": null, "masquerade": false, "pod": null}]}]
        });
        assert_eq!(
            Prediction::from_trace_json(&cluster)
                .unwrap()
                .client_ip_preserved,
            Some(false)
        );
        assert!(Prediction::from_trace_json(&serde_json::json!({"verdicts": {"x": "y"}})).is_err());
        let fx = serde_json::json!({
            "verdicts": {"rp-filter": 1.0},
            "fixes": [{"description": "d", "commands": ["sysctl -w net.ipv4.conf.ccd_ecfe_om.rp_filter=2"],
                       "nodes": ["node-1"], "verified": true,
                       "verification": "re-simulated with the fix: delivered 100.0%"}]
        });
        let f = Prediction::from_trace_json(&fx).unwrap().fixes;
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].verified, Some(true));
        assert_eq!(
            f[0].commands,
            ["sysctl -w net.ipv4.conf.ccd_ecfe_om.rp_filter=2"]
        );
    }
}
