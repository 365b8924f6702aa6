//! Click's names for ICMP types and codes, one table for every element
//! that reads or prints them (ICMPError's arguments, IPClassifier's
//! `icmp type`, IPPrint's lines).

/// ICMP type names, as Click's name database spells them.
pub const TYPES: &[(&str, u8)] = &[
    ("echo", 8),
    ("echo-reply", 0),
    ("inforeq", 15),
    ("inforeq-reply", 16),
    ("maskreq", 17),
    ("maskreq-reply", 18),
    ("parameterproblem", 12),
    ("redirect", 5),
    ("routeradvert", 9),
    ("routersolicit", 10),
    ("sourcequench", 4),
    ("timeexceeded", 11),
    ("timestamp", 13),
    ("timestamp-reply", 14),
    ("unreachable", 3),
];

const UNREACH: &[(&str, u8)] = &[
    ("net", 0),
    ("host", 1),
    ("protocol", 2),
    ("port", 3),
    ("needfrag", 4),
    ("srcroutefail", 5),
    ("netunknown", 6),
    ("hostunknown", 7),
    ("isolated", 8),
    ("netprohibited", 9),
    ("hostprohibited", 10),
    ("tosnet", 11),
    ("toshost", 12),
    ("filterprohibited", 13),
    ("hostprecedence", 14),
    ("precedencecutoff", 15),
];
const REDIRECT: &[(&str, u8)] = &[("net", 0), ("host", 1), ("tosnet", 2), ("toshost", 3)];
const TIME_EXCEEDED: &[(&str, u8)] = &[("transit", 0), ("reassembly", 1)];
const PARAM_PROBLEM: &[(&str, u8)] = &[("erroratptr", 0), ("missingopt", 1), ("length", 2)];

/// The named codes of ICMP type `ty` (empty for types without names).
pub fn codes(ty: u8) -> &'static [(&'static str, u8)] {
    match ty {
        3 => UNREACH,
        5 => REDIRECT,
        11 => TIME_EXCEEDED,
        12 => PARAM_PROBLEM,
        _ => &[],
    }
}

/// The name of ICMP type `ty`.
pub fn type_name(ty: u8) -> Option<&'static str> {
    TYPES.iter().find(|e| e.1 == ty).map(|e| e.0)
}

/// The name of code `code` of ICMP type `ty`.
pub fn code_name(ty: u8, code: u8) -> Option<&'static str> {
    codes(ty).iter().find(|e| e.1 == code).map(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for &(n, v) in TYPES {
            assert_eq!(type_name(v), Some(n));
            for &(c, cv) in codes(v) {
                assert_eq!(code_name(v, cv), Some(c));
            }
        }
        assert_eq!(code_name(3, 4), Some("needfrag"));
        assert_eq!((type_name(42), code_name(8, 0)), (None, None));
    }
}
