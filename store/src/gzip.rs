//! A gzip writer that compresses on several threads and still writes one ordinary gzip member,
//! the way pigz does: the input is cut into fixed 1 MiB blocks, each block is deflated on its
//! own (primed with the previous block's last 32 KiB as dictionary) and ends on a sync flush,
//! so the raw deflate pieces concatenate into one valid stream; the CRC is computed in order.
//! Every gzip reader reads it, including single-member ones. The bytes depend only on the
//! input (block size and level are fixed), never on the number of threads, so the same layer
//! gets the same digest on every machine.
//!
//! Hand-written because gzp, the crate that does this, pulls in a thread pool and its own
//! backends; this is ~150 lines over flate2's raw `Compress`.

use flate2::{Compress, FlushCompress, Status};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const BLOCK: usize = 1 << 20;
const WINDOW: usize = 32 * 1024;
/// The gzip header: deflate, no name, mtime 0, OS unknown (what flate2 writes by default).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

struct Job {
    seq: u64,
    dict: Vec<u8>,
    data: Vec<u8>,
    last: bool,
}

type Done = (u64, io::Result<Vec<u8>>);

/// The worker threads; dropping it stops and joins them.
struct Pool {
    jobs: Option<SyncSender<Job>>,
    results: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        // Unblock workers waiting to hand in a result; ends once all have exited.
        while self.results.recv().is_ok() {}
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The parallel gzip writer. `finish` writes the trailer and returns the inner writer.
pub(crate) struct ParallelGzip<W: Write> {
    out: W,
    block: Vec<u8>,
    tail: Vec<u8>,
    crc: flate2::Crc,
    sent: u64,
    written: u64,
    done: BTreeMap<u64, Vec<u8>>,
    pool: Pool,
    inflight_max: u64,
}

impl<W: Write> ParallelGzip<W> {
    pub(crate) fn new(mut out: W, level: u32, threads: usize) -> io::Result<Self> {
        out.write_all(&HEADER)?;
        let threads = threads.max(1);
        let (jobs, job_rx) = sync_channel::<Job>(threads);
        let (done_tx, results) = sync_channel::<Done>(threads * 2);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let job_rx = Arc::clone(&job_rx);
                let done_tx = done_tx.clone();
                std::thread::spawn(move || {
                    loop {
                        let job = match job_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let seq = job.seq;
                        if done_tx.send((seq, deflate_block(&job, level))).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Ok(ParallelGzip {
            out,
            block: Vec::with_capacity(BLOCK),
            tail: Vec::new(),
            crc: flate2::Crc::new(),
            sent: 0,
            written: 0,
            done: BTreeMap::new(),
            pool: Pool {
                jobs: Some(jobs),
                results,
                workers,
            },
            inflight_max: threads as u64 * 2,
        })
    }

    fn send(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        self.crc.update(&data);
        let dict = std::mem::take(&mut self.tail);
        self.tail = data[data.len().saturating_sub(WINDOW)..].to_vec();
        let job = Job {
            seq: self.sent,
            dict,
            data,
            last,
        };
        self.sent += 1;
        self.pool
            .jobs
            .as_ref()
            .expect("no block is sent after finish")
            .send(job)
            .map_err(|_| io::Error::other("gzip worker stopped"))?;
        // Keep memory bounded: wait while too many blocks are in flight.
        while self.sent - self.written >= self.inflight_max {
            self.collect(true)?;
        }
        self.collect(false)
    }

    /// Writes out every finished block that is next in order; with `wait`, waits for at
    /// least one more to be written.
    fn collect(&mut self, wait: bool) -> io::Result<()> {
        loop {
            while let Some(bytes) = self.done.remove(&self.written) {
                self.out.write_all(&bytes)?;
                self.written += 1;
                if wait {
                    return Ok(());
                }
            }
            let next = if wait {
                Some(
                    self.pool
                        .results
                        .recv()
                        .map_err(|_| io::Error::other("gzip worker stopped"))?,
                )
            } else {
                self.pool.results.try_recv().ok()
            };
            match next {
                Some((seq, bytes)) => {
                    self.done.insert(seq, bytes?);
                }
                None => return Ok(()),
            }
        }
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.send(true)?;
        while self.written < self.sent {
            self.collect(true)?;
        }
        self.out.write_all(&self.crc.sum().to_le_bytes())?;
        self.out.write_all(&self.crc.amount().to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK {
            self.send(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // A gzip stream cannot be flushed mid-block without changing its bytes; the data is
        // written by `finish`.
        Ok(())
    }
}

/// Deflates one block: raw deflate, primed with the previous block's tail, ending on a sync
/// flush (byte-aligned, not final) or, for the last block, the final block.
fn deflate_block(job: &Job, level: u32) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !job.dict.is_empty() {
        c.set_dictionary(&job.dict).map_err(io::Error::other)?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(job.data.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(256 * 1024);
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&job.data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == job.data.len();
        match (job.last, status) {
            (true, Status::StreamEnd) => return Ok(out),
            // zlib: a sync flush is complete when it returns with output space left.
            (false, _) if all_in && out.len() < out.capacity() => return Ok(out),
            (_, Status::BufError) if out.len() < out.capacity() && all_in && !job.last => {
                return Ok(out);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 7;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Half text-like, half noise: both kinds of block.
                if (i / 300_000) % 2 == 0 {
                    b"layer data "[i % 11]
                } else {
                    x as u8
                }
            })
            .collect()
    }

    fn gzip(data: &[u8], threads: usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), 6, threads).unwrap();
        for chunk in data.chunks(100_003) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn one_member_any_reader_reads() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345] {
            let data = sample(len);
            let gz = gzip(&data, 3);
            // flate2's single-member decoder: it would stop after a first member.
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data, "len {len}");
            let mut d = flate2::read::GzDecoder::new(&gz[..]);
            d.read_to_end(&mut Vec::new()).unwrap();
            let mut rest = Vec::new();
            d.into_inner().read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty(), "len {len}: one member, nothing after it");
        }
    }

    #[test]
    fn bytes_do_not_depend_on_the_thread_count() {
        let data = sample(5 * BLOCK / 2);
        let one = gzip(&data, 1);
        assert_eq!(one, gzip(&data, 2));
        assert_eq!(one, gzip(&data, 8));
        // And cost little ratio against one stream.
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap();
        assert!(
            one.len() < single.len() + single.len() / 100 + 64,
            "{} vs {}",
            one.len(),
            single.len()
        );
    }

    #[test]
    fn gnu_gzip_accepts_it() {
        let data = sample(2 * BLOCK + 5);
        let gz = gzip(&data, 2);
        let mut child = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&gz).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success());
        assert!(out.stdout == data);
    }
}
