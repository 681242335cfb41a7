//! `kubepath lab test`: for each scenario, build it, observe it, snapshot it, ask kubepath for
//! its prediction on that snapshot, compare, tear down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::compare::{compare, lab_checks, Check, Comparison, Prediction};
use crate::lab::{Lab, LabOptions};
use crate::observe::{observe, Observation, ObserveOptions};
use crate::scenario::{Scenario, CLIENT_IP, CLIENT_PREFIX, HOST};
use crate::sh::{io_err, LabError, Result};
use crate::snapshot;

/// Produces kubepath's prediction for a snapshot.
pub trait Predictor {
    /// `snapshot` is the snapshot directory; the question is always the lab's client to
    /// `http://lab.kubepath.test/`.
    fn predict(&self, snapshot: &Path) -> std::result::Result<Prediction, String>;

    /// `kubepath check --json` of the snapshot (every finding, severity info and above).
    fn check(&self, _snapshot: &Path) -> std::result::Result<serde_json::Value, String> {
        Err("this predictor does not run `kubepath check`".into())
    }
}

/// Runs `EXE trace SNAPSHOT --from 10.210.150.87 --to http://lab.kubepath.test/ --json` and
/// reads its JSON (exit code 0 or 1: answered; anything else is an error).
pub struct TraceCli {
    pub exe: PathBuf,
}

impl Predictor for TraceCli {
    fn predict(&self, snapshot: &Path) -> std::result::Result<Prediction, String> {
        let out = Command::new(&self.exe)
            .arg("trace")
            .arg(snapshot)
            .args(["--from", &CLIENT_IP.to_string()])
            .args(["--to", &format!("http://{HOST}/")])
            .arg("--json")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.exe.display()))?;
        let code = out.status.code();
        if !matches!(code, Some(0) | Some(1)) {
            return Err(format!(
                "`{} trace` failed ({}): {}",
                self.exe.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("`kubepath trace --json` printed no valid JSON: {e}"))?;
        Prediction::from_trace_json(&v)
    }

    fn check(&self, snapshot: &Path) -> std::result::Result<serde_json::Value, String> {
        let out = Command::new(&self.exe)
            .arg("check")
            .arg(snapshot)
            .args(["--severity", "info", "--json"])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.exe.display()))?;
        if !matches!(out.status.code(), Some(0) | Some(1)) {
            return Err(format!(
                "`{} check` failed ({}): {}",
                self.exe.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("`kubepath check --json` printed no valid JSON: {e}"))
    }
}

/// `kubepath check` against what the scenario is built to show: its most severe finding must
/// be the scenario's fault ([`Scenario::expected_finding`]: the code, and a phrase of its title
/// or explanation), and a healthy scenario must have no finding of severity error or above.
pub fn check_comparison(
    scenario: &Scenario,
    report: std::result::Result<serde_json::Value, String>,
) -> Comparison {
    let mut c = Comparison {
        scenario: format!("{}, kubepath check", scenario.name),
        checks: Vec::new(),
    };
    let v = match report {
        Ok(v) => v,
        Err(e) => {
            c.checks.push(Check {
                name: "kubepath check on the lab's snapshot".into(),
                predicted: format!("unavailable: {e}"),
                observed: "-".into(),
                ok: false,
            });
            return c;
        }
    };
    let findings = v
        .get("findings")
        .and_then(|f| f.as_array())
        .cloned()
        .unwrap_or_default();
    let field = |f: &serde_json::Value, k: &str| {
        f.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let describe = |f: &serde_json::Value| {
        format!(
            "{} {}: {}",
            field(f, "severity"),
            field(f, "code"),
            field(f, "title")
        )
    };
    match scenario.expected_finding {
        Some((code, phrase)) => {
            let top = findings.first();
            let ok = top.is_some_and(|f| {
                field(f, "code") == code
                    && (field(f, "title").contains(phrase)
                        || field(f, "explanation").contains(phrase))
            });
            c.checks.push(Check {
                name: "most severe finding (the scenario's fault)".into(),
                predicted: top.map(describe).unwrap_or_else(|| "no finding".into()),
                observed: format!("{code} naming `{phrase}`"),
                ok,
            });
        }
        None => {
            let serious: Vec<String> = findings
                .iter()
                .filter(|f| matches!(field(f, "severity").as_str(), "error" | "critical"))
                .map(describe)
                .collect();
            c.checks.push(Check {
                name: "findings of severity error or above (a healthy scenario)".into(),
                predicted: if serious.is_empty() {
                    "none".into()
                } else {
                    serious.join("; ")
                },
                observed: "none".into(),
                ok: serious.is_empty(),
            });
        }
    }
    c
}

/// The result of one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    pub scenario: String,
    pub observation: Observation,
    /// The lab's own claims.
    pub lab: Comparison,
    /// kubepath's prediction against the observation (None: no predictor given).
    pub trace: Option<Comparison>,
    /// kubepath's prediction itself (None: no predictor, or it failed).
    pub prediction: Option<Prediction>,
    /// `kubepath check` on the snapshot against the scenario's fault (None: no predictor).
    pub check: Option<Comparison>,
    /// For `seed-fixed` and `rp-filter-strict`: the prediction on a deliberately wrong copy of
    /// the snapshot must disagree ([`negative_mutation`]).
    pub negative: Option<Comparison>,
    pub snapshot: PathBuf,
    pub seconds: f64,
}

