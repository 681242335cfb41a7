//! The parallel load (cluster files lowered and node rulesets parsed ahead on other cores,
//! `crate::prefetch`) gives exactly what the one-thread pass gives: the whole snapshot (model,
//! diagnostics in order, file reports) compared through its `Debug` text, leniently and under
//! `--strict`, on every snapshot of the repository and on one made of every cluster and
//! iptables fixture at once (Services given twice across files, MetalLB configuration in
//! several files, files that do not parse, rulesets iptables-restore rejects).

use std::path::{Path, PathBuf};

use kubepath_ingest::{load_files_with, load_snapshot_with, LoadOptions};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn both_ways(what: &str, load: impl Fn(LoadOptions) -> String) {
    for strict in [false, true] {
        let one = load(LoadOptions {
            strict,
            one_thread: true,
        });
        let par = load(LoadOptions {
            strict,
            one_thread: false,
        });
        if one != par {
            let at = one
                .bytes()
                .zip(par.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(one.len().min(par.len()));
            let from = at.saturating_sub(300);
            panic!(
                "{what} (strict: {strict}): the parallel load differs at byte {at}:\none thread: ...{}\nparallel:   ...{}",
                &one[from..(at + 300).min(one.len())],
                &par[from..(at + 300).min(par.len())]
            );
        }
    }
}

/// The diagnostics and file reports exactly; the model as the sorted lines of its `Debug`
/// text (it holds hash maps, e.g. a node's ipsets, whose `Debug` order differs between two
/// maps with the same entries), so every value is there the same number of times.
fn show(r: Result<kubepath_ingest::Snapshot, kubepath_ingest::IngestError>) -> String {
    match r {
        Ok(s) => {
            let model = format!("{:#?}", s.model);
            let mut lines: Vec<&str> = model.lines().collect();
            lines.sort_unstable();
            format!("{:#?}\n{:#?}\n{}", s.diagnostics, s.files, lines.join("\n"))
        }
        Err(e) => format!("error: {e:?}"),
    }
}

fn snapshot_dirs() -> Vec<PathBuf> {
    let mut v = vec![root().join("examples/dc173")];
    for group in ["fixtures/trace", "fixtures/snapshots", "fixtures/ingress"] {
        let Ok(rd) = std::fs::read_dir(root().join(group)) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        v.extend(dirs);
    }
    v
}

#[test]
fn every_snapshot_loads_the_same_in_parallel() {
    let dirs = snapshot_dirs();
    assert!(dirs.len() > 20, "found only {} snapshots", dirs.len());
    for d in dirs {
        both_ways(&d.display().to_string(), |o| {
            show(load_snapshot_with(&d, o))
        });
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return v;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(files_under(&p));
        } else if p
            .extension()
            .is_none_or(|e| e != "expect" && e != "md" && e != "snap")
        {
            v.push(p);
        }
    }
    v.sort();
    v
}

#[test]
fn every_fixture_at_once_loads_the_same_in_parallel() {
    let mut files = Vec::new();
    for group in ["k8s", "metallb", "ecfe"] {
        for (i, p) in files_under(&root().join("fixtures").join(group))
            .into_iter()
            .enumerate()
        {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            files.push((
                format!("cluster/{group}-{i:03}-{name}"),
                std::fs::read(&p).unwrap_or_default(),
            ));
        }
    }
    // Every nginx fixture as the nginx.conf of a controller pod of its own.
    for (i, p) in files_under(&root().join("fixtures/nginx"))
        .into_iter()
        .enumerate()
    {
        files.push((
            format!("ingress/ingress-nginx/controller-{i:03}/nginx.conf"),
            std::fs::read(&p).unwrap_or_default(),
        ));
    }
    // One Service in two files (the later kept, with a warning naming the earlier).
    let svc = |port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: twice\n  namespace: default\nspec:\n  clusterIP: 10.96.7.7\n  ports:\n  - port: {port}\n    protocol: TCP\n"
        )
        .into_bytes()
    };
    files.push(("cluster/zz-twice-a.yaml".into(), svc(80)));
    files.push(("cluster/zz-twice-b.yaml".into(), svc(81)));
    let cluster = files
        .iter()
        .filter(|(p, _)| p.starts_with("cluster/"))
        .count();
    assert!(cluster > 20, "only {cluster} cluster fixtures");
    let nginx = files.len() - cluster;
    assert!(nginx > 5, "only {nginx} nginx fixtures");
    // Every iptables fixture as a node of its own, and the largest ones again on a second
    // node (the same bytes: shared), so rulesets are parsed ahead too.
    let mut big: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, p) in files_under(&root().join("fixtures/iptables"))
        .into_iter()
        .enumerate()
    {
        let bytes = std::fs::read(&p).unwrap_or_default();
        big.push((bytes.len(), bytes.clone()));
        files.push((format!("nodes/n{i:03}/iptables-save.txt"), bytes));
    }
    // A ruleset large enough to be parsed ahead: the largest fixture repeated as one table's
    // comment lines would not parse as a whole save, so a generated nat table instead.
    let mut nat = String::from("# Generated by iptables-save v1.8.7 on Mon Dec  7 10:00:00 2026\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    for i in 0..4000 {
        nat.push_str(&format!(":KUBE-SEP-{i:016X} - [0:0]\n"));
    }
    for i in 0..4000 {
        nat.push_str(&format!(
            "-A PREROUTING -d 10.96.{}.{}/32 -p tcp -m tcp --dport 80 -j KUBE-SEP-{i:016X}\n-A KUBE-SEP-{i:016X} -p tcp -m tcp -j DNAT --to-destination 10.128.{}.{}:8080\n",
            i / 250,
            i % 250 + 1,
            i / 250,
            i % 250 + 1
        ));
    }
    nat.push_str("COMMIT\n# Completed on Mon Dec  7 10:00:00 2026\n");
    assert!(nat.len() > 256 * 1024);
    files.push((
        "nodes/big-a/iptables-save.txt".into(),
        nat.clone().into_bytes(),
    ));
    files.push((
        "nodes/big-b/iptables-save.txt".into(),
        nat.clone().into_bytes(),
    ));
    // The same text broken in its middle: iptables-restore would reject it.
    let broken = nat.replacen("-j DNAT --to-destination", "-j DNAT --to-destinatio", 1);
    files.push(("nodes/big-c/iptables-save.txt".into(), broken.into_bytes()));
    // A second capture of big-a that differs: compared, not taken from the prefetch.
    files.push((
        "nodes/big-a/iptables-save-2.txt".into(),
        nat.replacen("--dport 80", "--dport 81", 1).into_bytes(),
    ));
    // With the command echoed above it: the reader parses the text without the prompt line.
    files.push((
        "nodes/big-d/iptables-save.txt".into(),
        format!("root@big-d:~# iptables-save\n{nat}").into_bytes(),
    ));
    // With Windows line ends: the reader's text has none (its lines are the file's lines).
    files.push((
        "nodes/big-e/iptables-save.txt".into(),
        nat.replace('\n', "\r\n").into_bytes(),
    ));
    both_ways("every fixture as one snapshot", |o| {
        show(load_files_with(files.clone(), o))
    });
}
