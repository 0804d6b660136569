//! Waiting for a producer's delivery reports without spinning.
//!
//! rdkafka's `BaseProducer::poll(timeout)` serves events until the whole timeout has passed,
//! even after it served the one the caller was waiting for; a shard writer that must answer as
//! soon as its records are acknowledged could only poll in tiny steps, and those steps burned a
//! fifth of the machine's CPU under load (measured with `perf`: most of it in the clock reads of
//! rdkafka's poll loop). librdkafka can instead write a byte to a pipe whenever the producer's
//! event queue goes from empty to not empty (`rd_kafka_queue_io_event_enable`): the writer
//! sleeps in `poll(2)` on that pipe and serves one event at a time with a zero timeout.
//!
//! This is the only `unsafe` code of the crate: three librdkafka calls on the producer's main
//! queue, and the pipe.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

/// A producer's event queue, and the pipe librdkafka writes to when it gets an event.
pub(crate) struct Wakeup {
    queue: *mut rd::rd_kafka_queue_t,
    read: OwnedFd,
    // Kept open for librdkafka, which writes to it.
    _write: OwnedFd,
}

// The queue handle is a reference-counted librdkafka object, safe to use from any thread.
unsafe impl Send for Wakeup {}
unsafe impl Sync for Wakeup {}

impl Wakeup {
    /// Enables the pipe on `producer`'s main queue (where its delivery reports go). The
    /// `Wakeup` must be dropped before the producer.
    pub fn new<C: ProducerContext>(producer: &BaseProducer<C>) -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 returns.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just opened and are owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the client pointer is valid while `producer` lives; the queue reference we
        // take is released in `drop`, which the caller runs before the producer is destroyed.
        let queue = unsafe { rd::rd_kafka_queue_get_main(producer.client().native_ptr()) };
        if queue.is_null() {
            return Err(io::Error::other("the producer has no main queue"));
        }
        let payload = [1u8];
        // SAFETY: librdkafka copies the payload; the descriptor stays open while enabled.
        unsafe {
            rd::rd_kafka_queue_io_event_enable(
                queue,
                write.as_raw_fd(),
                payload.as_ptr().cast(),
                payload.len(),
            );
        }
        Ok(Self {
            queue,
            read,
            _write: write,
        })
    }

    /// Whether an event waits in the queue.
    pub fn pending(&self) -> bool {
        // SAFETY: the queue reference is valid until `drop`.
        unsafe { rd::rd_kafka_queue_length(self.queue) > 0 }
    }

    /// Sleeps until librdkafka queues an event (or `timeout` passes), then empties the pipe.
    pub fn wait(&self, timeout: Duration) {
        let mut fd = libc::pollfd {
            fd: self.read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut fd, 1, millis) };
        let mut buf = [0u8; 64];
        // SAFETY: reads into a local buffer from a non-blocking descriptor we own.
        while unsafe { libc::read(fd.fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

impl Drop for Wakeup {
    fn drop(&mut self) {
        // SAFETY: disables the pipe (fd -1) before it is closed, then releases our reference
        // to the queue; the producer is still alive (see `new`).
        unsafe {
            rd::rd_kafka_queue_io_event_enable(self.queue, -1, std::ptr::null(), 0);
            rd::rd_kafka_queue_destroy(self.queue);
        }
    }
}