impl ScenarioReport {
    pub fn agrees(&self) -> bool {
        self.lab.agrees()
            && self.trace.as_ref().is_none_or(Comparison::agrees)
            && self.negative.as_ref().is_none_or(Comparison::agrees)
            && self.check.as_ref().is_none_or(Comparison::agrees)
    }

    pub fn table(&self) -> String {
        let mut s = self.lab.table();
        if let Some(t) = &self.trace {
            s.push_str(&t.table());
        }
        if let Some(n) = &self.negative {
            s.push_str(&n.table());
        }
        if let Some(c) = &self.check {
            s.push_str(&c.table());
        }
        s
    }
}

fn failed_prediction(scenario: &str, why: String) -> Comparison {
    Comparison {
        scenario: scenario.to_string(),
        checks: vec![Check {
            name: "kubepath trace on the lab's snapshot".into(),
            predicted: format!("unavailable: {why}"),
            observed: "-".into(),
            ok: false,
        }],
    }
}

/// Removes the client's /32 return route from every node's `ip -j route` in a copy of the
/// snapshot (the deliberately wrong input of the negative check).
pub fn drop_fix(snapshot: &Path, copy: &Path) -> Result<usize> {
    copy_dir(snapshot, copy)?;
    let mut removed = 0;
    let nodes = copy.join("nodes");
    for e in std::fs::read_dir(&nodes)
        .map_err(io_err(nodes.display()))?
        .flatten()
    {
        let f = e.path().join("ip-route.json");
        let text = std::fs::read_to_string(&f).map_err(io_err(f.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| LabError::Other(format!("{}: {e}", f.display())))?;
        let routes = v.as_array().cloned().unwrap_or_default();
        let client = [CLIENT_IP.to_string(), CLIENT_PREFIX.to_string()];
        let kept: Vec<_> = routes
            .into_iter()
            .filter(|r| {
                let is_fix = r
                    .get("dst")
                    .and_then(|d| d.as_str())
                    .is_some_and(|d| client.iter().any(|c| c == d))
                    && r.get("gateway").is_some();
                if is_fix {
                    removed += 1;
                }
                !is_fix
            })
            .collect();
        let text = serde_json::to_string(&kept).map_err(|e| LabError::Other(e.to_string()))?;
        std::fs::write(&f, text).map_err(io_err(f.display()))?;
    }
    Ok(removed)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(io_err(to.display()))?;
    for e in std::fs::read_dir(from)
        .map_err(io_err(from.display()))?
        .flatten()
    {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dest)?;
        } else {
            std::fs::copy(&p, &dest).map_err(io_err(p.display()))?;
        }
    }
    Ok(())
}

/// A deliberately wrong input: a function that copies the snapshot and changes it so that a
/// correct kubepath must predict something other than what the lab observed.
type Mutation = fn(&Path, &Path) -> Result<usize>;

/// The negative checks: `seed-fixed` without its /32 routes (kubepath must predict the seed's
/// asymmetric return), `rp-filter-strict` with rp_filter relaxed in the node sysctls (kubepath
/// must predict the SYN to pass).
pub fn negative_mutation(scenario: &str) -> Option<(&'static str, Mutation)> {
    match scenario {
        "seed-fixed" => Some(("without the /32 fix", drop_fix as Mutation)),
        "rp-filter-strict" => Some((
            "with rp_filter 0 on ccd_ecfe_om",
            relax_rp_filter as Mutation,
        )),
        _ => None,
    }
}

