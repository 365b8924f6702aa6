//! What IPGWOptions, IPFragmenter and ICMPError share about IPv4 options
//! (RFC 791 section 3.1): the option numbers, and the address lists their
//! arguments take.

use crate::wire;
use switchyard_core::FromArg;

/// End of option list.
pub const IPOPT_EOL: u8 = 0;
/// No operation (one byte, for alignment).
pub const IPOPT_NOP: u8 = 1;
/// Record route.
pub const IPOPT_RR: u8 = 7;
/// Internet timestamp.
pub const IPOPT_TS: u8 = 68;
/// Loose source and record route.
pub const IPOPT_LSRR: u8 = 131;
/// Strict source and record route.
pub const IPOPT_SSRR: u8 = 137;
/// The copied flag: the option goes into every fragment.
pub const IPOPT_COPIED: u8 = 0x80;

/// A space-separated list of IP addresses (host order), as Click's
/// `Vector<IPAddress>` arguments (BADADDRS, OTHERADDRS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddrList(pub Vec<u32>);

impl FromArg for AddrList {
    const EXPECTED: &'static str = "space-separated IP addresses";
    fn from_arg(text: &str) -> Option<Self> {
        let text = String::from_arg(text)?;
        text.split_whitespace()
            .map(wire::parse_ip)
            .collect::<Option<Vec<_>>>()
            .map(AddrList)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists() {
        assert_eq!(
            AddrList::from_arg("10.0.0.1  10.0.0.255"),
            Some(AddrList(vec![0x0a000001, 0x0a0000ff]))
        );
        assert_eq!(AddrList::from_arg(""), Some(AddrList(vec![])));
        assert_eq!(AddrList::from_arg("10.0.0.1 10.0.0"), None);
    }
}
