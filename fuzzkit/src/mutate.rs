//! Structured mutations of valid input.
//!
//! A mutation is generated with indexes relative to the input's length
//! (`proptest::sample::Index`), so one strategy serves inputs of any size.
//! Length fields are named by the target (where a length or count is
//! written, and how wide), so a mutation can set one to a value that lies:
//! zero, a little off, or huge.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// How a length field is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// A `u16`, big endian.
    U16Be,
    /// The low three bytes of a big-endian `u32` (the word's first byte
    /// is left alone).
    U24Be,
    /// A `u32` (or `i32`), big endian.
    U32Be,
    /// A `u32`, little endian.
    U32Le,
}

impl Width {
    fn bytes(self) -> usize {
        match self {
            Width::U16Be => 2,
            Width::U24Be | Width::U32Be | Width::U32Le => 4,
        }
    }
}

/// Where a length or count sits in the valid input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthField {
    /// Byte position of the field.
    pub at: usize,
    /// How the field is written.
    pub width: Width,
}

impl LengthField {
    /// A little-endian `u32` at `at`.
    pub fn u32_le(at: usize) -> Self {
        LengthField {
            at,
            width: Width::U32Le,
        }
    }

    /// A big-endian `u32` (or `i32`) at `at`.
    pub fn u32_be(at: usize) -> Self {
        LengthField {
            at,
            width: Width::U32Be,
        }
    }

    /// A big-endian `u16` at `at`.
    pub fn u16_be(at: usize) -> Self {
        LengthField {
            at,
            width: Width::U16Be,
        }
    }

    /// The low three bytes of the big-endian `u32` at `at`.
    pub fn u24_be(at: usize) -> Self {
        LengthField {
            at,
            width: Width::U24Be,
        }
    }

    fn read(&self, bytes: &[u8]) -> Option<u32> {
        let field = bytes.get(self.at..self.at + self.width.bytes())?;
        Some(match self.width {
            Width::U16Be => u32::from(u16::from_be_bytes([field[0], field[1]])),
            Width::U24Be => u32::from_be_bytes([0, field[1], field[2], field[3]]),
            Width::U32Be => u32::from_be_bytes([field[0], field[1], field[2], field[3]]),
            Width::U32Le => u32::from_le_bytes([field[0], field[1], field[2], field[3]]),
        })
    }

    fn write(&self, bytes: &mut [u8], value: u32) {
        let Some(field) = bytes.get_mut(self.at..self.at + self.width.bytes()) else {
            return;
        };
        match self.width {
            Width::U16Be => field.copy_from_slice(&(value as u16).to_be_bytes()),
            Width::U24Be => field[1..].copy_from_slice(&value.to_be_bytes()[1..]),
            Width::U32Be => field.copy_from_slice(&value.to_be_bytes()),
            Width::U32Le => field.copy_from_slice(&value.to_le_bytes()),
        }
    }
}

/// What a mutated length field is set to.
#[derive(Clone, Debug)]
pub enum Lie {
    /// This value exactly (zero, huge, or any).
    Exactly(u32),
    /// The true value moved by this much: off by a few bytes.
    Off(i8),
}

/// One change to valid input.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Flips one bit.
    FlipBit {
        /// The byte.
        at: Index,
        /// The bit, 0..8.
        bit: u8,
    },
    /// Overwrites one byte.
    SetByte {
        /// The byte.
        at: Index,
        /// Its new value.
        value: u8,
    },
    /// Sets one of the target's length fields to a lie.
    SetLength {
        /// Which field.
        field: Index,
        /// What it now says.
        lie: Lie,
    },
    /// Cuts the input at a byte: a torn write.
    Truncate {
        /// Where the input ends now.
        at: Index,
    },
    /// Appends bytes after the end.
    Append(Vec<u8>),
    /// Writes zeros over a stretch: a sector that never reached the disk.
    ZeroRange {
        /// The first byte zeroed.
        at: Index,
        /// How many bytes.
        len: u16,
    },
    /// Removes a stretch of bytes.
    Remove {
        /// The first byte removed.
        at: Index,
        /// How many bytes.
        len: u16,
    },
    /// Copies a stretch of the input to another place in it.
    Duplicate {
        /// Where the copied bytes start.
        from: Index,
        /// How many bytes.
        len: u16,
        /// Where they are inserted.
        to: Index,
    },
}

