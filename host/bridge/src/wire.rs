//! What a bridge puts on the wire: a fixed header, then the sample's bytes unchanged.
//!
//! ```text
//!  0..4   magic "RMB1"
//!  4..12  sequence number (u64 LE), per exporter and service, from 0
//! 12..20  payload length (u64 LE): the bytes after the header
//! 20..36  zenoh id of the bridge that exported the sample (origin)
//! ```

use crate::BridgeError;

/// Bytes of the header.
pub const HEADER: usize = 36;
const MAGIC: [u8; 4] = *b"RMB1";

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Sequence number of the sample from its exporter.
    pub seq: u64,
    /// Payload bytes after the header.
    pub len: u64,
    /// Zenoh id of the exporting bridge.
    pub origin: [u8; 16],
}

impl Header {
    /// Header followed by `payload`, in one buffer.
    pub fn encode(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.extend_from_slice(&self.to_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The header alone (the payload follows it on the wire).
    pub fn to_bytes(&self) -> [u8; HEADER] {
        let mut out = [0u8; HEADER];
        out[..4].copy_from_slice(&MAGIC);
        out[4..12].copy_from_slice(&self.seq.to_le_bytes());
        out[12..20].copy_from_slice(&self.len.to_le_bytes());
        out[20..36].copy_from_slice(&self.origin);
        out
    }

    /// The header of a message and its payload; a message that is not one of ours (wrong
    /// magic, short, or a length that disagrees with its size) is refused.
    pub fn decode(message: &[u8]) -> Result<(Self, &[u8]), BridgeError> {
        let head = message
            .get(..HEADER)
            .ok_or(BridgeError::Malformed("no resmem-bridge header"))?;
        let header = Self::decode_head(head, message.len())?;
        Ok((header, &message[HEADER..]))
    }

    /// The header from a message's first `HEADER` bytes (`head`), checked against the
    /// message's whole length, for a payload read in pieces.
    pub fn decode_head(head: &[u8], message_len: usize) -> Result<Self, BridgeError> {
        if head.len() != HEADER || head[..4] != MAGIC {
            return Err(BridgeError::Malformed("no resmem-bridge header"));
        }
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&head[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let mut origin = [0u8; 16];
        origin.copy_from_slice(&head[20..36]);
        let header = Self {
            seq: word(4),
            len: word(12),
            origin,
        };
        if Some(header.len) != message_len.checked_sub(HEADER).map(|n| n as u64) {
            return Err(BridgeError::Malformed(
                "payload length disagrees with the header",
            ));
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let header = Header {
            seq: 7,
            len: 3,
            origin: [9; 16],
        };
        let bytes = header.encode(b"abc");
        assert_eq!(bytes.len(), HEADER + 3);
        assert_eq!(Header::decode(&bytes).unwrap(), (header, &b"abc"[..]));
        assert!(Header::decode(&bytes[..HEADER + 2]).is_err());
        assert!(Header::decode(&bytes[..10]).is_err());
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(Header::decode(&bad).is_err());
        let empty = Header { len: 0, ..header }.encode(&[]);
        assert_eq!(Header::decode(&empty).unwrap().1, b"");
        // The header alone, against the whole message's length (a payload read in pieces).
        let head = &bytes[..HEADER];
        assert_eq!(Header::decode_head(head, HEADER + 3).unwrap(), header);
        assert!(Header::decode_head(head, HEADER + 4).is_err());
        assert!(
            Header::decode_head(head, 3).is_err(),
            "shorter than its header"
        );
        assert!(Header::decode_head(&head[..HEADER - 1], HEADER + 3).is_err());
        assert_eq!(header.to_bytes()[..], bytes[..HEADER]);
    }
}
