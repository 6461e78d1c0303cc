//! `interlock apply -c FILE [--timeout SECONDS] [--writer]`: writes what the plan says, waits
//! until the written services run their new spec, and exits (0 once converged, 1 on a failure,
//! a held write, or a timeout). By hand it refuses to write while a core service runs, unless
//! `--writer`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use interlock::core::context::Replica;
use interlock::core::reconcile::Reconciler;
use interlock::swarm::Swarm;
use reconcilers::plan as planner;

pub fn run(path: &Path, timeout: Duration, writer: bool) -> anyhow::Result<ExitCode> {
    let Some(loaded) = super::load(path)? else { return Ok(ExitCode::FAILURE) };
    let config = loaded.config;
    super::runtime()?.block_on(async {
        let ctx = super::context::context(&config, writer).await?;
        if ctx.identity == Replica::ByHand {
            let observed = Swarm::observe(&ctx.swarm).await?;
            if let Some(core) = interlock::core::reconcile::core_service_running(&observed) {
                eprintln!(
                    "interlock: the core service {core} runs and writes; this apply would fight it. Change its config instead (see docs/deployment.md), or pass --writer to write anyway"
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        let mut reconciler = Reconciler::new(ctx.clone(), config).as_replica(ctx.identity.clone());
        let deadline = Instant::now() + timeout;
        // A pass may enable the next (the operator network before the extensions), so pass
        // until one plans nothing.
        let mut writes = 0;
        for _ in 0..5 {
            let report = reconciler.pass().await?;
            // `apply` waits for every cluster's writes; `run` does not.
            let settled = reconciler.settle().await;
            writes += report.writes + settled.writes;
            let failures: Vec<_> = report.failures.iter().chain(&settled.failures).collect();
            for (extension, failure) in &failures {
                eprintln!("extension {extension}: {failure}");
            }
            if !failures.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
            if report.plan.is_empty() {
                break;
            }
            print!("{}", planner::render(&report.plan));
        }
        // Wait until every owned service runs its spec; old configs are collected on the way.
        loop {
            let report = reconciler.pass().await?;
            writes += report.writes + reconciler.settle().await.writes;
            // A pass that planned nothing wrote nothing: what it read is still the truth.
            let unsettled = &report.unsettled;
            if unsettled.is_empty() && report.plan.is_empty() {
                let held: Vec<String> = report
                    .plan
                    .clusters
                    .iter()
                    .flat_map(|(name, c)| c.conflicts.iter().map(move |why| format!("extension {name}: {why}")))
                    .collect();
                println!("converged: {writes} write(s)");
                for line in &held {
                    eprintln!("{line}");
                }
                return Ok(if held.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
            }
            if Instant::now() >= deadline {
                eprintln!("not converged after {} s:", timeout.as_secs());
                for line in unsettled {
                    eprintln!("  {line}");
                }
                return Ok(ExitCode::FAILURE);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}
