//! IPFilter, IPClassifier and Classifier on arbitrary pattern text and
//! arbitrary packets: compiling never panics (bad text is an error), and
//! classifying never panics, never reads past a packet, and names only
//! outputs the element has. The input is pattern text, a NUL, then
//! packets, each a length byte and that many bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard_core::{Element, Packet};
use switchyard_elements::{Classifier, IPClassifier, IPFilter};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let text = String::from_utf8_lossy(&data[..split]);
    let rules: Vec<&str> = text.split(['\n', ',']).take(64).collect();
    let mut packets = Vec::new();
    let mut rest = data.get(split + 1..).unwrap_or(&[]);
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        packets.push(&tail[..n]);
        rest = &tail[n..];
        if packets.len() == 16 {
            break;
        }
    }
    // The IP header at the data start, after an Ethernet header, at the
    // last byte, and past the end.
    let annotated = |bytes: &[u8], net: Option<usize>| {
        let mut p = Packet::from_data(bytes);
        if let Some(off) = net {
            p.set_network_header(off, 20);
        }
        p
    };
    let nets = |len: usize| [None, Some(0), Some(14), Some(len.saturating_sub(1)), Some(len)];

    if let Ok(f) = IPFilter::from_rules(&rules) {
        let outputs = f.port_count().map_or(0, |c| c.outputs.min as usize);
        let _ = f.program();
        for bytes in &packets {
            for net in nets(bytes.len()) {
                if let Some(o) = f.classify(&annotated(bytes, net)) {
                    assert!(o < outputs, "IPFilter output {o} of {outputs}");
                }
            }
        }
    }
    if let Ok(c) = IPClassifier::from_patterns(&rules) {
        let _ = c.program();
        for bytes in &packets {
            for net in nets(bytes.len()) {
                if let Some(o) = c.classify(&annotated(bytes, net)) {
                    assert!(o < rules.len(), "IPClassifier output {o} of {}", rules.len());
                }
            }
        }
    }
    if let Ok(c) = Classifier::from_patterns(&rules) {
        let _ = c.program();
        for bytes in &packets {
            if let Some(o) = c.classify(bytes) {
                assert!(o < rules.len(), "Classifier output {o} of {}", rules.len());
            }
        }
    }
});
