//! `replay` of a damaged capture (root for tcpdump): real traffic recorded by tcpdump, a record
//! length in the middle corrupted, and the replay must resynchronise, count what it skipped,
//! say so on stderr and exit non-zero, while still replaying everything after the damage.

use std::{net::SocketAddr, process::Command};

use tests::*;

const INCRS: u64 = 100;

/// Offsets of the records of a little-endian pcap file.
fn records(data: &[u8]) -> Vec<usize> {
    assert_eq!(data[..4], [0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= data.len() {
        out.push(i);
        let incl = u32::from_le_bytes(data[i + 8..i + 12].try_into().unwrap());
        i += 16 + incl as usize;
    }
    out
}

#[test]
fn corrupt_record_length_in_the_middle() {
    require_root();
    let redis = Redis::start(&[]);
    let dir = temp_dir("replay-damage");
    let pcap = dir.join("capture.pcap");
    let mut dump = Tcpdump::start(None, "lo", redis.port, &pcap);
    let addr: SocketAddr = format!("127.0.0.1:{}", redis.port).parse().unwrap();
    let mut c = RawClient::connect(addr);
    for _ in 0..INCRS {
        c.call(&[b"INCR", b"damage-counter"]);
    }
    drop(c);
    assert_eq!(dump.stop(), 0, "tcpdump dropped packets");

    let mut data = std::fs::read(&pcap).expect("pcap");
    let recs = records(&data);
    assert!(recs.len() > 2 * INCRS as usize, "{} records", recs.len());
    // The length field of a record in the middle: a value no record can have.
    let mid = recs[recs.len() / 2];
    data[mid + 8..mid + 12].copy_from_slice(&0x00ab_cdefu32.to_le_bytes());
    let damaged = dir.join("damaged.pcap");
    std::fs::write(&damaged, &data).expect("write");

    let log = dir.join("replay.jsonl");
    let out = Command::new(observer_bin())
        .arg("replay")
        .arg(&damaged)
        .args(["-p", &redis.port.to_string(), "--log"])
        .arg(&log)
        .output()
        .expect("run replay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status with data skipped");
    assert!(
        stderr.contains("damaged capture") && stderr.contains("skipped"),
        "stderr: {stderr}"
    );
    let log = parse_log(&std::fs::read_to_string(&log).expect("log"));
    let incr_ok = log
        .iter()
        .filter(|v| v["command"] == "INCR" && v["status"] == "ok")
        .count() as u64;
    // One packet (a command or its reply) is lost to the damage; everything after it is there.
    assert!(
        incr_ok >= INCRS - 1,
        "INCR ok: {incr_ok} of {INCRS}; stderr: {stderr}"
    );
    assert!(
        log.iter().any(|v| v["command"] == "INCR"
            && v["reply"].as_str().and_then(|r| r.parse::<u64>().ok()) == Some(INCRS)),
        "the last INCR (reply {INCRS}) was replayed"
    );
}
