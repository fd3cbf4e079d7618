//! The `allow` list of a listening source: IPv4/IPv6 addresses and CIDR
//! networks (`"192.168.1.20"`, `"10.0.0.0/24"`, `"fd00::/8"`).
//!
//! Invariants:
//! - An entry is parsed strictly: host bits set under the mask
//!   (`10.0.0.1/24`) are an error, not silently widened, so what the
//!   integrator wrote is exactly what is let in.
//! - An IPv4 peer arriving on an IPv6 socket (`::ffff:10.0.0.5`) is matched as
//!   the IPv4 address it is.
//! - Written here (40 lines) rather than with a crate: see ARCHITECTURE.md.

use std::net::IpAddr;

/// One network: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// `"a.b.c.d"`, `"a.b.c.d/n"`, `"x::y"`, `"x::y/n"`.
    pub fn parse(s: &str) -> Result<Net, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            None => (s, None),
            Some((a, p)) => (a, Some(p)),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        let net = Net { addr, prefix };
        if bits(addr) & !mask(addr, prefix) != 0 {
            return Err(format!(
                "{s:?}: host bits are set under the /{prefix} mask (did you mean {}/{prefix}?)",
                net.network()
            ));
        }
        Ok(net)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.addr.is_ipv4()
            && bits(ip) & mask(ip, self.prefix) == bits(self.addr) & mask(ip, self.prefix)
    }

    /// As an `allow` entry is written: the bare address for a single host.
    pub fn written(&self) -> String {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            self.addr.to_string()
        } else {
            self.to_string()
        }
    }

    fn network(&self) -> IpAddr {
        let b = bits(self.addr) & mask(self.addr, self.prefix);
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4((b as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(b.into()),
        }
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Who may talk to a listening source. Never empty once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList(Vec<Net>);

impl AllowList {
    /// Errors name the entry: `allow[1]: …`.
    pub fn parse(entries: &[String]) -> Result<AllowList, String> {
        if entries.is_empty() {
            return Err(
                "allow: must name at least one address or network (who may send \
                        receipts to this source)"
                    .into(),
            );
        }
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| Net::parse(e).map_err(|m| format!("allow[{i}]: {m}")))
            .collect::<Result<Vec<_>, _>>()
            .map(AllowList)
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    pub fn nets(&self) -> &[Net] {
        &self.0
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The mask of `prefix` leading ones in the width of `ip`'s family.
fn mask(ip: IpAddr, prefix: u8) -> u128 {
    let width = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.min(width) as u32;
    if prefix == 0 {
        0
    } else {
        let ones = u128::MAX << (128 - prefix);
        ones >> (128 - width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Result<AllowList, String> {
        AllowList::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_networks_match_exactly_what_they_say() {
        let a = list(&["192.168.1.20", "10.0.0.0/24", "fd00::/8", "0.0.0.0/0"]).unwrap();
        assert!(a.allows(ip("192.168.1.20")));
        assert!(a.allows(ip("10.0.0.255")));
        assert!(a.allows(ip("fd12::1")));
        let a = list(&["192.168.1.20", "10.0.0.0/24", "fd00::/8"]).unwrap();
        assert!(!a.allows(ip("192.168.1.21")));
        assert!(!a.allows(ip("10.0.1.0")));
        assert!(!a.allows(ip("fe80::1")));
        assert!(a.allows(ip("::ffff:10.0.0.7")), "mapped IPv4");
        assert!(!a.allows(ip("::ffff:10.0.1.7")));
        let a = list(&["::1"]).unwrap();
        assert!(a.allows(ip("::1")));
        assert!(!a.allows(ip("127.0.0.1")));
        let all = list(&["0.0.0.0/0"]).unwrap();
        assert!(all.allows(ip("8.8.8.8")));
        assert!(!all.allows(ip("::2")), "an IPv4 network never lets IPv6 in");
    }

    #[test]
    fn bad_entries_are_named() {
        assert!(list(&[]).unwrap_err().starts_with("allow:"));
        let e = list(&["10.0.0.1", "10.0.0.1/24"]).unwrap_err();
        assert!(
            e.starts_with("allow[1]:") && e.contains("10.0.0.0/24"),
            "{e}"
        );
        assert!(list(&["10.0.0.0/33"]).unwrap_err().contains("0 to 32"));
        assert!(
            list(&["printer.local"])
                .unwrap_err()
                .starts_with("allow[0]:")
        );
        assert!(list(&["fd00::/129"]).is_err());
    }
}
