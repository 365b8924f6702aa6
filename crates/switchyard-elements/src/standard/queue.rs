use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass, Handler, Waker, WakerCache, WakerSlot};

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
    ///   of dropping (lossless back-pressure for any pusher; never use it
    ///   behind a device). Default false: drop at the tail, as Click.
    ///
    /// In-memory sources upstream (InfiniteSource, RatedSource, FromDump,
    /// FromIPSummaryDump) never overfill it without BLOCK: they wait for
    /// room, as Click's sources wait on a Queue's full notifier.
    ///
    /// # Hot reload
    /// A Queue of the same name and CAPACITY in the new configuration goes
    /// on with the very same buffer: a side on a thread the reload keeps
    /// running never notices, and nothing held is delivered early or lost.
    /// With another CAPACITY the held packets move into the new queue
    /// (what does not fit counts as drops). A BLOCK producer paused by a
    /// reload hands over its batch even when the queue is full.
    ///
    /// # Handlers
    /// - `length` (read): packets held now (at most CAPACITY, in at most
    ///   65536 batches).
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
        /// This side's thread, and the other side's as last seen.
        own: Option<Waker>,
        consumer: WakerCache,
        producer: WakerCache,
    }
}

struct QueueShared {
    capacity: usize,
    length: AtomicUsize,
    highwater: AtomicUsize,
    drops: AtomicU64,
    producer: WakerSlot,
    consumer: WakerSlot,
    producer_alive: AtomicBool,
    consumer_alive: AtomicBool,
}

/// The pulling side of a Queue, on the consumer's thread.
struct QueueOutput {
    rx: Option<Receiver<Batch>>,
    shared: Arc<QueueShared>,
    producer: WakerCache,
}

/// Batches a Queue holds at most, whatever its CAPACITY in packets.
const MAX_BATCHES: usize = 1 << 16;

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
        // The channel counts batches; `length` bounds packets. The slack
        // leaves room for a batch handed over past CAPACITY by a BLOCK
        // producer that a reload pauses. Its slots are allocated up front,
        // so a huge CAPACITY does not buy a huge allocation: past
        // MAX_BATCHES held batches, a batch is dropped (and counted).
        let (tx, rx) = crossbeam_channel::bounded(capacity.min(MAX_BATCHES) + 4);
        Some(Box::new(Queue {
            tx: Some(tx),
            rx: Some(rx),
            shared: Arc::new(QueueShared {
                capacity,
                length: AtomicUsize::new(0),
                highwater: AtomicUsize::new(0),
                drops: AtomicU64::new(0),
                producer: WakerSlot::default(),
                consumer: WakerSlot::default(),
                producer_alive: AtomicBool::new(true),
                consumer_alive: AtomicBool::new(true),
            }),
            block,
            own: None,
            consumer: WakerCache::default(),
            producer: WakerCache::default(),
        }))
    }

    /// With BLOCK, waits until `n` packets fit, the consumer is gone or a
    /// reload pauses this thread.
    fn wait_for_room(&self, n: usize, cx: &Context<'_>) {
        let s = &self.shared;
        let fits = || {
            s.capacity.saturating_sub(s.length.load(Acquire)) >= n.min(s.capacity)
                || !s.consumer_alive.load(Acquire)
                || cx.reloading()
        };
        while !fits() {
            match &self.own {
                Some(w) => w.sleep_unless(Duration::from_millis(1), fits),
                None => std::thread::yield_now(),
            }
        }
    }
}

impl Queue {
    /// Tail-drops what does not fit, then sends the rest to the consumer.
    fn enqueue(&mut self, batch: Batch) {
        self.send(batch, false);
    }

    /// Sends `batch`, past CAPACITY if `force` (nothing is dropped unless
    /// the channel itself is full).
    fn send(&mut self, mut batch: Batch, force: bool) {
        let s = &self.shared;
        let space = s.capacity.saturating_sub(s.length.load(Acquire));
        if batch.len() > space && !force {
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
        s.consumer.wake(&mut self.consumer);
    }
}

fn receive(rx: &Receiver<Batch>, s: &QueueShared, producer: &mut WakerCache) -> Option<Batch> {
    let b = rx.try_recv().ok()?;
    s.length.fetch_sub(b.len(), AcqRel);
    s.producer.wake(producer);
    Some(b)
}

impl Element for Queue {
    fn is_thread_boundary(&self) -> bool {
        true
    }

    fn split_off_pull_side(&mut self) -> Option<Box<dyn Element>> {
        let rx = self.rx.take()?;
        Some(Box::new(QueueOutput {
            rx: Some(rx),
            shared: self.shared.clone(),
            producer: WakerCache::default(),
        }))
    }

