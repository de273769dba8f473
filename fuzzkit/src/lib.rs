//! Test support for the fuzz targets of openmessaging-kv (a dev-dependency
//! only): how a decoder is fed broken input and what it must do with it.
//!
//! A target starts from valid bytes (a frame, a segment, a snapshot, a
//! request) and applies a few [`Mutation`]s to them: flipped bits, cuts,
//! length fields set to huge values, garbage appended. Starting from valid
//! data reaches the decoder's deep paths, which random bytes rarely pass
//! the first checks to reach. [`reseal_frames`] recomputes the checksums of
//! length-and-CRC32C frames after a mutation, so the body's own parser is
//! fuzzed and not only the checksum.
//!
//! [`fuzz`] runs a target for `FUZZ_CASES` cases (2,000 by default) from
//! the seed `FUZZ_SEED` (random by default, printed on failure), and
//! [`PeakAlloc`] (the test binary's global allocator) with
//! [`within_allocation_limit`] checks that no input makes a decoder
//! allocate more than its bound: a length field claiming 4 GiB must not
//! reserve 4 GiB.
//!
//! ```
//! use fuzzkit::proptest::prelude::*;
//!
//! #[global_allocator]
//! static ALLOCATOR: fuzzkit::PeakAlloc = fuzzkit::PeakAlloc;
//!
//! let fields = [fuzzkit::LengthField::u32_be(0)];
//! let valid = [0, 0, 0, 2, b'h', b'i'];
//! fuzzkit::fuzz("doc", fuzzkit::mutations(), |mutations| {
//!     let bytes = fuzzkit::apply(&valid, &fields, mutations);
//!     fuzzkit::within_allocation_limit(1 << 20, || {
//!         let declared = bytes.get(..4).map(|word| u32::from_be_bytes(word.try_into().unwrap()));
//!         declared.map(|len| bytes.len().saturating_sub(4) >= len as usize)
//!     })?;
//!     Ok(())
//! });
//! ```

mod alloc;
mod mutate;
mod run;

pub use alloc::{within_allocation_limit, PeakAlloc};
pub use mutate::{apply, mutations, reseal_frames, LengthField, Lie, Mutation, Width};
pub use proptest;
pub use run::{cases, fuzz, outcome, outcome_of};