fn lie() -> impl Strategy<Value = Lie> {
    prop_oneof![
        3 => prop_oneof![
            Just(0u32),
            Just(u32::MAX),
            Just(i32::MAX as u32),
            Just(0x8000_0000),
            Just(0x00FF_FFFF),
            Just(u32::from(u16::MAX)),
            Just(256 << 20),
            Just((64 << 20) + 1),
        ]
        .prop_map(Lie::Exactly),
        2 => (-8i8..=8).prop_map(Lie::Off),
        1 => any::<u32>().prop_map(Lie::Exactly),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        4 => (any::<Index>(), lie()).prop_map(|(field, lie)| Mutation::SetLength { field, lie }),
        2 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        2 => prop_oneof![
            vec(any::<u8>(), 1..64),
            (1usize..4096).prop_map(|len| vec![0; len]),
        ]
        .prop_map(Mutation::Append),
        1 => (any::<Index>(), 1u16..600).prop_map(|(at, len)| Mutation::ZeroRange { at, len }),
        1 => (any::<Index>(), 1u16..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
        1 => (any::<Index>(), 1u16..256, any::<Index>())
            .prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
    ]
}

/// Up to four mutations; none at all now and then, so the valid input's
/// own path is taken too.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    vec(mutation(), 0..=4)
}

/// `valid` with `mutations` applied. Length fields are set first, while
/// their positions still hold; the other mutations follow in order.
pub fn apply(valid: &[u8], fields: &[LengthField], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    for mutation in mutations {
        if let Mutation::SetLength { field, lie } = mutation {
            if fields.is_empty() {
                continue;
            }
            let field = fields[field.index(fields.len())];
            let Some(truth) = field.read(&bytes) else {
                continue;
            };
            let value = match lie {
                Lie::Exactly(value) => *value,
                Lie::Off(by) => truth.wrapping_add_signed(i32::from(*by)),
            };
            field.write(&mut bytes, value);
        }
    }
    for mutation in mutations {
        let len = bytes.len();
        match mutation {
            Mutation::SetLength { .. } => {}
            Mutation::FlipBit { at, bit } if len > 0 => bytes[at.index(len)] ^= 1 << bit,
            Mutation::SetByte { at, value } if len > 0 => bytes[at.index(len)] = *value,
            Mutation::Truncate { at } if len > 0 => bytes.truncate(at.index(len)),
            Mutation::Append(extra) => bytes.extend_from_slice(extra),
            Mutation::ZeroRange { at, len: zeros } if len > 0 => {
                let start = at.index(len);
                let end = (start + usize::from(*zeros)).min(len);
                bytes[start..end].fill(0);
            }
            Mutation::Remove { at, len: removed } if len > 0 => {
                let start = at.index(len);
                let end = (start + usize::from(*removed)).min(len);
                bytes.drain(start..end);
            }
            Mutation::Duplicate {
                from,
                len: copied,
                to,
            } if len > 0 => {
                let start = from.index(len);
                let end = (start + usize::from(*copied)).min(len);
                let copy = bytes[start..end].to_vec();
                let to = to.index(len + 1);
                bytes.splice(to..to, copy);
            }
            _ => {}
        }
    }
    bytes
}

/// Recomputes the CRC32C of every frame `body_len: u32 LE | crc32c(body):
/// u32 LE | body` from byte `start` on, as far as the declared lengths
/// chain through the bytes, so a mutated body passes its checksum and
/// reaches the body's parser.
pub fn reseal_frames(bytes: &mut [u8], start: usize) {
    let mut position = start;
    while let Some(header) = bytes.get(position..position + 8) {
        let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let body_start = position + 8;
        let Some(body) = body_start
            .checked_add(body_len)
            .and_then(|end| bytes.get(body_start..end))
        else {
            return;
        };
        let crc = crc32c::crc32c(body);
        bytes[position + 4..body_start].copy_from_slice(&crc.to_le_bytes());
        position = body_start + body_len;
    }
}

#[cfg(test)]
mod tests {
    use proptest::strategy::ValueTree;

    use super::*;

    #[test]
    fn a_length_field_takes_the_lie_it_is_told() {
        let valid = [0u8, 0, 0, 5, 1, 2, 3, 4, 5];
        let fields = [LengthField::u32_be(0)];
        // With one field, any index picks it.
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let field = any::<Index>()
            .new_tree(&mut runner)
            .expect("an index")
            .current();
        let set = |lie| {
            let mutation = Mutation::SetLength { field, lie };
            apply(&valid, &fields, &[mutation])
        };
        assert_eq!(set(Lie::Exactly(u32::MAX))[..4], [0xff; 4]);
        assert_eq!(set(Lie::Off(-2))[..4], [0, 0, 0, 3]);
    }

    #[test]
    fn resealed_frames_carry_their_bodies_checksums() {
        let mut bytes = Vec::new();
        for body in [&b"first"[..], b"second"] {
            bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&[0; 4]);
            bytes.extend_from_slice(body);
        }
        reseal_frames(&mut bytes, 0);
        assert_eq!(bytes[4..8], crc32c::crc32c(b"first").to_le_bytes());
        assert_eq!(bytes[17..21], crc32c::crc32c(b"second").to_le_bytes());
    }
}