    fn attach_thread(&mut self, waker: &Waker) {
        self.own = Some(waker.clone());
        self.shared.producer.set(waker);
        if self.rx.is_some() {
            self.shared.consumer.set(waker);
        }
    }

    fn take_state(&mut self, old: Box<dyn Element>) {
        // `old` is the whole queue, its pushing side or its pulling side
        // (a reload hands over each side a stopped thread held).
        let any: Box<dyn std::any::Any> = old;
        let (tx, rx, shared) = match any.downcast::<Queue>() {
            Ok(mut q) => (q.tx.take(), q.rx.take(), q.shared.clone()),
            Err(any) => match any.downcast::<QueueOutput>() {
                Ok(mut o) => (None, o.rx.take(), o.shared.clone()),
                Err(_) => return,
            },
        };
        if shared.capacity == self.shared.capacity {
            // The same queue: go on with its channel, which a side on a
            // thread the reload keeps may still be using.
            if !Arc::ptr_eq(&self.shared, &shared) {
                self.shared = shared;
                self.tx = None;
                self.rx = None;
            }
            self.tx = tx.or(self.tx.take());
            self.rx = rx.or(self.rx.take());
            return;
        }
        // Another capacity (so both sides were stopped): move what is held.
        let s = &self.shared;
        s.drops.fetch_add(shared.drops.load(Relaxed), Relaxed);
        s.highwater.fetch_max(shared.highwater.load(Relaxed), Relaxed);
        if let Some(rx) = rx {
            while let Ok(b) = rx.try_recv() {
                self.enqueue(b);
            }
        }
        drop(tx);
    }

    fn push(&mut self, _port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        // BLOCK: hand over what fits, wait for room, repeat. Waiting on our
        // own consumer (no split: a loop through the queue) would deadlock.
        if self.block && self.rx.is_none() {
            while !batch.is_empty() && self.shared.consumer_alive.load(Acquire) {
                self.wait_for_room(1, cx);
                if cx.reloading() {
                    // Paused for a reload: hand the rest over now.
                    self.send(batch, true);
                    return;
                }
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
        receive(self.rx.as_ref()?, &self.shared, &mut self.producer)
    }

    fn has_pending(&self) -> bool {
        self.rx.as_ref().is_some_and(|rx| !rx.is_empty())
    }

    fn room(&self) -> Option<usize> {
        let s = &self.shared;
        if !s.consumer_alive.load(Acquire) {
            // Nobody will ever make room: what comes is dropped, counted.
            return Some(usize::MAX);
        }
        if self.tx.as_ref().is_some_and(|tx| tx.is_full()) {
            // As many batches as the channel holds, however small.
            return Some(0);
        }
        // SeqCst: read against the runtime's sleeping flag, so a consumer
        // that makes room just before the thread sleeps is seen.
        Some(s.capacity.saturating_sub(s.length.load(SeqCst)))
    }

    fn handlers(&self) -> Vec<Handler> {
        let s = || self.shared.clone();
        let (a, b, c, d, e) = (s(), s(), s(), s(), s());
        vec![
            Handler::read_only("length", move || a.length.load(Relaxed).to_string()),
            Handler::read_only("highwater_length", move || b.highwater.load(Relaxed).to_string())
                .merged(switchyard_core::Merge::Max),
            Handler::read_only("drops", move || c.drops.load(Relaxed).to_string()),
            Handler::read_only("capacity", move || d.capacity.to_string()).merged(switchyard_core::Merge::Same),
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
        // A side whose channel end a successor took over says nothing.
        if self.tx.take().is_some() {
            self.shared.producer_alive.store(false, Release);
            self.shared.consumer.wake(&mut WakerCache::default());
        }
    }
}

impl Element for QueueOutput {
    fn attach_thread(&mut self, waker: &Waker) {
        self.shared.consumer.set(waker);
    }

    fn pull(&mut self, _port: usize, _cx: &mut Context<'_>) -> Option<Batch> {
        receive(self.rx.as_ref()?, &self.shared, &mut self.producer)
    }

    fn has_pending(&self) -> bool {
        self.rx.as_ref().is_some_and(|rx| !rx.is_empty())
    }

    fn is_finished(&self) -> bool {
        !self.shared.producer_alive.load(Acquire) && !self.has_pending()
    }
}

impl Drop for QueueOutput {
    fn drop(&mut self) {
        if self.rx.take().is_some() {
            self.shared.consumer_alive.store(false, Release);
            self.shared.producer.wake(&mut WakerCache::default());
        }
    }
}
