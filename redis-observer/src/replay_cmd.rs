//! `redis-observer replay`.
pub fn run(_args: crate::cli::ReplayArgs) -> anyhow::Result<()> {
    anyhow::bail!("replay: not wired yet")
}
