//! `redis-observer tail`.
pub fn run(_args: crate::cli::TailArgs) -> anyhow::Result<()> {
    anyhow::bail!("tail: not wired yet")
}
