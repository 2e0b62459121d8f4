//! Reading an input in large chunks: the one read loop `replay` and `record` share.

use std::io::{self, Read};
use std::ops::ControlFlow;

/// Large enough that the cost of each read vanishes, small enough to stay in cache.
const CHUNK_LEN: usize = 1 << 20;

/// Calls `on_chunk` with each chunk read from `reader`, until the end of the input, a read
/// error, or `on_chunk` breaking off (what it breaks with is returned).
pub(crate) fn for_each_chunk<B>(
    mut reader: impl Read,
    mut on_chunk: impl FnMut(&[u8]) -> ControlFlow<B>,
) -> io::Result<ControlFlow<B>> {
    let mut chunk = vec![0; CHUNK_LEN];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return Ok(ControlFlow::Continue(())),
            Ok(n_read) => {
                if let ControlFlow::Break(value) = on_chunk(&chunk[..n_read]) {
                    return Ok(ControlFlow::Break(value));
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}
