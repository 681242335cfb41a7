//! `kubepath lab test`: for each scenario, build it, observe it, snapshot it, ask kubepath for
//! its prediction on that snapshot, compare, tear down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::compare::{compare, lab_checks, Check, Comparison, Prediction};
use crate::lab::{Lab, LabOptions};
use crate::observe::{observe, Observation, ObserveOptions};
use crate::scenario::{Scenario, CLIENT_IP, HOST};
use crate::sh::{io_err, LabError, Result};
use crate::snapshot;

/// Produces kubepath's prediction for a snapshot.
pub trait Predictor {
    /// `snapshot` is the snapshot directory; the question is always the lab's client to
    /// `http://lab.kubepath.test/`.
    fn predict(&self, snapshot: &Path) -> std::result::Result<Prediction, String>;
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
    /// For `seed-fixed`: the prediction on the snapshot with the fix removed must disagree.
    pub negative: Option<Comparison>,
    pub snapshot: PathBuf,
    pub seconds: f64,
}

impl ScenarioReport {
    pub fn agrees(&self) -> bool {
        self.lab.agrees()
            && self.trace.as_ref().is_none_or(Comparison::agrees)
            && self.negative.as_ref().is_none_or(Comparison::agrees)
    }

    pub fn table(&self) -> String {
        let mut s = self.lab.table();
        if let Some(t) = &self.trace {
            s.push_str(&t.table());
        }
        if let Some(n) = &self.negative {
            s.push_str(&n.table());
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
        let client = CLIENT_IP.to_string();
        let kept: Vec<_> = routes
            .into_iter()
            .filter(|r| {
                let is_fix = r.get("dst").and_then(|d| d.as_str()) == Some(client.as_str())
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
    if let Some(p) = predictor {
        trace = Some(match p.predict(&snap) {
            Ok(pred) => compare(&pred, &observation),
            Err(e) => failed_prediction(name, e),
        });
        if scenario.return_route_fix && name == "seed-fixed" {
            let wrong = snapshot_root.join(format!("{name}-without-fix"));
            if wrong.exists() {
                std::fs::remove_dir_all(&wrong).map_err(io_err(wrong.display()))?;
            }
            let removed = drop_fix(&snap, &wrong)?;
            let mut c = Comparison {
                scenario: format!(
                    "{name}, negative check (its snapshot without the /32 fix must disagree)"
                ),
                checks: Vec::new(),
            };
            let caught = match p.predict(&wrong) {
                Ok(pred) => {
                    let cmp = compare(&pred, &observation);
                    Ok((!cmp.agrees(), cmp))
                }
                Err(e) => Err(e),
            };
            match caught {
                Ok((disagrees, cmp)) => {
                    let failing: Vec<String> = cmp
                        .checks
                        .iter()
                        .filter(|c| !c.ok)
                        .map(|c| c.name.clone())
                        .collect();
                    c.checks.push(Check {
                        name: format!("wrong prediction caught ({removed} routes removed)"),
                        predicted: "disagreement".into(),
                        observed: if disagrees {
                            format!("disagreement in: {}", failing.join(", "))
                        } else {
                            "the comparison agreed".into()
                        },
                        ok: disagrees && removed > 0,
                    });
                }
                Err(e) => c.checks.push(Check {
                    name: "wrong prediction caught".into(),
                    predicted: format!("unavailable: {e}"),
                    observed: "-".into(),
                    ok: false,
                }),
            }
            negative = Some(c);
        }
    }
    Ok(ScenarioReport {
        scenario: name.to_string(),
        observation,
        lab: lab_cmp,
        trace,
        negative,
        snapshot: snap,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
