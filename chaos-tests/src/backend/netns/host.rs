//! What the netns backend asks of the host: running `ip`, `iptables` and `kill`, the names it
//! gives what it creates, choosing a free subnet, and finding what a crashed run left behind.

use std::net::Ipv4Addr;

use super::super::BackendError;

/// Every namespace the backend creates starts with this; `remove_leftovers` relies on it.
pub const NAMESPACE_PREFIX: &str = "ta-chaos-";
/// Every bridge the backend creates starts with this.
pub const BRIDGE_PREFIX: &str = "tac-";
/// Every host end of a veth pair starts with this.
pub const VETH_PREFIX: &str = "tav-";
/// The comment on every host iptables rule the backend adds, followed by the run's id.
pub const RULE_COMMENT_PREFIX: &str = "ta-chaos-";

/// Linux interface names hold at most 15 bytes: `tav-` + id + `-` + a two-digit index.
const MAX_ID_LENGTH: usize = 8;

pub use crate::backend::command::run;
pub use crate::backend::command::succeeds;

/// The short id a run's names carry: the tag itself when it fits in an interface name, a hash
/// of it otherwise (two different long tags then still get different names).
pub fn short_id(tag: &str) -> String {
    let fits = !tag.is_empty()
        && tag.len() <= MAX_ID_LENGTH
        && tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if fits {
        tag.to_string()
    } else {
        format!("{:08x}", fnv1a(tag.as_bytes()) as u32)
    }
}

/// FNV-1a: a stable hash, unlike `DefaultHasher`, so a tag maps to the same names and subnet
/// in every process (the CLI's cleanup and a later run agree).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A /24 in 10.0.0.0/8 that no host address or route overlaps, the first free one of a
/// sequence that starts at a place derived from `id`, so parallel runs rarely race for one.
pub fn free_subnet(id: &str) -> Result<[u8; 3], BackendError> {
    let taken = taken_prefixes()?;
    let start = fnv1a(id.as_bytes());
    // 10.0.x.x is where tests and example configs put fake targets; start above it.
    for step in 0..(200 * 256) {
        let slot = (start.wrapping_add(step) % (200 * 256)) as u32;
        let second = 20 + (slot / 256) as u8;
        let third = (slot % 256) as u8;
        let candidate = (u32::from(Ipv4Addr::new(10, second, third, 0)), 24);
        if !taken.iter().any(|&prefix| overlaps(prefix, candidate)) {
            return Ok([10, second, third]);
        }
    }
    Err(BackendError::Other(
        "no free /24 in 10.20.0.0 – 10.219.255.0 for the bridge".to_string(),
    ))
}

/// Every IPv4 prefix the host already uses: its addresses and the destinations of its routes
/// in every table, the default route aside.
fn taken_prefixes() -> Result<Vec<(u32, u8)>, BackendError> {
    let addresses = run("ip", &["-4", "-o", "addr", "show"])?;
    let routes = run("ip", &["-4", "route", "show", "table", "all"])?;
    let from_addresses = addresses
        .lines()
        .filter_map(|line| line.split_whitespace().skip_while(|word| *word != "inet").nth(1));
    let from_routes = routes.lines().filter_map(|line| {
        let mut words = line.split_whitespace();
        let first = words.next()?;
        // Routes in the local table start with their type (`local`, `broadcast`, …).
        if first.parse::<Ipv4Addr>().is_ok() || first.contains('/') {
            Some(first)
        } else {
            words.next()
        }
    });
    Ok(from_addresses.chain(from_routes).filter_map(parse_prefix).collect())
}

fn parse_prefix(text: &str) -> Option<(u32, u8)> {
    let (address, length) = match text.split_once('/') {
        Some((address, length)) => (address, length.parse().ok()?),
        None => (text, 32),
    };
    let address: Ipv4Addr = address.parse().ok()?;
    // The default route covers everything yet takes no address away from a bridge.
    (length > 0 && length <= 32).then_some((u32::from(address), length))
}

fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    let shorter = a.1.min(b.1);
    let mask = if shorter == 0 { 0 } else { u32::MAX << (32 - shorter) };
    a.0 & mask == b.0 & mask
}

