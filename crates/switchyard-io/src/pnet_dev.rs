//! The portable backend: pnet's datalink channel (one system call per
//! frame each way).

use crate::device::{Device, Direction};
use pnet_datalink::{Channel, Config, DataLinkReceiver, DataLinkSender};
use std::io;
use std::time::Duration;
use switchyard_core::packet::now_ns;
use switchyard_core::{Batch, Packet};

pub struct PnetDevice {
    tx: Option<Box<dyn DataLinkSender>>,
    rx: Option<Box<dyn DataLinkReceiver>>,
}

impl PnetDevice {
    pub fn open(name: &str, dir: Direction) -> Result<PnetDevice, String> {
        let iface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == name)
            .ok_or_else(|| format!("no interface named '{name}'"))?;
        let promisc = matches!(dir, Direction::Receive { promisc: true, .. });
        let config = Config {
            read_timeout: Some(Duration::from_millis(1)),
            promiscuous: promisc,
            ..Config::default()
        };
        match pnet_datalink::channel(&iface, config) {
            Ok(Channel::Ethernet(tx, rx)) => match dir {
                Direction::Receive { .. } => Ok(PnetDevice { tx: None, rx: Some(rx) }),
                Direction::Transmit => Ok(PnetDevice { tx: Some(tx), rx: None }),
            },
            Ok(_) => Err(format!("{name}: not an Ethernet channel")),
            Err(e) => Err(format!("{name}: {e}")),
        }
    }
}

impl Device for PnetDevice {
    fn recv(&mut self, batch: &mut Batch, max: usize) -> io::Result<usize> {
        let Some(rx) = self.rx.as_mut() else { return Ok(0) };
        let ts = now_ns();
        let mut got = 0;
        while got < max {
            match rx.next() {
                Ok(frame) => {
                    let mut p = Packet::from_data(frame);
                    p.anno.timestamp_ns = ts;
                    batch.push(p);
                    got += 1;
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    fn send(&mut self, batch: &Batch) -> io::Result<usize> {
        let Some(tx) = self.tx.as_mut() else { return Ok(0) };
        let mut sent = 0;
        for p in batch.iter() {
            match tx.send_to(p.data(), None) {
                Some(Ok(())) => sent += 1,
                Some(Err(e)) => return if sent > 0 { Ok(sent) } else { Err(e) },
                None => break,
            }
        }
        Ok(sent)
    }

    fn wait(&mut self, _timeout: Duration) -> io::Result<()> {
        // recv already waits (the channel's 1 ms read timeout).
        Ok(())
    }
}
