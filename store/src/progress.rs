//! How far a stream got, for the progress lines of an unpack and an upload: a reader that
//! tells its byte count every [`STEP`] and when it reaches the stream's known length (a reader
//! of a length-delimited body is not asked past it, so the end would otherwise go untold).

use std::io::{self, Read};

/// How often the count is told: every this many bytes.
pub(crate) const STEP: u64 = 1 << 20;

/// `inner`, telling `tell` how many bytes it has yielded.
pub(crate) struct ProgressReader<'a, R> {
    inner: R,
    len: u64,
    count: u64,
    told: u64,
    tell: &'a dyn Fn(u64),
}

impl<'a, R: Read> ProgressReader<'a, R> {
    /// For `inner`, which is expected to yield `len` bytes.
    pub(crate) fn new(inner: R, len: u64, tell: &'a dyn Fn(u64)) -> Self {
        ProgressReader {
            inner,
            len,
            count: 0,
            told: 0,
            tell,
        }
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.told && (self.count - self.told >= STEP || self.count >= self.len) {
            self.told = self.count;
            (self.tell)(self.count);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_every_step_and_at_the_end() {
        let bytes = vec![0u8; (2 * STEP + 10) as usize];
        let told = std::cell::RefCell::new(Vec::new());
        let tell = |n| told.borrow_mut().push(n);
        let mut r = ProgressReader::new(&bytes[..], bytes.len() as u64, &tell);
        let mut sink = Vec::new();
        // Through a reader that never asks past the length (as an HTTP body does).
        (&mut r)
            .take(bytes.len() as u64)
            .read_to_end(&mut sink)
            .unwrap();
        assert_eq!(told.into_inner(), [STEP, 2 * STEP, 2 * STEP + 10]);
    }
}
