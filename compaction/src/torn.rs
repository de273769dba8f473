//! What a crash can leave at the end of an append-only file, and what it
//! cannot: the one rule the topic's segments and the server's raft log
//! both open by.
//!
//! A disk writes a sector whole or not at all, and space a file never had
//! written reads as zeros. So after a power cut the part of a file written
//! since its last completed fsync can hold whole sectors of zeros where a
//! write never landed, and nothing else the writer did not write. Hence:
//!
//! * bytes that are all zero to the end of the file were never written;
//! * a frame whose declared length runs past the end of the file was cut
//!   short by it;
//! * a frame failing its checksum with a whole sector of it reading as
//!   zeros is a write that never fully landed (etcd's WAL draws the same
//!   line);
//! * a frame failing its checksum with every sector of it written is
//!   damage: no crash explains it.

/// The smallest unit a disk writes whole; a sector of zeros inside a frame
/// is a write that never landed.
pub const SECTOR_BYTES: u64 = 512;

/// Whether every byte of `bytes` is zero.
pub fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&byte| byte == 0)
}

/// Whether the frame `frame`, which starts `file_offset` bytes into its
/// file, has a piece that reads as zeros where a whole sector of the disk
/// lies: split at sector boundaries of the file, any piece all zeros.
pub fn has_unwritten_sector(file_offset: u64, frame: &[u8]) -> bool {
    let mut start = 0usize;
    while start < frame.len() {
        let at = file_offset + start as u64;
        let to_boundary = (SECTOR_BYTES - at % SECTOR_BYTES) as usize;
        let end = frame.len().min(start + to_boundary);
        if all_zero(&frame[start..end]) {
            return true;
        }
        start = end;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_split_at_the_file_sector_boundaries() {
        let mut frame = vec![7u8; 1200];
        // File bytes 1024..1536 are frame bytes 724..1200: zero them.
        frame[724..].fill(0);
        assert!(has_unwritten_sector(300, &frame));
        // The same zeros seen from a frame starting at 0 straddle two
        // sectors, each holding written bytes.
        assert!(!has_unwritten_sector(0, &frame[..1000]));
        assert!(!has_unwritten_sector(0, &[]));
    }

    #[test]
    fn zeros_inside_a_written_sector_are_not_a_lost_write() {
        let mut frame = vec![1u8; 100];
        frame[40..].fill(0);
        assert!(!has_unwritten_sector(8, &frame));
        assert!(has_unwritten_sector(8, &[0; 100]));
    }
}
