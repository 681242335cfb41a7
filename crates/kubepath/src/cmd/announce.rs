//! `kubepath announce DIR [--service NS/NAME] [--json]`: which nodes announce each
//! LoadBalancer IP, to which BGP peers, and why the others don't.

use std::path::PathBuf;
use std::process::ExitCode;

use kubepath_model::k8s::{ObjectKey, ServiceType};
use kubepath_report::announce as rep;
use miette::miette;

#[derive(clap::Args, Debug)]
pub struct AnnounceArgs {
    /// The snapshot directory (docs/snapshot.md).
    pub dir: PathBuf,
    /// Only this Service (`namespace/name`).
    #[arg(long, value_name = "NS/NAME")]
    pub service: Option<String>,
    /// Print JSON (a list, one object per Service; docs/announce-json.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: AnnounceArgs) -> miette::Result<ExitCode> {
    let only = match &args.service {
        None => None,
        Some(s) => {
            let Some((ns, name)) = s
                .split_once('/')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            else {
                return Err(miette!("--service expects NAMESPACE/NAME, got `{s}`"));
            };
            Some(ObjectKey::new(ns, name))
        }
    };
    let snap = super::snapshot::load(&args.dir)?;
    if let Some(k) = &only {
        match snap.model.cluster.services.get(k) {
            None => return Err(miette!("Service {k} is not in the snapshot")),
            Some(s) if s.type_ != ServiceType::LoadBalancer => {
                return Err(miette!(
                    "Service {k} is of type {}, not LoadBalancer: nothing is announced for it",
                    s.type_
                ))
            }
            Some(_) => {}
        }
    }
    let result = kubepath_sim::announce::announce(&snap.model, only.as_ref());
    let dtos: Vec<rep::ServiceDto> = result.iter().map(rep::to_dto).collect();
    if args.json {
        let s =
            serde_json::to_string_pretty(&dtos).map_err(|e| miette!("cannot serialize: {e}"))?;
        super::snapshot::out(&format!("{s}\n"));
    } else {
        super::snapshot::out(&rep::render_text(&dtos));
    }
    Ok(ExitCode::SUCCESS)
}
