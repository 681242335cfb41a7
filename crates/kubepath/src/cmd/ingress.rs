//! `kubepath ingress match SNAPSHOT --url URL [--header 'Name: value']... [--controller NS/POD]
//! [--json]`: which backend ingress-nginx sends a request to (docs/ingress-match.md).

use std::path::PathBuf;
use std::process::ExitCode;

use kubepath_report::ingress::IngressMatchDto;
use kubepath_sim::ingress::{ControllerRef, HttpRequest, IngressView, Vote};

#[derive(clap::Subcommand, Debug)]
pub enum IngressCommand {
    /// Which backend an ingress-nginx controller sends an HTTP request to: host and path
    /// matching, redirects, rewrites, canaries and endpoints, as ingress-nginx does it.
    Match(MatchArgs),
}

#[derive(clap::Args, Debug)]
pub struct MatchArgs {
    /// The snapshot directory (see docs/snapshot.md).
    pub snapshot: PathBuf,
    /// The request URL, e.g. http://app.example.com/path?q=1.
    #[arg(long)]
    pub url: String,
    /// An extra request header, `Name: value` (repeatable). `Host:` overrides the URL's host.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The controller pod to ask, `namespace/pod` (default: every controller pod; the answer
    /// where an Ingress rule decided, given by the most pods, is printed and the other pods'
    /// answers are noted).
    #[arg(long, value_name = "NS/POD")]
    pub controller: Option<String>,
    /// Print one JSON object (schema kubepath.ingress-match/v1).
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: IngressCommand) -> miette::Result<ExitCode> {
    match cmd {
        IngressCommand::Match(args) => run_match(args),
    }
}

fn run_match(args: MatchArgs) -> miette::Result<ExitCode> {
    let mut req = HttpRequest::from_url(&args.url).map_err(|e| miette::miette!("--url {e}"))?;
    for h in &args.headers {
        req.add_header_line(h)
            .map_err(|e| miette::miette!("--header {e}"))?;
    }
    let snap = super::snapshot::load(&args.snapshot)?;
    let view = IngressView::shared(&snap.model);
    let found = view.controllers();
    let controllers: Vec<ControllerRef> = match &args.controller {
        Some(want) => {
            let hit = found.iter().find(|c| {
                c.pod.as_ref().is_some_and(|(ns, p)| {
                    format!("{ns}/{p}") == *want || (!want.contains('/') && p == want)
                })
            });
            match hit {
                Some(c) => vec![c.clone()],
                None => {
                    let names: Vec<String> =
                        found.iter().map(|c| super::io::esc(&c.label())).collect();
                    return Err(miette::miette!(
                        "--controller {want}: no ingress-nginx controller pod of that name in {} (found: {})",
                        args.snapshot.display(),
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    ));
                }
            }
        }
        None if found.is_empty() => vec![ControllerRef::generic()],
        None => found,
    };
    let Some(Vote { decision, agreeing }) = view.match_by_vote(&controllers, &req) else {
        return Err(miette::miette!("no controller to ask"));
    };
    let dto = IngressMatchDto::new(&req, agreeing, &decision);
    if args.json {
        super::io::out(&format!("{}\n", dto.to_json()));
    } else {
        super::io::out(&dto.render_text());
    }
    // An answer kubepath could not decide is not an answer: exit 1, as `trace` does for an
    // unknown branch (a CI gate must not read a guessed 404 as "answered").
    Ok(if dto.unknown.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
