//! pcap in and out: FromDump -> the rollback graph -> ToDump, checked with
//! tcpdump, which must read the output frame for frame.

use std::path::{Path, PathBuf};
use std::process::Command;
use switchyard_io::pcap::{Reader, Writer, LINKTYPE_ETHERNET, LINKTYPE_RAW};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sy-pcap-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Frames of many sizes, including a runt and a full-size one.
fn frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, len) in [60usize, 14, 3, 1514, 64, 128, 9000, 61]
        .iter()
        .cycle()
        .take(500)
        .enumerate()
    {
        let mut f = switchyard_elements::default_frame((*len).max(42));
        f.truncate(*len);
        if f.len() > 20 {
            f[20] = i as u8; // tell frames apart
        }
        out.push(f);
    }
    out
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut w = Writer::create(path, 65535, LINKTYPE_ETHERNET).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write(1_700_000_000_000_000_000 + i as u64 * 1000, f).unwrap();
    }
    w.flush().unwrap();
}

fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let mut r = Reader::open(path).unwrap();
    std::iter::from_fn(|| r.next_record().unwrap())
        .map(|rec| rec.data)
        .collect()
}

/// tcpdump's view of a file: the hex bytes of each frame.
fn tcpdump_frames(path: &Path) -> Option<Vec<Vec<u8>>> {
    if Command::new("tcpdump").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "tcpdump is required under CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED PART: tcpdump not installed; checking the file with our own reader only");
        return None;
    }
    let out = Command::new("tcpdump")
        .args(["-r"])
        .arg(path)
        .args(["-nn", "-xx", "-s", "0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tcpdump -r failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(hex) = line
            .trim_start()
            .strip_prefix("0x")
            .and_then(|l| l.split_once(':'))
            .map(|(_, h)| h)
        {
            let bytes = hex.split_whitespace().flat_map(|w| {
                (0..w.len())
                    .step_by(2)
                    .map(move |i| u8::from_str_radix(&w[i..i + 2], 16).unwrap())
            });
            if let Some(f) = frames.last_mut() {
                f.extend(bytes);
            }
        } else if !line.starts_with(char::is_whitespace) {
            frames.push(Vec::new());
        }
    }
    Some(frames)
}

#[test]
fn dump_through_the_rollback_graph_reads_back_in_tcpdump() {
    let dir = scratch("graph");
    let (input, output) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let sent = frames();
    write_pcap(&input, &sent);
    let config = format!(
        "FromDump({}, STOP true) -> hub :: Tee(2);
         hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
         hub[1] -> StoreData(20, \\<ff>) -> new :: Counter -> [1]sel;
         sel -> ToDump({}) ;",
        input.display(),
        output.display()
    );
    let out = Command::new(BIN).args(["run", "-q", "-e", &config]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Production was the old branch: frames identical, in order.
    assert_eq!(read_pcap(&output), sent);
    if let Some(seen) = tcpdump_frames(&output) {
        assert_eq!(seen.len(), sent.len());
        assert_eq!(seen, sent, "tcpdump reads every frame byte for byte");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn clicks_positional_forms_of_the_dump_elements() {
    // FromDump(FILE, TIMING), ToDump(FILE, SNAPLEN, ENCAP): IP packets
    // (Strip(14)) cut to 30 bytes, in a RAW pcap that tcpdump reads.
    let dir = scratch("positional");
    let (input, output) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let sent: Vec<Vec<u8>> = frames().into_iter().filter(|f| f.len() >= 64).take(20).collect();
    write_pcap(&input, &sent);
    let config = format!(
        "FromDump({}, false, STOP true) -> Strip(14) -> ToDump({}, 30, IP);",
        input.display(),
        output.display()
    );
    let out = Command::new(BIN).args(["run", "-q", "-e", &config]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = Reader::open(&output).unwrap();
    assert_eq!(r.linktype, LINKTYPE_RAW);
    let want: Vec<Vec<u8>> = sent.iter().map(|f| f[14..44].to_vec()).collect();
    assert_eq!(read_pcap(&output), want);
    if let Some(seen) = tcpdump_frames(&output) {
        assert_eq!(seen, want, "tcpdump reads the raw IP packets");
    }
    // FromDevice(DEVNAME, PROMISC, SNAPLEN) is accepted as Click writes it.
    let conf = dir.join("dev.click");
    std::fs::write(&conf, "FromDevice(eth0, true, 96) -> Discard;").unwrap();
    let out = Command::new(BIN).arg("check").arg(&conf).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn truncated_dump_reports_offset_and_keeps_what_came_before() {
    let dir = scratch("trunc");
    let input = dir.join("in.pcap");
    let sent = frames();
    write_pcap(&input, &sent[..10]);
    let len = std::fs::metadata(&input).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&input)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let out = Command::new(BIN)
        .args([
            "run",
            "-e",
            &format!(
                "d :: FromDump({}, STOP true) -> c :: Counter -> Discard;",
                input.display()
            ),
        ])
        .args(["-H", "c.count", "-H", "d.error"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("c.count:\n9\n"), "{stdout}");
    let last_offset = 24 + sent[..9].iter().map(|f| 16 + f.len()).sum::<usize>();
    assert!(stdout.contains(&format!("at byte offset {last_offset}")), "{stdout}");
    assert!(stderr.contains("truncated record"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unreadable_dump_is_an_error_at_start_naming_the_file() {
    let out = Command::new(BIN)
        .args(["run", "-e", "FromDump(/nonexistent/x.pcap) -> Discard;"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'FromDump@1 :: FromDump': /nonexistent/x.pcap: No such file or directory"),
        "{err}"
    );
}
