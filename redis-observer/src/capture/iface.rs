//! Interfaces as the capture needs to know them.

use anyhow::{Context as _, bail};

const ARPHRD_LOOPBACK: u32 = 772;
/// Devices without a link-layer header (tun, wireguard): packets start at the IP header.
const ARPHRD_NONE: u32 = 65534;
const ARPHRD_RAWIP: u32 = 519;
const IFF_LOOPBACK: u32 = 0x8;

#[derive(Clone, Debug)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub loopback: bool,
    /// Link-layer header length in the packet data the programs see.
    pub l2_len: u8,
}

impl Iface {
    pub fn lookup(name: &str) -> anyhow::Result<Self> {
        if name.is_empty() || name.contains('/') || name.len() > 15 {
            bail!("bad interface name {name:?}");
        }
        let read = |attr: &str| -> anyhow::Result<String> {
            let p = format!("/sys/class/net/{name}/{attr}");
            Ok(std::fs::read_to_string(&p)
                .with_context(|| format!("no interface {name:?} ({p})"))?
                .trim()
                .to_owned())
        };
        let index: u32 = read("ifindex")?.parse().context("ifindex")?;
        let ty: u32 = read("type")?.parse().context("type")?;
        let flags =
            u32::from_str_radix(read("flags")?.trim_start_matches("0x"), 16).context("flags")?;
        let l2_len = match ty {
            ARPHRD_NONE | ARPHRD_RAWIP => 0,
            _ => 14,
        };
        Ok(Iface {
            name: name.to_owned(),
            index,
            loopback: ty == ARPHRD_LOOPBACK || flags & IFF_LOOPBACK != 0,
            l2_len,
        })
    }
}

/// Removes the clsact qdisc we added (kernels before TCX only; aya has no call for it).
pub fn remove_clsact(iface: &str) -> anyhow::Result<()> {
    let st = std::process::Command::new("tc")
        .args(["qdisc", "del", "dev", iface, "clsact"])
        .status()
        .context("running tc")?;
    if !st.success() {
        bail!("tc qdisc del dev {iface} clsact failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_is_found() {
        let lo = super::Iface::lookup("lo").unwrap();
        assert!(lo.loopback);
        assert_eq!(lo.l2_len, 14);
        assert!(super::Iface::lookup("no-such-if0").is_err());
        assert!(super::Iface::lookup("../x").is_err());
    }
}