/// Every network namespace on the host, by name.
pub fn namespaces() -> Result<Vec<String>, BackendError> {
    Ok(run("ip", &["netns", "list"])?
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Whether the namespace `name` exists.
pub fn namespace_exists(name: &str) -> Result<bool, BackendError> {
    Ok(namespaces()?.iter().any(|existing| existing == name))
}

/// The names of the host's interfaces of `kind` (`bridge`, `veth`).
pub fn links(kind: &str) -> Result<Vec<String>, BackendError> {
    Ok(run("ip", &["-o", "link", "show", "type", kind])?
        .lines()
        .filter_map(|line| line.split(':').nth(1))
        // A veth shows as `name@peer`.
        .filter_map(|name| name.trim().split('@').next())
        .map(str::to_string)
        .collect())
}

pub fn link_exists(name: &str) -> bool {
    succeeds("ip", &["link", "show", "dev", name])
}

/// SIGKILL every process in namespace `name` (ones this process did not start, or no longer
/// holds: they would keep the namespace alive after `ip netns delete`), then delete it.
pub fn delete_namespace(name: &str) -> Result<(), BackendError> {
    if !namespace_exists(name)? {
        return Ok(());
    }
    for pid in run("ip", &["netns", "pids", name])?.split_whitespace() {
        // It may have exited since the listing.
        let _ = run("kill", &["-KILL", pid]);
    }
    run("ip", &["netns", "delete", name]).map(drop)
}

/// Delete interface `name` if it exists. The kernel removes the host end of a veth by itself,
/// a moment after its namespace goes, so it may vanish between the check and the delete.
pub fn delete_link(name: &str) -> Result<(), BackendError> {
    if !link_exists(name) {
        return Ok(());
    }
    match run("ip", &["link", "delete", "dev", name]) {
        Err(_) if !link_exists(name) => Ok(()),
        result => result.map(drop),
    }
}

/// The host rule that lets traffic bridged between the ports of `bridge` through FORWARD.
/// With `br_netfilter` loaded (Docker loads it) bridged IPv4 frames traverse the host's
/// FORWARD chain, whose policy Docker sets to DROP, so replica ↔ replica traffic would die.
pub fn forward_rule(bridge: &str, comment: &str) -> Vec<String> {
    [
        "-i",
        bridge,
        "-o",
        bridge,
        "-m",
        "comment",
        "--comment",
        comment,
        "-j",
        "ACCEPT",
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

/// Delete every host FORWARD rule whose comment starts with `comment_prefix`; the deleted
/// rules, as `iptables -S` prints them.
pub fn delete_forward_rules(comment_prefix: &str) -> Result<Vec<String>, BackendError> {
    let listing = run("iptables", &["-w", "-S", "FORWARD"])?;
    let mut deleted = Vec::new();
    for rule in listing.lines().filter(|line| line.starts_with("-A FORWARD ")) {
        let words: Vec<&str> = rule.split_whitespace().collect();
        let ours = words
            .windows(2)
            .any(|pair| pair[0] == "--comment" && pair[1].trim_matches('"').starts_with(comment_prefix));
        if !ours {
            continue;
        }
        let mut arguments = vec!["-w", "-D"];
        arguments.extend(words[1..].iter().map(|word| word.trim_matches('"')));
        run("iptables", &arguments)?;
        deleted.push(rule.to_string());
    }
    Ok(deleted)
}

/// Whether this process runs as root (uid 0), read from `/proc` rather than through libc.
pub fn is_root() -> Result<bool, String> {
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .ok_or_else(|| "no effective uid in /proc/self/status".to_string())?;
    Ok(uid == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_fit_an_interface_name() {
        assert_eq!(short_id("ab12"), "ab12");
        let long = short_id("a-much-longer-tag");
        assert_eq!(long.len(), 8);
        assert_ne!(long, short_id("a-much-longer-tah"));
        assert!(format!("{VETH_PREFIX}{long}-99").len() <= 15);
        assert!(format!("{BRIDGE_PREFIX}{long}").len() <= 15);
    }

    #[test]
    fn prefixes_overlap_under_the_shorter_mask() {
        let subnet = parse_prefix("10.20.3.0/24").unwrap();
        assert!(overlaps(parse_prefix("10.0.0.0/8").unwrap(), subnet));
        assert!(overlaps(parse_prefix("10.20.3.7").unwrap(), subnet));
        assert!(!overlaps(parse_prefix("10.20.4.0/24").unwrap(), subnet));
        assert!(parse_prefix("0.0.0.0/0").is_none());
    }
}
