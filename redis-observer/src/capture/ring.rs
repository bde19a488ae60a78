//! The reading end of the kernel's BPF ring buffer, mapped into our memory.
//!
//! Why not aya's `RingBuf`: it publishes the consumer position after every record. The kernel
//! program reads that position on every reserve (to check for space) and on every submit (to
//! decide on wakeups), so each record we read pulled a cache line back and forth between the CPU
//! running Redis and ours. Here a drain reads the producer position once, walks every committed
//! record, and publishes the consumer position once per batch (or every quarter ring, so that a
//! long drain does not starve the producer of space).
//!
//! The layout is the kernel's (`kernel/bpf/ringbuf.c`): page 0 holds the consumer position
//! (the only page we may write), page 1 the producer position, then the data pages, mapped twice
//! in a row so that a record wrapping around the end reads as one slice. Each record starts with
//! an 8-byte header: a `u32` length whose top two bits are BUSY (reserved, not yet committed) and
//! DISCARD, and a `u32` page offset. Records are 8-byte aligned.

use std::{
    os::fd::{AsFd as _, AsRawFd, RawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicUsize, Ordering},
};

use anyhow::{Context as _, bail};
use aya::maps::MapData;

const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HDR: usize = 8;

struct Mapping {
    ptr: NonNull<libc::c_void>,
    len: usize,
}

impl Mapping {
    fn new(fd: RawFd, len: usize, prot: libc::c_int, offset: usize) -> anyhow::Result<Self> {
        // SAFETY: a fresh shared mapping of the map's fd; the kernel checks length and rights.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd,
                libc::off_t::try_from(offset)?,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap of the ring buffer");
        }
        Ok(Mapping {
            ptr: NonNull::new(p).context("mmap returned null")?,
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped; no borrow of it outlives `Ring`.
        unsafe { libc::munmap(self.ptr.as_ptr(), self.len) };
    }
}

pub struct Ring {
    map: MapData,
    consumer: Mapping,
    /// Producer page followed by the data pages, twice.
    producer: Mapping,
    page: usize,
    mask: usize,
    /// Our position; the published one lags it by at most a batch.
    pos: usize,
}

// SAFETY: the mappings are plain shared memory owned by this value; access goes through &mut self.
unsafe impl Send for Ring {}

impl Ring {
    /// Maps the ring buffer map `map` of `size` data bytes (a power of two, a multiple of the
    /// page size, as the kernel requires).
    pub fn new(map: MapData, size: usize) -> anyhow::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })?;
        if !size.is_power_of_two() || !size.is_multiple_of(page) {
            bail!("ring buffer size {size} is not a power-of-two multiple of the page size");
        }
        let fd = map.fd().as_fd().as_raw_fd();
        let consumer = Mapping::new(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = Mapping::new(fd, page + 2 * size, libc::PROT_READ, page)?;
        let mut ring = Ring {
            map,
            consumer,
            producer,
            page,
            mask: size - 1,
            pos: 0,
        };
        ring.pos = ring.consumer_pos().load(Ordering::Acquire);
        Ok(ring)
    }

    fn consumer_pos(&self) -> &AtomicUsize {
        // SAFETY: page 0 of the map starts with the kernel's `unsigned long consumer_pos`,
        // page-aligned and valid for as long as the mapping.
        unsafe { self.consumer.ptr.cast::<AtomicUsize>().as_ref() }
    }

    fn producer_pos(&self) -> &AtomicUsize {
        // SAFETY: as above, for `producer_pos` at the start of the producer page.
        unsafe { self.producer.ptr.cast::<AtomicUsize>().as_ref() }
    }

    /// The data area: `2 * size` bytes, the second half mapping the same pages as the first.
    fn data(&self) -> *const u8 {
        // SAFETY: within the producer mapping (page + 2 * size bytes).
        unsafe { self.producer.ptr.cast::<u8>().as_ptr().add(self.page) }
    }

    /// Hands every committed record to `f`, in order, frees their space, and returns how many
    /// it handed. Stops at the first record still being written (records are committed in order
    /// by position, so nothing after it may be read yet).
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut records = 0;
        let publish_every = (self.mask + 1) / 4;
        let mut unpublished = 0usize;
        let mut prod = self.pos;
        loop {
            // Caught up with the last producer position read: read it again (records committed
            // while we worked are taken in the same drain).
            if self.pos == prod {
                prod = self.producer_pos().load(Ordering::Acquire);
                if self.pos == prod {
                    break;
                }
            }
            let off = self.pos & self.mask;
            // SAFETY: `off + HDR <= size` (records are 8-byte aligned, size is a multiple of 8)
            // and the header is 4-byte aligned; the kernel writes it with an atomic xchg.
            let hdr = unsafe { &*self.data().add(off).cast::<AtomicU32>() };
            let len_word = hdr.load(Ordering::Acquire);
            if len_word & BUSY != 0 {
                break;
            }
            let len = (len_word & !(BUSY | DISCARD)) as usize;
            if len_word & DISCARD == 0 && len <= self.mask + 1 {
                // SAFETY: the record lies within the double mapping (off < size, len <= size)
                // and the producer will not reuse it until we publish a position past it.
                let rec = unsafe { std::slice::from_raw_parts(self.data().add(off + HDR), len) };
                f(rec);
                records += 1;
            }
            let total = (HDR + len).next_multiple_of(8);
            self.pos = self.pos.wrapping_add(total);
            unpublished += total;
            if unpublished >= publish_every {
                self.consumer_pos().store(self.pos, Ordering::Release);
                unpublished = 0;
            }
        }
        if unpublished > 0 {
            self.consumer_pos().store(self.pos, Ordering::Release);
        }
        records
    }
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> RawFd {
        self.map.fd().as_fd().as_raw_fd()
    }
}
