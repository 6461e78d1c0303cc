//! `interlock plan -c FILE`: prints what a pass would write, per service cluster, with the proxy
//! config diff. Exit 0 when nothing would change, 2 when something would, 1 on error.

use std::path::Path;
use std::process::ExitCode;

use interlock::core::reconcile::Reconciler;
use reconcilers::plan as planner;

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(loaded) = super::load(path)? else { return Ok(ExitCode::FAILURE) };
    super::runtime()?.block_on(async {
        let reconciler = Reconciler::new(super::context::context(&loaded.config, false).await?, loaded.config);
        let (_, plan) = reconciler.plan().await?;
        print!("{}", planner::render(&plan));
        Ok(if plan.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
    })
}
