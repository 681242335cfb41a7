//! Print generated cases: `cargo run -p kubepath-netfilter-gen --example dump_case -- SEED FIRST COUNT KIND [DIR]`
//! (KIND: det | stat | kube | local). With DIR, writes one `<name>.rules` file per case there instead.
use kubepath_netfilter_gen::random::{random_case, CaseKind};
use kubepath_netfilter_gen::LabPlan;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (seed, first, count) = (num(0, 1), num(1, 0), num(2, 1));
    let kind = match args.get(3).map(String::as_str) {
        Some("stat") => CaseKind::Statistic,
        Some("kube") => CaseKind::KubeLike,
        Some("local") => CaseKind::LocalOrigin,
        _ => CaseKind::Deterministic,
    };
    let plan = LabPlan::standard();
    for i in first..first + count {
        let c = random_case(seed, i, kind, &plan);
        match args.get(4) {
            Some(dir) => {
                let path = format!("{dir}/{}.rules", c.name);
                if let Err(e) = std::fs::write(&path, &c.text) {
                    eprintln!("{path}: {e}");
                    std::process::exit(2);
                }
            }
            None => {
                println!("### {}\n{}", c.name, c.text);
                for p in &c.probes {
                    println!("# probe {p}");
                }
            }
        }
    }
}
