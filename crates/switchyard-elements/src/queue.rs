use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass, Handler, Waker};

documented! {
    /// Stores packets pushed to it until they are pulled: the boundary
    /// between threads. The pushing side and the pulling side (an Unqueue,
    /// a pulling Discard...) run on different threads, joined by a bounded
    /// crossbeam channel of batches, the only channel on the data path.
    ///
    /// # Ports
    /// One push input, one pull output.
    ///
    /// # Arguments
    /// - `CAPACITY` (positional): most packets held; default 1000.
    /// - `BLOCK`: when full, make the pushing thread wait for room instead
    ///   of dropping (lossless back-pressure for in-memory sources; never
    ///   use it behind a device). Default false: drop at the tail, as Click.
    ///
    /// # Handlers
    /// - `length` (read): packets held now.
    /// - `highwater_length` (read): most packets ever held.
    /// - `drops` (read): packets dropped because the queue was full.
    /// - `capacity` (read): CAPACITY.
    /// - `reset_counts` (write): zeroes drops and highwater_length.
    ///
    /// # Example
    /// ```text
    /// src -> q :: Queue(4096) -> Unqueue -> Counter -> Discard;
    /// ```
    pub struct Queue {
        tx: Option<Sender<Batch>>,
        rx: Option<Receiver<Batch>>,
        shared: Arc<QueueShared>,
        block: bool,
    }
}

struct QueueShared {
    capacity: usize,
    length: AtomicUsize,
    highwater: AtomicUsize,
    drops: AtomicU64,
    producer: OnceLock<Waker>,
    consumer: OnceLock<Waker>,
    producer_alive: AtomicBool,
    consumer_alive: AtomicBool,
}

/// The pulling side of a Queue, on the consumer's thread.
struct QueueOutput {
    rx: Receiver<Batch>,
    shared: Arc<QueueShared>,
}

impl Queue {
    pub const CLASS: ElementClass = ElementClass {
        name: "Queue",
        ports: "1/1",
        processing: "h/l",
        doc: Queue::DOC,
        factory: Queue::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let capacity = args.read_p::<usize>("CAPACITY").unwrap_or(1000);
        let block = args.read::<bool>("BLOCK").unwrap_or(false);
        if capacity == 0 {
            args.error(Some(args.span_of("CAPACITY")), "CAPACITY must be at least 1");
            return None;
        }
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        Some(Box::new(Queue {
            tx: Some(tx),
            rx: Some(rx),
            shared: Arc::new(QueueShared {
                capacity,
                length: AtomicUsize::new(0),
                highwater: AtomicUsize::new(0),
                drops: AtomicU64::new(0),
                producer: OnceLock::new(),
                consumer: OnceLock::new(),
                producer_alive: AtomicBool::new(true),
                consumer_alive: AtomicBool::new(true),
            }),
            block,
        }))
    }

    /// With BLOCK, waits until `n` packets fit or the consumer is gone.
    fn wait_for_room(&self, n: usize) {
        let s = &self.shared;
        let fits = || {
            s.capacity.saturating_sub(s.length.load(Acquire)) >= n.min(s.capacity) || !s.consumer_alive.load(Acquire)
        };
        while !fits() {
            match s.producer.get() {
                Some(w) => w.sleep_unless(Duration::from_millis(1), fits),
                None => std::thread::yield_now(),
            }
        }
    }
}

impl Queue {
    /// Tail-drops what does not fit, then sends the rest to the consumer.
    fn enqueue(&mut self, mut batch: Batch) {
        let s = &self.shared;
        let space = s.capacity.saturating_sub(s.length.load(Acquire));
        if batch.len() > space {
            s.drops.fetch_add((batch.len() - space) as u64, Relaxed);
            batch.truncate(space);
        }
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        let len = s.length.fetch_add(n, AcqRel) + n;
        s.highwater.fetch_max(len, Relaxed);
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) = tx.try_send(batch) {
            s.length.fetch_sub(b.len(), AcqRel);
            s.drops.fetch_add(b.len() as u64, Relaxed);
        }
        if let Some(w) = s.consumer.get() {
            w.wake();
        }
    }
}

fn receive(rx: &Receiver<Batch>, s: &QueueShared) -> Option<Batch> {
    let b = rx.try_recv().ok()?;
    s.length.fetch_sub(b.len(), AcqRel);
    if let Some(w) = s.producer.get() {
        w.wake();
    }
    Some(b)
}

impl Element for Queue {
    fn is_thread_boundary(&self) -> bool {
        true
    }

    fn split_off_pull_side(&mut self) -> Option<Box<dyn Element>> {
        let rx = self.rx.take()?;
        Some(Box::new(QueueOutput {
            rx,
            shared: self.shared.clone(),
        }))
    }

    fn attach_thread(&mut self, waker: &Waker) {
        let _ = self.shared.producer.set(waker.clone());
        if self.rx.is_some() {
            let _ = self.shared.consumer.set(waker.clone());
        }
    }

    fn push(&mut self, _port: usize, mut batch: Batch, _cx: &mut Context<'_>) {
        // BLOCK: hand over what fits, wait for room, repeat. Waiting on our
        // own consumer (no split: a loop through the queue) would deadlock.
        if self.block && self.rx.is_none() {
            while !batch.is_empty() && self.shared.consumer_alive.load(Acquire) {
                self.wait_for_room(1);
                let space = self.shared.capacity.saturating_sub(self.shared.length.load(Acquire));
                if space == 0 {
                    continue;
                }
                let rest = batch.split_off(space);
                self.enqueue(batch);
                batch = rest;
            }
        }
        self.enqueue(batch);
    }

    fn pull(&mut self, _port: usize, _cx: &mut Context<'_>) -> Option<Batch> {
        receive(self.rx.as_ref()?, &self.shared)
    }

    fn has_pending(&self) -> bool {
        self.rx.as_ref().is_some_and(|rx| !rx.is_empty())
    }

    fn handlers(&self) -> Vec<Handler> {
        let s = || self.shared.clone();
        let (a, b, c, d, e) = (s(), s(), s(), s(), s());
        vec![
            Handler::read_only("length", move || a.length.load(Relaxed).to_string()),
            Handler::read_only("highwater_length", move || b.highwater.load(Relaxed).to_string()),
            Handler::read_only("drops", move || c.drops.load(Relaxed).to_string()),
            Handler::read_only("capacity", move || d.capacity.to_string()),
            Handler::write_only("reset_counts", move |_| {
                e.drops.store(0, Relaxed);
                e.highwater.store(e.length.load(Relaxed), Relaxed);
                Ok(())
            }),
        ]
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.tx = None;
        self.shared.producer_alive.store(false, Release);
        if let Some(w) = self.shared.consumer.get() {
            w.wake();
        }
    }
}

impl Element for QueueOutput {
    fn attach_thread(&mut self, waker: &Waker) {
        let _ = self.shared.consumer.set(waker.clone());
    }

    fn pull(&mut self, _port: usize, _cx: &mut Context<'_>) -> Option<Batch> {
        receive(&self.rx, &self.shared)
    }

    fn has_pending(&self) -> bool {
        !self.rx.is_empty()
    }

    fn is_finished(&self) -> bool {
        !self.shared.producer_alive.load(Acquire) && self.rx.is_empty()
    }
}

impl Drop for QueueOutput {
    fn drop(&mut self) {
        self.shared.consumer_alive.store(false, Release);
        if let Some(w) = self.shared.producer.get() {
            w.wake();
        }
    }
}
