//! Shard payload: the plaintext inside a sealed `shard-NNNNNN` stream. A shard is a run of documents,
//! each `doc_index: u32 LE, n_tokens: u32 LE, n_tokens × token: u32 LE`. Token ids are what the shards
//! hold; text is recovered by decoding with the corpus tokenizer.

use std::io::{Read, Write};

/// Writes one document record.
pub fn write_doc<W: Write>(w: &mut W, doc_index: u32, tokens: &[u32]) -> std::io::Result<()> {
    let n = u32::try_from(tokens.len())
        .map_err(|_| std::io::Error::other("document has more than 2^32 tokens"))?;
    let mut buf = Vec::with_capacity(8 + tokens.len() * 4);
    buf.extend_from_slice(&doc_index.to_le_bytes());
    buf.extend_from_slice(&n.to_le_bytes());
    for t in tokens {
        buf.extend_from_slice(&t.to_le_bytes());
    }
    w.write_all(&buf)
}

/// Reads the next record, `None` at a clean end of the payload. `max_tokens` bounds the allocation a
/// corrupted length could ask for (the payload is authenticated, so this guards against bugs, not
/// attackers).
pub fn read_doc<R: Read>(r: &mut R, max_tokens: u32) -> std::io::Result<Option<(u32, Vec<u32>)>> {
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..])? {
            0 if got == 0 => return Ok(None),
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "record header cut short",
                ))
            }
            n => got += n,
        }
    }
    let index = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let n = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if n > max_tokens {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("record of document {index} claims {n} tokens, more than the manifest allows"),
        ));
    }
    let mut bytes = vec![0u8; n as usize * 4];
    r.read_exact(&mut bytes)?;
    let tokens = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Some((index, tokens)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_including_empty_documents() {
        let mut buf = Vec::new();
        write_doc(&mut buf, 7, &[1, 2, 3]).unwrap();
        write_doc(&mut buf, 8, &[]).unwrap();
        let mut r = buf.as_slice();
        assert_eq!(read_doc(&mut r, 10).unwrap(), Some((7, vec![1, 2, 3])));
        assert_eq!(read_doc(&mut r, 10).unwrap(), Some((8, vec![])));
        assert_eq!(read_doc(&mut r, 10).unwrap(), None);
        let mut cut = &buf[..5];
        assert!(read_doc(&mut cut, 10).is_err());
        let mut r = buf.as_slice();
        assert!(read_doc(&mut r, 2).is_err(), "length above the bound is refused");
    }
}