fn negative_check(
    name: &str,
    what: &str,
    changed: usize,
    p: &dyn Predictor,
    wrong: &Path,
    observation: &Observation,
) -> Comparison {
    let mut c = Comparison {
        scenario: format!("{name}, negative check (its snapshot {what} must disagree)"),
        checks: Vec::new(),
    };
    match p.predict(wrong) {
        Ok(pred) => {
            let cmp = compare(&pred, observation);
            let failing: Vec<String> = cmp
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.name.clone())
                .collect();
            c.checks.push(Check {
                name: format!("wrong prediction caught ({changed} entries changed)"),
                predicted: "disagreement".into(),
                observed: if failing.is_empty() {
                    "the comparison agreed".into()
                } else {
                    format!("disagreement in: {}", failing.join(", "))
                },
                ok: !failing.is_empty() && changed > 0,
            });
        }
        Err(e) => c.checks.push(Check {
            name: "wrong prediction caught".into(),
            predicted: format!("unavailable: {e}"),
            observed: "-".into(),
            ok: false,
        }),
    }
    c
}

/// Sets `net.ipv4.conf.ccd_ecfe_om.rp_filter` to 0 in every node's `sysctl` output of a copy of
/// the snapshot.
pub fn relax_rp_filter(snapshot: &Path, copy: &Path) -> Result<usize> {
    copy_dir(snapshot, copy)?;
    let key = format!("net.ipv4.conf.{}.rp_filter", crate::scenario::NODE_OM_IF);
    let mut changed = 0;
    let nodes = copy.join("nodes");
    for e in std::fs::read_dir(&nodes)
        .map_err(io_err(nodes.display()))?
        .flatten()
    {
        let f = e.path().join("sysctl.txt");
        let text = std::fs::read_to_string(&f).map_err(io_err(f.display()))?;
        let mut out = String::new();
        for line in text.lines() {
            match line.split_once('=') {
                Some((k, v)) if k.trim() == key && v.trim() != "0" => {
                    out.push_str(&format!("{key} = 0\n"));
                    changed += 1;
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        std::fs::write(&f, out).map_err(io_err(f.display()))?;
    }
    Ok(changed)
}

/// Builds, observes, snapshots (into `snapshot_root/<scenario>`), predicts, compares and tears
/// down one scenario.
pub fn run_scenario(
    name: &str,
    lab_opts: &LabOptions,
    obs_opts: &ObserveOptions,
    snapshot_root: &Path,
    predictor: Option<&dyn Predictor>,
) -> Result<ScenarioReport> {
    let start = Instant::now();
    let scenario = Scenario::by_name(name)?;
    let lab = Lab::up(scenario.clone(), lab_opts)?;
    let observation = observe(&lab, obs_opts)?;
    let snap = snapshot_root.join(name);
    if snap.exists() {
        std::fs::remove_dir_all(&snap).map_err(io_err(snap.display()))?;
    }
    snapshot::collect(&lab, &snap)?;
    lab.down()?;

    let lab_cmp = lab_checks(&scenario, &observation);
    let mut trace = None;
    let mut negative = None;
    let mut prediction = None;
    let mut check = None;
    if let Some(p) = predictor {
        check = Some(check_comparison(&scenario, p.check(&snap)));
        trace = Some(match p.predict(&snap) {
            Ok(pred) => {
                let c = compare(&pred, &observation);
                prediction = Some(pred);
                c
            }
            Err(e) => failed_prediction(name, e),
        });
        if let Some((what, mutate)) = negative_mutation(name) {
            let wrong = snapshot_root.join(format!("{name}-wrong"));
            if wrong.exists() {
                std::fs::remove_dir_all(&wrong).map_err(io_err(wrong.display()))?;
            }
            let changed = mutate(&snap, &wrong)?;
            negative = Some(negative_check(name, what, changed, p, &wrong, &observation));
        }
    }
    Ok(ScenarioReport {
        scenario: name.to_string(),
        observation,
        lab: lab_cmp,
        trace,
        prediction,
        check,
        negative,
        snapshot: snap,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The lab scenario that is `base` with the fix `commands` applied, when the lab builds one:
/// `strict-leak` + the rp_filter-only sysctls is `strict-leak-rpfix`, `strict-leak` + the /32
/// route back via leaf-a (its own om address or the anycast gateway it holds) is
/// `strict-leak-routefix`, `seed` + that route is `seed-fixed`, `seed` + the same route for the
/// whole client prefix is `seed-prefix-fixed`.
pub fn fix_scenario(base: &str, commands: &[String]) -> Option<&'static str> {
    let rp_only = !commands.is_empty()
        && commands
            .iter()
            .all(|c| c.starts_with("sysctl -w net.ipv4.conf.") && c.contains(".rp_filter="));
    let leaf_a = Scenario::by_name("seed")
        .ok()
        .and_then(|s| s.leaves.into_iter().find(|l| l.anycast))
        .map(|l| vec![l.om_ip, crate::scenario::ANYCAST_GW])
        .unwrap_or_default();
    let route_back = matches!(commands, [c] if leaf_a.iter().any(|gw| {
        c.trim() == format!("ip route add {CLIENT_IP}/32 via {gw}")
    }));
    let prefix_back = matches!(commands, [c] if leaf_a.iter().any(|gw| {
        c.trim() == format!("ip route add {CLIENT_PREFIX} via {gw}")
    }));
    match base {
        "strict-leak" if rp_only => Some("strict-leak-rpfix"),
        "strict-leak" if route_back => Some("strict-leak-routefix"),
        "seed" if route_back => Some("seed-fixed"),
        "seed" if prefix_back => Some("seed-prefix-fixed"),
        _ => None,
    }
}

/// kubepath's proposed fixes against the kernel: for every scenario whose trace proposes a fix
/// that the lab also builds as a scenario ([`fix_scenario`]), the fix's `verified` must say
/// what the kernel did in that scenario (verified <=> every connection delivered). Fixes the
/// lab does not build are listed without a verdict. One comparison per scenario with fixes.
pub fn fix_checks(reports: &[ScenarioReport]) -> Vec<Comparison> {
    let mut out = Vec::new();
    for r in reports {
        let Some(pred) = &r.prediction else { continue };
        if pred.fixes.is_empty() {
            continue;
        }
        let mut c = Comparison {
            scenario: format!("{}, kubepath's fixes vs the kernel", r.scenario),
            checks: Vec::new(),
        };
        for f in &pred.fixes {
            let cmd = f.commands.join("; ");
            let predicted = format!(
                "{} ({})",
                if f.verified == Some(true) {
                    "verified"
                } else {
                    "not verified"
                },
                f.verification.as_deref().unwrap_or("-")
            );
            let target = fix_scenario(&r.scenario, &f.commands)
                .and_then(|s| reports.iter().find(|x| x.scenario == s));
            let Some(t) = target else {
                c.checks.push(Check {
                    name: format!("fix `{cmd}`"),
                    predicted,
                    observed: "not built in the lab".into(),
                    ok: true,
                });
                continue;
            };
            let v = t.observation.verdicts();
            let n = t.observation.connections.len();
            let delivered = v.get("delivered").copied().unwrap_or(0) as usize;
            let kernel_ok = n > 0 && delivered == n;
            let others: Vec<String> = v
                .iter()
                .filter(|(k, _)| *k != "delivered")
                .map(|(k, c)| format!("{k} {c}"))
                .collect();
            c.checks.push(Check {
                name: format!("fix `{cmd}` (lab: {})", t.scenario),
                predicted,
                observed: format!(
                    "{delivered}/{n} connections succeeded{}",
                    if others.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", others.join(", "))
                    }
                ),
                ok: (f.verified == Some(true)) == kernel_ok,
            });
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_map_to_lab_scenarios() {
        let c = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            fix_scenario(
                "strict-leak",
                &c(&["sysctl -w net.ipv4.conf.ccd_ecfe_om.rp_filter=2"])
            ),
            Some("strict-leak-rpfix")
        );
        assert_eq!(
            fix_scenario(
                "strict-leak",
                &c(&["ip route add 10.210.150.87/32 via 10.33.151.66"])
            ),
            Some("strict-leak-routefix")
        );
        assert_eq!(
            fix_scenario(
                "seed",
                &c(&["ip route add 10.210.150.87/32 via 10.33.151.65"])
            ),
            Some("seed-fixed")
        );
        assert_eq!(
            fix_scenario(
                "seed",
                &c(&["ip route add 10.210.150.80/28 via 10.33.151.65"])
            ),
            Some("seed-prefix-fixed")
        );
        // Via leaf-b, or policy routing: not what the lab builds.
        assert_eq!(
            fix_scenario(
                "seed",
                &c(&["ip route add 10.210.150.87/32 via 10.33.151.67"])
            ),
            None
        );
        assert_eq!(
            fix_scenario(
                "seed",
                &c(&[
                    "ip route add default via 10.33.151.66 dev ccd_ecfe_om table 100",
                    "ip rule add to 10.210.150.80/28 lookup 100 priority 1100"
                ])
            ),
            None
        );
        assert_eq!(
            fix_scenario(
                "loose-leak",
                &c(&["sysctl -w net.ipv4.conf.all.rp_filter=2"])
            ),
            None
        );
    }

    fn check_json(findings: &[(&str, &str, &str, &str)]) -> serde_json::Value {
        serde_json::json!({
            "schema": "kubepath.check/v1",
            "findings": findings.iter().map(|(code, sev, title, expl)| serde_json::json!({
                "code": code, "severity": sev, "title": title, "explanation": expl,
            })).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn check_names_the_fault_or_nothing_serious() {
        let seed = Scenario::by_name("seed").unwrap();
        let ok = check_comparison(
            &seed,
            Ok(check_json(&[
                (
                    "flow-asymmetric-return",
                    "critical",
                    "asymmetric return path for client c",
                    "",
                ),
                ("ingress-host-no-dns", "warning", "x", ""),
            ])),
        );
        assert!(ok.agrees(), "{}", ok.table());
        // Another code first, the right code without the phrase, no finding, no output: fail.
        for bad in [
            check_json(&[
                (
                    "lb-ip-not-announced",
                    "critical",
                    "asymmetric return path",
                    "",
                ),
                (
                    "flow-asymmetric-return",
                    "critical",
                    "asymmetric return path",
                    "",
                ),
            ]),
            check_json(&[("flow-asymmetric-return", "critical", "something else", "")]),
            check_json(&[]),
        ] {
            assert!(!check_comparison(&seed, Ok(bad)).agrees());
        }
        assert!(!check_comparison(&seed, Err("no binary".into())).agrees());
        // A healthy scenario: warnings are fine, an error is not.
        let healthy = Scenario::by_name("seed-prefix-fixed").unwrap();
        assert!(healthy.expected_finding.is_none());
        assert!(check_comparison(
            &healthy,
            Ok(check_json(&[("ingress-host-no-dns", "warning", "x", "")]))
        )
        .agrees());
        assert!(!check_comparison(
            &healthy,
            Ok(check_json(&[("duplicate-ip", "error", "x", "")]))
        )
        .agrees());
    }

    #[test]
    fn relax_rp_filter_changes_only_the_om_interface() {
        let base = std::env::temp_dir().join(format!("kubepath-lab-relax-{}", std::process::id()));
        let node = base.join("snap/nodes/node-1");
        std::fs::create_dir_all(&node).unwrap();
        std::fs::write(
            node.join("sysctl.txt"),
            "net.ipv4.conf.all.rp_filter = 0\nnet.ipv4.conf.ccd_ecfe_om.rp_filter = 1\nnet.ipv4.conf.ecfe_traf1.rp_filter = 2\n",
        )
        .unwrap();
        let changed = relax_rp_filter(&base.join("snap"), &base.join("copy")).unwrap();
        assert_eq!(changed, 1);
        let text = std::fs::read_to_string(base.join("copy/nodes/node-1/sysctl.txt")).unwrap();
        assert_eq!(
            text,
            "net.ipv4.conf.all.rp_filter = 0\nnet.ipv4.conf.ccd_ecfe_om.rp_filter = 0\nnet.ipv4.conf.ecfe_traf1.rp_filter = 2\n"
        );
        std::fs::remove_dir_all(&base).unwrap();
        assert!(negative_mutation("seed").is_none());
        assert!(negative_mutation("seed-fixed").is_some());
    }

    #[test]
    fn drop_fix_removes_only_the_client_route() {
        let base =
            std::env::temp_dir().join(format!("kubepath-lab-dropfix-{}", std::process::id()));
        let snap = base.join("snap");
        let node = snap.join("nodes/node-1");
        std::fs::create_dir_all(&node).unwrap();
        std::fs::write(snap.join("kubepath.yaml"), "kind: Manifest\n").unwrap();
        // As `ip -j route show table all` prints them (abridged).
        std::fs::write(
            node.join("ip-route.json"),
            r#"[{"dst":"default","gateway":"10.33.152.65","dev":"ecfe_traf1","protocol":"static","metric":804,"flags":[]},
                {"dst":"10.210.150.87","gateway":"10.33.151.65","dev":"ccd_ecfe_om","flags":[]},
                {"type":"local","dst":"10.210.150.87","dev":"lo","table":"local","flags":[]},
                {"dst":"10.33.151.64/27","dev":"ccd_ecfe_om","protocol":"kernel","scope":"link","prefsrc":"10.33.151.68","flags":[]}]"#,
        )
        .unwrap();
        let copy = base.join("copy");
        let removed = drop_fix(&snap, &copy).unwrap();
        assert_eq!(removed, 1);
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(copy.join("nodes/node-1/ip-route.json")).unwrap(),
        )
        .unwrap();
        let dsts: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["dst"].as_str().unwrap())
            .collect();
        assert_eq!(dsts, ["default", "10.210.150.87", "10.33.151.64/27"]);
        assert!(copy.join("kubepath.yaml").exists());
        // The original is untouched.
        let orig = std::fs::read_to_string(node.join("ip-route.json")).unwrap();
        assert!(orig.contains("10.33.151.65"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
