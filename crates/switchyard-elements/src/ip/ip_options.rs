//! What IPGWOptions, IPFragmenter and ICMPError share about IPv4 options
//! (RFC 791 section 3.1): the option numbers, one walk over a header's
//! options, and the address lists their arguments take.

use crate::wire::{self, ip};
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

/// One option of a header: its offset in the header and its bytes (type,
/// length, data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpOption<'a> {
    pub at: usize,
    pub bytes: &'a [u8],
}

impl IpOption<'_> {
    pub fn kind(&self) -> u8 {
        self.bytes[0]
    }
}

/// The options of header `h` (the fixed 20 bytes and the options, no
/// more), in order; NOPs are skipped and EOL ends them. A malformed option
/// ends them too, as `Err` with the offset in the header of the bad byte
/// (a parameter-problem pointer): its type byte when the length byte lies
/// past the header, its length byte when the length is below 2 or runs
/// past the header.
pub fn options(h: &[u8]) -> Options<'_> {
    Options { h, at: ip::MIN_LEN }
}

/// The iterator [`options`] returns.
pub struct Options<'a> {
    h: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<IpOption<'a>, usize>;

    fn next(&mut self) -> Option<Self::Item> {
        let h = self.h;
        loop {
            let at = self.at;
            let &kind = h.get(at)?;
            match kind {
                IPOPT_NOP => self.at += 1,
                IPOPT_EOL => break,
                _ => {
                    let Some(&len) = h.get(at + 1) else {
                        self.at = h.len();
                        return Some(Err(at));
                    };
                    let len = usize::from(len);
                    if len < 2 || at + len > h.len() {
                        self.at = h.len();
                        return Some(Err(at + 1));
                    }
                    self.at += len;
                    return Some(Ok(IpOption {
                        at,
                        bytes: &h[at..at + len],
                    }));
                }
            }
        }
        self.at = h.len();
        None
    }
}

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

    fn header(opts: &[u8]) -> Vec<u8> {
        let mut h = vec![0x45; ip::MIN_LEN];
        h.extend_from_slice(opts);
        h
    }

    fn walk(opts: &[u8]) -> Vec<Result<(usize, u8, usize), usize>> {
        options(&header(opts))
            .map(|o| o.map(|o| (o.at, o.kind(), o.bytes.len())))
            .collect()
    }

    #[test]
    fn options_skip_nops_and_stop_at_eol() {
        let opts = [
            IPOPT_NOP, IPOPT_RR, 7, 4, 0, 0, 0, 0, IPOPT_LSRR, 3, 4, IPOPT_EOL, IPOPT_RR, 3, 4, 0,
        ];
        assert_eq!(walk(&opts), vec![Ok((21, IPOPT_RR, 7)), Ok((28, IPOPT_LSRR, 3))]);
        assert_eq!(walk(&[]), vec![]);
        assert_eq!(walk(&[IPOPT_NOP; 4]), vec![]);
        // A bare header, or less, has none.
        assert_eq!(options(&[0x45; 10]).count(), 0);
    }

    #[test]
    fn malformed_options_end_the_walk_with_a_pointer() {
        // The length byte past the header: the type byte is at fault.
        assert_eq!(walk(&[IPOPT_NOP, IPOPT_NOP, IPOPT_NOP, IPOPT_TS]), vec![Err(23)]);
        // A length below 2, or past the header: the length byte is.
        assert_eq!(walk(&[IPOPT_RR, 1, 0, 0]), vec![Err(21)]);
        assert_eq!(
            walk(&[IPOPT_LSRR, 3, 4, IPOPT_RR, 9, 4, 0, 0]),
            vec![Ok((20, IPOPT_LSRR, 3)), Err(24)]
        );
    }

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
